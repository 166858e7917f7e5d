//! The applets a flow is made of. Each is one file that implements [`Applet`]: it
//! decodes its YAML body, checks the outcome names a flow gives it, names the
//! outcomes a flow should handle, and runs on a call to an outcome. The compiler,
//! the executor, `graph` and `simulate` know applets only through this trait and the
//! [`KINDS`] registry: adding an applet is its own file and one line there.
//!
//! [`Context`] is what an applet sees while it runs: the call, webhooks, trunks and
//! carriers (all through the runtime contract's traits), the call's variables and
//! the trace of the step.

pub mod connect;
pub mod hangup;
pub mod passthru;
pub mod switchcase;

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

pub use connect::Connect;
pub use hangup::Hangup;
pub use passthru::Passthru;
pub use switchcase::Switchcase;

use crate::lang::diagnostic::Diagnostics;
use crate::lang::vars::{CallInfo, Vars};
use crate::lang::yaml::{Node, Pos};
use crate::runtime::{
    CallControl, CallRecord, CallStatus, Directory, Http, HttpError, HttpResponse, Query, Settings,
    Step, StepTrace, WebhookTrace,
};

/// Every applet kind, as written in flow files. Adding an applet: one line here.
pub const KINDS: &[Kind] = &[
    Kind::of::<Connect>(connect::NAME),
    Kind::of::<Passthru>(passthru::NAME),
    Kind::of::<Switchcase>(switchcase::NAME),
    Kind::of::<Hangup>(hangup::NAME),
];

/// The kind named `name`.
pub fn kind(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

/// The kinds' names, in the registry's order.
pub fn kind_names() -> Vec<&'static str> {
    KINDS.iter().map(|k| k.name).collect()
}

/// What an applet's decoder needs to know besides its body.
#[derive(Debug, Clone, Copy)]
pub struct DecodeContext<'a> {
    /// The applet's id, for messages.
    pub applet: &'a str,
    /// Header prefixes reserved for the platform.
    pub reserved_prefixes: &'a [String],
}

/// A transition written inside an applet's body (switchcase's cases and default).
#[derive(Debug, Clone)]
pub struct Branch {
    /// The outcome's name (a case value, or `default`).
    pub outcome: String,
    /// The applet it goes to.
    pub target: String,
    /// Where the target is written.
    pub pos: Pos,
    /// How messages name it (`case 'sales'`, `default`).
    pub described: String,
}

/// One applet: its compiled parameters and how it runs.
#[async_trait]
pub trait Applet: std::fmt::Debug + Send + Sync {
    /// Decodes the body of its `kind:` key; records errors and gives `None` on failure.
    fn decode(body: &Node, cx: DecodeContext<'_>, d: &mut Diagnostics) -> Option<Self>
    where
        Self: Sized;

    /// Checks an outcome name written under `on:` (the message says why not). Only
    /// asked of applets that take transitions.
    fn check_outcome(_outcome: &str) -> Result<(), String>
    where
        Self: Sized,
    {
        Err("this applet has no outcomes".into())
    }

    /// Whether `on:` and `next:` may be written at all; `Err` says why not (the
    /// applet ends the flow, or branches in its own body).
    fn takes_transitions() -> Result<(), &'static str>
    where
        Self: Sized,
    {
        Ok(())
    }

    /// The kind's name as written in flow files.
    fn kind(&self) -> &'static str;

    /// One line that says what the applet does, for graphs.
    fn summary(&self) -> String;

    /// Whether running it waits on the caller or the network (a cycle of applets that
    /// never wait would spin forever).
    fn waits(&self) -> bool;

    /// The outcomes that end the flow with a hangup when no transition names them
    /// (outcomes with a fallback, like connect's `busy`, are left out).
    fn expected_outcomes(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// The outcome to follow when `outcome` has no transition of its own.
    fn fallback(&self, _outcome: &str) -> Option<&'static str> {
        None
    }

    /// Transitions written inside its body.
    fn branches(&self) -> Vec<Branch> {
        Vec::new()
    }

    /// Runs on a call to an outcome, or to [`Step::Stop`] when the call ended in it.
    async fn run(&self, cx: &mut Context<'_>) -> Step;
}

/// A compiled applet, shared by every call that runs its flow.
pub type AppletRef = Arc<dyn Applet>;

/// An applet kind in the registry: its name and its trait's associated functions.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    /// The name written in flow files.
    pub name: &'static str,
    /// Decodes a body.
    pub decode: fn(&Node, DecodeContext<'_>, &mut Diagnostics) -> Option<AppletRef>,
    /// Checks an outcome name under `on:`.
    pub check_outcome: fn(&str) -> Result<(), String>,
    /// Whether `on:`/`next:` may be written.
    pub takes_transitions: fn() -> Result<(), &'static str>,
}

impl Kind {
    /// The registry entry of applet type `A`, named `name`.
    pub const fn of<A: Applet + 'static>(name: &'static str) -> Kind {
        Kind {
            name,
            decode: decode_as::<A>,
            check_outcome: A::check_outcome,
            takes_transitions: A::takes_transitions,
        }
    }
}

fn decode_as<A: Applet + 'static>(
    body: &Node,
    cx: DecodeContext<'_>,
    d: &mut Diagnostics,
) -> Option<AppletRef> {
    A::decode(body, cx, d).map(|a| Arc::new(a) as AppletRef)
}

/// Everything an applet needs while it runs.
pub struct Context<'a> {
    /// The call.
    pub call: &'a mut dyn CallControl,
    /// Webhooks.
    pub http: &'a dyn Http,
    /// Trunks and carriers.
    pub directory: &'a dyn Directory,
    /// Settings.
    pub settings: &'a Settings,
    /// The call's facts.
    pub info: CallInfo,
    /// The call's variables.
    pub vars: Vars,
    /// The running applet's id.
    pub applet: String,
    /// The running applet's trace.
    pub step: StepTrace,
    /// The call record.
    pub record: CallRecord,
    /// Far legs placed so far (for leg sids).
    pub legs_placed: u32,
    started: Instant,
}

impl<'a> Context<'a> {
    /// A context for a new call running flow `flow_id`.
    pub fn new(
        call: &'a mut dyn CallControl,
        http: &'a dyn Http,
        directory: &'a dyn Directory,
        settings: &'a Settings,
        info: CallInfo,
        flow_id: &str,
    ) -> Context<'a> {
        let record = CallRecord::new(&info, flow_id);
        Context {
            call,
            http,
            directory,
            settings,
            vars: Vars::new(&info),
            info,
            applet: String::new(),
            step: StepTrace::new("", ""),
            record,
            legs_placed: 0,
            started: Instant::now(),
        }
    }

    /// Milliseconds since the call started.
    pub fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Starts the trace of applet `id` of kind `kind`.
    pub fn begin_step(&mut self, id: &str, kind: &'static str) {
        self.applet = id.to_string();
        self.step = StepTrace::new(id, kind);
        self.step.started_ms = self.elapsed_ms();
    }

    /// Ends the running applet's trace with `step` and adds it to the record.
    pub fn end_step(&mut self, step: &Step) {
        self.step.duration_ms = self.elapsed_ms().saturating_sub(self.step.started_ms);
        self.step.outcome = match step {
            Step::Outcome(o) => o.clone(),
            Step::Stop => "-".into(),
        };
        let done = std::mem::replace(&mut self.step, StepTrace::new("", ""));
        tracing::debug!(sid = %self.info.sid, applet = %done.applet, outcome = %done.outcome, "applet done");
        self.record.steps.push(done);
    }

    /// Closes the record: its duration and its status. An answered call is
    /// `completed`; one the caller cancelled `canceled`; any other call never answered
    /// takes the status of the last leg it tried (`busy`, `no-answer`), else `failed`.
    pub fn finish(mut self) -> CallRecord {
        self.record.duration_secs = self.elapsed_ms() / 1000;
        if !self.call.answered() && self.record.status == CallStatus::Completed {
            let last_leg = self.vars.connect.get("status").map(|v| v.to_string());
            self.record.status = if self.call.caller_cancelled() {
                CallStatus::Canceled
            } else {
                match last_leg.as_deref() {
                    Some("busy") => CallStatus::Busy,
                    Some("no-answer") => CallStatus::NoAnswer,
                    _ => CallStatus::Failed,
                }
            };
        }
        self.record
    }

    /// The parameters every webhook request carries (docs/architecture.md §4).
    pub fn webhook_params(&self) -> Query {
        let connect = |k: &str| self.vars.connect.get(k);
        let call_type = if self.call.caller_gone() {
            "client-hangup"
        } else if self.legs_placed == 0 {
            "call-attempt"
        } else {
            "completed"
        };
        let info = &self.info;
        let created = self.record.created_unix;
        let mut q = Query::with_capacity(640);
        q.push("CallSid", &info.sid)
            .push("CallFrom", &info.from)
            .push("CallTo", &info.to)
            .push("From", &info.from)
            .push("To", &info.to)
            .push("Direction", &info.direction)
            .push_number("Created", created)
            .push_number("StartTime", created)
            .push_number("CurrentTime", unix_now());
        for (name, key) in [
            ("DialCallStatus", "status"),
            ("DialCallDuration", "duration"),
            ("DialWhomNumber", "dialed"),
        ] {
            match connect(key) {
                Some(v) => q.push_display(name, v),
                None => q.push(name, ""),
            };
        }
        q.push("CallType", call_type)
            .push("CustomField", &info.custom_field)
            .push("flow_id", &self.record.flow_id)
            .push("applet", &self.applet);
        q
    }

    /// Calls a webhook with GET, racing it against the caller hanging up (which
    /// cancels it). `None` when the caller left.
    pub async fn get(
        &mut self,
        url: &str,
        query: Query,
        timeout: std::time::Duration,
    ) -> Option<Result<HttpResponse, HttpError>> {
        let started = Instant::now();
        let http = self.http;
        let result = tokio::select! {
            r = http.get(url, &query, timeout) => r,
            _ = self.call.until_caller_gone() => {
                self.step.notes.push(format!("the call ended or moved while {url} was pending; request cancelled"));
                return None;
            }
        };
        self.step.webhooks.push(WebhookTrace {
            url: url.to_string(),
            status: result.as_ref().ok().map(|r| r.status),
            latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            error: result.as_ref().err().map(ToString::to_string),
        });
        Some(result)
    }
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
