//! The flow runtime: one task per call walks the compiled graph. Each applet yields an
//! outcome; the edge with that label gives the next applet (DESIGN.md §3).
//!
//! The executor drives calls through [`CallControl`] and webhooks through [`Http`]:
//! the live SIP engine and the reqwest client implement them, and so do the scripted
//! fakes of `callflow simulate` and the unit tests. One executor, two worlds.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::compile::Flow;
use super::vars::{CallInfo, Vars};
use crate::applets::AppletKind;
pub use crate::call::{LegEnd, LegOutcome, LegRequest};
use crate::routing::Routing;

/// What the executor needs from a call.
pub trait CallControl: Send {
    /// Places a far leg and bridges it when answered.
    fn dial(&mut self, leg: LegRequest) -> impl Future<Output = LegOutcome> + Send;
    /// Rings every leg at once and bridges the first that answers.
    fn dial_parallel(
        &mut self,
        legs: Vec<LegRequest>,
        ring: Duration,
    ) -> impl Future<Output = LegOutcome> + Send;
    /// Waits while bridged, until a leg ends or `max` passes.
    fn wait(&mut self, max: Duration) -> impl Future<Output = LegEnd> + Send;
    /// Ends the call (BYE, or `status` to a caller never answered).
    fn hangup(&mut self, status: u16) -> impl Future<Output = ()> + Send;
    /// Serves the call (retransmissions, stray requests) until the caller hangs up
    /// or cancels; never returns while the caller is there.
    fn until_caller_gone(&mut self) -> impl Future<Output = ()> + Send;
    /// Whether the caller has hung up or cancelled.
    fn caller_gone(&self) -> bool;
    /// Whether the caller has been answered.
    fn answered(&self) -> bool;
}

/// A webhook's answer.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// HTTP status.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// What the executor needs to call webhooks.
pub trait Http: Send + Sync {
    /// `GET url?query`, within `timeout`.
    fn get(
        &self,
        url: &str,
        query: &[(String, String)],
        timeout: Duration,
    ) -> impl Future<Output = Result<HttpResponse, String>> + Send;
    /// `GET url?query` in the background: the caller does not wait (async passthru).
    fn spawn_get(&self, url: &str, query: &[(String, String)], timeout: Duration);
    /// `POST url` with a JSON body, within `timeout`.
    fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
        timeout: Duration,
    ) -> impl Future<Output = Result<u16, String>> + Send;
}

/// Settings the runtime takes from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Default webhook timeout.
    pub webhook_timeout: Duration,
    /// Most dynamic-URL requests after unanswered attempts.
    pub max_attempts_after_fetch: u32,
    /// Reserved custom-header prefixes.
    pub reserved_prefixes: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            webhook_timeout: Duration::from_secs(5),
            max_attempts_after_fetch: 5,
            reserved_prefixes: crate::flow::headers::DEFAULT_RESERVED_PREFIXES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

/// One webhook request, for the trace.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookTrace {
    /// The URL (without the query).
    pub url: String,
    /// The HTTP status, if any came.
    pub status: Option<u16>,
    /// How long it took.
    pub latency_ms: u64,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// One far leg, for the trace.
#[derive(Debug, Clone, Serialize)]
pub struct LegTrace {
    /// The leg's sid.
    pub leg_sid: String,
    /// Whom it dialled.
    pub to: String,
    /// `answered`, `busy`, `no-answer`, `failed: …`, or the final SIP status.
    pub result: String,
    /// Seconds bridged.
    pub duration_secs: u64,
}

/// One applet run, for the trace.
#[derive(Debug, Clone, Serialize)]
pub struct StepTrace {
    /// The applet's id.
    pub applet: String,
    /// Its kind.
    pub kind: &'static str,
    /// The outcome it yielded (`-` when the call ended inside it).
    pub outcome: String,
    /// Milliseconds from the call's start.
    pub started_ms: u64,
    /// How long it ran.
    pub duration_ms: u64,
    /// Webhooks it called.
    pub webhooks: Vec<WebhookTrace>,
    /// Legs it placed.
    pub legs: Vec<LegTrace>,
    /// Why it took the outcome it took, where that is not obvious.
    pub notes: Vec<String>,
}

/// The record of a call, logged when it ends.
#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    /// The call's sid.
    pub call_sid: String,
    /// The flow's id.
    pub flow_id: String,
    /// Caller's number.
    pub from: String,
    /// Dialled number.
    pub to: String,
    /// Direction.
    pub direction: String,
    /// `completed`, `failed`, `busy`, `no-answer` or `canceled`.
    pub status: String,
    /// Seconds since the epoch when the call arrived.
    pub created_unix: u64,
    /// Seconds the call lasted.
    pub duration_secs: u64,
    /// Whether the flow asked for a recording (kept for the media side).
    pub record: bool,
    /// `mono` or `dual`, when recording.
    pub recording_channels: Option<String>,
    /// The applets, in order.
    pub steps: Vec<StepTrace>,
}

/// What running one applet gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The applet yielded this outcome.
    Outcome(String),
    /// The call ended inside the applet (caller gone, hung up, or its limit).
    Stop,
}

/// Everything an applet needs while it runs.
pub struct Runtime<'a, C: CallControl, H: Http> {
    /// The call.
    pub call: &'a mut C,
    /// Webhooks.
    pub http: &'a H,
    /// Trunks and carriers.
    pub routing: &'a Routing,
    /// Settings.
    pub settings: &'a Settings,
    /// The call's facts.
    pub info: CallInfo,
    /// The call's variables.
    pub vars: Vars,
    /// The flow's id.
    pub flow_id: String,
    /// The running applet's id.
    pub applet: String,
    /// The running applet's trace.
    pub step: StepTrace,
    /// The call record.
    pub record: CallRecord,
    started: Instant,
    /// Far legs placed so far (for leg sids).
    pub legs_placed: u32,
}

impl<'a, C: CallControl, H: Http> Runtime<'a, C, H> {
    /// Milliseconds since the call started.
    pub fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The parameters every webhook request carries (DESIGN.md §4).
    pub fn webhook_params(&self) -> Vec<(String, String)> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let connect = |k: &str| {
            self.vars
                .connect
                .get(k)
                .map(|v| v.to_string())
                .unwrap_or_default()
        };
        let call_type = if self.call.caller_gone() {
            "client-hangup"
        } else if self.legs_placed == 0 {
            "call-attempt"
        } else {
            "completed"
        };
        [
            ("CallSid", self.info.sid.clone()),
            ("CallFrom", self.info.from.clone()),
            ("CallTo", self.info.to.clone()),
            ("From", self.info.from.clone()),
            ("To", self.info.to.clone()),
            ("Direction", self.info.direction.clone()),
            ("Created", self.record.created_unix.to_string()),
            ("StartTime", self.record.created_unix.to_string()),
            ("CurrentTime", now.to_string()),
            ("DialCallStatus", connect("status")),
            ("DialCallDuration", connect("duration")),
            ("DialWhomNumber", connect("dialed")),
            ("CallType", call_type.to_string()),
            ("CustomField", self.info.custom_field.clone()),
            ("flow_id", self.flow_id.clone()),
            ("applet", self.applet.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Calls a webhook with GET, racing it against the caller hanging up (which
    /// cancels it). `None` when the caller left.
    pub async fn get(
        &mut self,
        url: &str,
        query: Vec<(String, String)>,
        timeout: Duration,
    ) -> Option<Result<HttpResponse, String>> {
        let started = Instant::now();
        let http = self.http;
        let result = tokio::select! {
            r = http.get(url, &query, timeout) => r,
            _ = self.call.until_caller_gone() => {
                self.step.notes.push(format!("caller hung up while {url} was pending; request cancelled"));
                return None;
            }
        };
        self.step.webhooks.push(WebhookTrace {
            url: url.to_string(),
            status: result.as_ref().ok().map(|r| r.status),
            latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            error: result.as_ref().err().cloned(),
        });
        Some(result)
    }
}

/// Runs `flow` on a call to its end and returns the call record.
pub async fn run<C: CallControl, H: Http>(
    flow: &Flow,
    call: &mut C,
    http: &H,
    routing: &Routing,
    settings: &Settings,
    info: CallInfo,
) -> CallRecord {
    let created_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let record = CallRecord {
        call_sid: info.sid.clone(),
        flow_id: flow.id.clone(),
        from: info.from.clone(),
        to: info.to.clone(),
        direction: info.direction.clone(),
        status: "completed".into(),
        created_unix,
        duration_secs: 0,
        record: false,
        recording_channels: None,
        steps: Vec::new(),
    };
    let mut rt = Runtime {
        call,
        http,
        routing,
        settings,
        vars: Vars::new(&info),
        info,
        flow_id: flow.id.clone(),
        applet: String::new(),
        step: new_step("", ""),
        record,
        started: Instant::now(),
        legs_placed: 0,
    };
    let mut node = flow.start;
    while let Some(applet) = flow.applet(node) {
        rt.applet = applet.id.clone();
        rt.step = new_step(&applet.id, applet.kind.name());
        rt.step.started_ms = rt.elapsed_ms();
        let step = run_applet(&applet.kind, &mut rt).await;
        rt.step.duration_ms = rt.elapsed_ms().saturating_sub(rt.step.started_ms);
        let outcome = match &step {
            Step::Outcome(o) => o.clone(),
            Step::Stop => "-".into(),
        };
        rt.step.outcome = outcome.clone();
        let done = std::mem::replace(&mut rt.step, new_step("", ""));
        tracing::info!(sid = %rt.info.sid, applet = %done.applet, %outcome, "applet done");
        rt.record.steps.push(done);
        if step == Step::Stop
            || rt.call.caller_gone()
            || matches!(applet.kind, AppletKind::Hangup(_))
        {
            break;
        }
        match flow.next(node, &outcome) {
            Some(next) => node = next,
            None => {
                tracing::info!(sid = %rt.info.sid, %outcome, "no transition: hanging up");
                rt.call.hangup(crate::applets::hangup::DEFAULT_STATUS).await;
                break;
            }
        }
    }
    rt.record.duration_secs = rt.elapsed_ms() / 1000;
    if rt.call.caller_gone() && !rt.call.answered() && rt.record.status == "completed" {
        rt.record.status = "canceled".into();
    }
    rt.record
}

fn new_step(applet: &str, kind: &'static str) -> StepTrace {
    StepTrace {
        applet: applet.to_string(),
        kind,
        outcome: String::new(),
        started_ms: 0,
        duration_ms: 0,
        webhooks: Vec::new(),
        legs: Vec::new(),
        notes: Vec::new(),
    }
}

async fn run_applet<C: CallControl, H: Http>(
    kind: &AppletKind,
    rt: &mut Runtime<'_, C, H>,
) -> Step {
    match kind {
        AppletKind::Connect(c) => crate::applets::connect::run(c, rt).await,
        AppletKind::Passthru(p) => crate::applets::passthru::run(p, rt).await,
        AppletKind::Switchcase(s) => crate::applets::switchcase::run(s, rt),
        AppletKind::Hangup(h) => {
            rt.call.hangup(h.status).await;
            Step::Stop
        }
    }
}
