//! Calls the calls API places (`POST …/Calls/connect`): click-to-call and
//! connect-to-flow. The request is checked against the routing (the caller id must
//! be a number of the account's trunks; a SIP party must be one of its trunks), the
//! caller id's trunk gives a channel and a call per second like any call, and a
//! number's carriers a channel; over a limit the request is refused with 429 and no
//! call is placed. Then the call is listed `queued`, the first party is invited
//! ([`crate::call::Origination`]) through its carriers or destinations in turn, and
//! once it answers the call runs a flow with it as the caller: a built-in connect to
//! `To`, or the account's flow. `TimeLimit` ends the call however far it got.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tracing::Instrument;

use super::active::{Active, Listed};
use super::inbound::flow_for;
use super::record::{self, StatusCallback};
use super::{Live, State, guard};
use crate::api::ApiError;
use crate::api::connect::{CallbackEvent, ConnectRequest, Party, Then};
use crate::applets::connect::dial::{Attempt, describe, expand_target, gives_way, rejection};
use crate::applets::connect::params::{Dial, Target, parse_target};
use crate::applets::{AppletRef, Connect, Hangup, unix_now};
use crate::call::{CallerLeg, Origination, new_sid};
use crate::flow::{Flow, Transition, executor};
use crate::lang::expr::Template;
use crate::lang::vars::CallInfo;
use crate::routing::limits::{Permit, trunk_key};
use crate::routing::{Routing, Trunk, TrunkDirectory};
use crate::runtime::{
    CallRecord, CallStatus, CallbackAttempt, Directory, LegOutcome, LegRequest, LegTrace, StepTrace,
};
use crate::sip::{SipUri, Uri};

/// The record's direction for calls the API placed.
pub const DIRECTION: &str = "outbound-api";

/// A checked request, ready to be placed.
struct Job {
    state: Arc<State>,
    account: String,
    req: ConnectRequest,
    /// The caller id's trunk.
    trunk: Arc<Trunk>,
    /// The first party's legs, in order.
    attempts: Vec<Attempt>,
    /// The trunk's channel, held for the whole call.
    _permit: Permit,
    /// The account's channel, held for the whole call.
    _admitted: guard::Admitted,
}

/// Checks `account`'s request `req` and places the call; gives its fields, `queued`.
pub async fn connect(live: &Live, account: &str, req: ConnectRequest) -> Result<Value, ApiError> {
    let state = live.current.load_full();
    let engine = live.engine.clone().ok_or_else(unavailable)?;
    if let Some(m) = &engine.core.media
        && !m.rtpengine.available()
    {
        crate::metrics::global().reject("media_unavailable");
        return Err(ApiError::unavailable("no rtpengine answers", 5));
    }
    let routing = &*state.routing;
    let trunk = routing
        .trunk_for_caller(&req.caller_id)
        .filter(|t| t.account.as_deref() == Some(account))
        .ok_or_else(|| {
            ApiError::invalid(
                "CallerId",
                &format!("{} is not a number of this account's trunks", req.caller_id),
            )
        })?;
    let first = target(routing, account, &req.from, "From")?;
    if let Then::Call(second) = &req.then {
        target(routing, account, second, "To")?;
    }
    for party in [Some(&req.from), then_party(&req)].into_iter().flatten() {
        if let Party::Number(n) = party {
            guard::destination(&trunk, n).map_err(|r| ApiError::forbidden(&r.why))?;
        }
    }
    let directory = TrunkDirectory {
        routing,
        trunk: &trunk,
    };
    let attempts = expand_target(&first, &directory, &req.caller_id)
        .map_err(|e| ApiError::invalid("From", &e))?;
    let admitted = guard::admit(routing, Some(account))
        .map_err(|r| ApiError::too_many(r.why, r.retry_after.unwrap_or(60)))?;
    let permit = routing
        .limits()
        .acquire(&trunk_key(&trunk.sid), trunk.max_channels, trunk.max_cps)
        .map_err(|e| ApiError::too_many(format!("trunk {}: {e}", trunk.sid), e.retry_after()))?;
    let carriers: Vec<&str> = attempts
        .iter()
        .filter_map(|a| a.carrier.as_deref())
        .collect();
    if !carriers.is_empty()
        && !carriers
            .iter()
            .any(|c| routing.carrier_channel(c).is_some())
    {
        return Err(ApiError::too_many("every carrier's channels are in use", 5));
    }
    let sid = new_sid();
    let (origination, running) = engine.originate(sid.clone()).ok_or_else(unavailable)?;
    let shown_to = shown_to(&req);
    let listed = state.active.list(
        &sid,
        Active {
            account: Some(account.to_string()),
            from: req.from.as_str().to_string(),
            to: shown_to.clone(),
            direction: DIRECTION.into(),
            created: unix_now(),
            status: "queued",
            controller: origination.controller(),
        },
    );
    let fields = json!({
        "call_sid": sid,
        "from": req.from.as_str(),
        "to": shown_to,
        "direction": DIRECTION,
        "status": "queued",
        "created_unix": unix_now(),
        "duration_secs": 0,
    });
    tracing::info!(%sid, %account, from = %req.from.as_str(), to = %shown_to, "API call queued");
    let job = Job {
        state: state.clone(),
        account: account.to_string(),
        req,
        trunk,
        attempts,
        _permit: permit,
        _admitted: admitted,
    };
    let span = tracing::info_span!("call", %sid);
    tokio::spawn(
        async move {
            run(job, origination, listed).await;
            drop(running);
        }
        .instrument(span),
    );
    Ok(fields)
}

fn unavailable() -> ApiError {
    ApiError::too_many("the engine is not taking calls (starting or draining)", 30)
}

/// Click-to-call's second party.
fn then_party(req: &ConnectRequest) -> Option<&Party> {
    match &req.then {
        Then::Call(p) => Some(p),
        Then::Flow(_) => None,
    }
}

/// The `To` the record shows: the second party, or the caller id for a flow.
fn shown_to(req: &ConnectRequest) -> String {
    match &req.then {
        Then::Call(p) => p.as_str().to_string(),
        Then::Flow(_) => req.caller_id.clone(),
    }
}

/// The connect target of a party: a number as it is; `sip:<trunk_sid>` or a SIP URI
/// only when it is one of `account`'s trunks (a URI: one of its destinations).
fn target(
    routing: &Routing,
    account: &str,
    party: &Party,
    field: &str,
) -> Result<Target, ApiError> {
    let s = match party {
        Party::Number(n) => return Ok(Target::Number(n.clone())),
        Party::Sip(s) => s,
    };
    let not_ours =
        || ApiError::invalid(field, &format!("'{s}' is not one of this account's trunks"));
    match parse_target(s).map_err(|e| ApiError::invalid(field, &e))? {
        Target::Trunk(sid) => routing
            .trunk(&sid)
            .filter(|t| t.account.as_deref() == Some(account))
            .map(|_| Target::Trunk(sid))
            .ok_or_else(not_ours),
        Target::Uri(u) => {
            let Ok(Uri::Sip(uri)) = Uri::parse(&u) else {
                return Err(not_ours());
            };
            let ours = routing
                .trunks_of(account)
                .iter()
                .any(|t| t.destinations.iter().any(|(_, _, d)| same_host(d, &uri)));
            if ours {
                Ok(Target::Uri(u))
            } else {
                Err(not_ours())
            }
        }
        _ => Err(not_ours()),
    }
}

/// Whether `a` and `b` name the same host and port.
fn same_host(a: &SipUri, b: &SipUri) -> bool {
    a.host.to_string().eq_ignore_ascii_case(&b.host.to_string()) && a.port == b.port
}

/// Places the call and runs it to its end, then stores its record and sends its
/// terminal callback.
async fn run(job: Job, mut origination: Origination, listed: Listed) {
    let callback = job.req.status_callback.as_ref().map(|url| StatusCallback {
        url: url.clone(),
        content: job.req.content,
        from_account: true,
    });
    let info = CallInfo {
        sid: origination.sid.clone(),
        from: job.req.from.as_str().to_string(),
        to: job.req.caller_id.clone(),
        direction: DIRECTION.into(),
        custom_field: job.req.custom_field.clone(),
        trunk: Some(job.trunk.sid.clone()),
        account: Some(job.account.clone()),
        headers: Default::default(),
    };
    let mut record = CallRecord::new(&info, &flow_id(&job.req));
    record.to = shown_to(&job.req);
    record.record = job.req.record;
    record.recording_channels = job.req.recording_channels.clone();
    let mut first = StepTrace::new("(first party)", "connect");
    let placed = place(&job, &mut origination, &mut first).await;
    let mut answered_attempts = None;
    match placed {
        Err(outcome) => {
            first.outcome = describe(&outcome);
            record.status = status_of(&outcome);
            record.steps.push(first);
        }
        Ok((caller, _channel)) => {
            first.outcome = "answered".into();
            job.state.active.set_status(&info.sid, "in-progress");
            if let Some(cb) = callback
                .as_ref()
                .filter(|_| wants(&job, CallbackEvent::Answered))
            {
                answered_attempts = Some(answered(&job.state, cb, &record));
            }
            let call = origination.into_call(caller);
            let mut ran = bridge(&job, call, info).await;
            ran.steps.insert(0, first);
            record.steps = ran.steps;
            record.recording_url = ran.recording_url;
            record.recording_error = ran.recording_error;
            record.status = CallStatus::Completed;
        }
    }
    record.duration_secs = unix_now().saturating_sub(record.created_unix);
    if let Some(a) = answered_attempts {
        record.callbacks = a.lock().unwrap_or_else(PoisonError::into_inner).clone();
    }
    drop(listed);
    let terminal = callback.filter(|_| wants(&job, CallbackEvent::Terminal));
    record::finish(&job.state, terminal, record).await;
}

/// The record's flow id: the flow's, or `click-to-call`.
fn flow_id(req: &ConnectRequest) -> String {
    match &req.then {
        Then::Call(_) => "click-to-call".into(),
        Then::Flow(id) => id.clone(),
    }
}

fn wants(job: &Job, event: CallbackEvent) -> bool {
    job.req.events.contains(&event)
}

/// Sends the `answered` callback in the background; its attempts land in the
/// returned list as they are made.
fn answered(
    state: &State,
    callback: &StatusCallback,
    record: &CallRecord,
) -> Arc<Mutex<Vec<CallbackAttempt>>> {
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let (http, timeout) = (
        callback.client(state).clone(),
        state.settings.webhook_timeout,
    );
    let (callback, body) = (
        callback.clone(),
        record::status_callback(record, "answered"),
    );
    let out = attempts.clone();
    tokio::spawn(async move {
        let made = record::deliver(&callback, &body, &http, timeout).await;
        out.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(made);
    });
    attempts
}

/// The status of a call whose first party never answered.
fn status_of(outcome: &LegOutcome) -> CallStatus {
    match outcome {
        LegOutcome::CallerGone => CallStatus::Canceled,
        LegOutcome::Rejected(s) => match rejection(*s) {
            crate::applets::connect::Outcome::Busy => CallStatus::Busy,
            _ => CallStatus::NoAnswer,
        },
        LegOutcome::NoAnswer => CallStatus::NoAnswer,
        LegOutcome::Answered | LegOutcome::Failed(_) => CallStatus::Failed,
    }
}

/// Invites the first party through its legs in turn (the next on what fails over);
/// gives its leg and the carrier channel it holds once it answered.
async fn place(
    job: &Job,
    origination: &mut Origination,
    first: &mut StepTrace,
) -> Result<(CallerLeg, Option<crate::runtime::Channel>), LegOutcome> {
    let routing = &*job.state.routing;
    let (active, sid) = (job.state.active.clone(), origination.sid.clone());
    let mut ringing = move || active.set_status(&sid, "ringing");
    let mut last = LegOutcome::Failed(crate::runtime::LegError::NoAddress);
    for (n, attempt) in job.attempts.iter().enumerate() {
        let channel = match &attempt.carrier {
            Some(name) => match routing.carrier_channel(name) {
                Some(c) => Some(c),
                None => {
                    first.notes.push(format!("carrier {name} is full; next"));
                    continue;
                }
            },
            None => None,
        };
        let leg_sid = format!("{}L0{}", origination.sid, n + 1);
        let mut headers = vec![
            ("X-Callflow-CallSid".to_string(), origination.sid.clone()),
            ("X-Callflow-LegSid".to_string(), leg_sid.clone()),
        ];
        if let Some(t) = &attempt.trunk {
            headers.push(("X-Callflow-TrunkSid".to_string(), t.clone()));
        }
        let leg = LegRequest {
            uri: attempt.uri.clone(),
            headers,
            ring_timeout: job.req.time_out,
            caller_id: Some(job.req.caller_id.clone()),
            media: attempt.media.clone(),
        };
        let outcome = origination.place(&leg, &mut ringing).await;
        let result = match &outcome {
            Ok(_) => "answered".to_string(),
            Err(o) => describe(o),
        };
        first.legs.push(LegTrace {
            leg_sid,
            to: attempt.uri.to_string(),
            result,
            duration_secs: 0,
        });
        match outcome {
            Ok(caller) => return Ok((caller, channel)),
            Err(o) => {
                let go_on = gives_way(&o, attempt.carrier.is_some(), routing);
                last = o;
                if !go_on {
                    break;
                }
            }
        }
    }
    Err(last)
}

/// Runs the call, its first party answered, to its end: the built-in connect to the
/// second party, or the account's flow; `TimeLimit` hangs it up.
async fn bridge(job: &Job, mut call: crate::call::Call, info: CallInfo) -> CallRecord {
    let mut record = if call.anchor_media().await.is_err() {
        crate::metrics::global().reject("media_unavailable");
        let mut r = CallRecord::new(&info, &flow_id(&job.req));
        r.status = CallStatus::Failed;
        let mut step = StepTrace::new("(media)", "connect");
        step.notes
            .push("no rtpengine answered: the first party was hung up".into());
        r.steps.push(step);
        r
    } else {
        if job.req.record {
            let dual = job.req.recording_channels.as_deref() == Some("dual");
            let _ = call.record(dual).await;
        }
        run_flow(job, &mut call, info).await
    };
    super::recordings::end_media(&mut call, &mut record, &job.state.recordings).await;
    record
}

/// Runs the call's flow: click-to-call's, or the account's.
async fn run_flow(job: &Job, call: &mut crate::call::Call, info: CallInfo) -> CallRecord {
    let state = &job.state;
    let routing = &*state.routing;
    let limit = job.req.time_limit.map_or(job.trunk.max_call_duration, |t| {
        t.min(job.trunk.max_call_duration)
    });
    let _limit = guard::TimeLimit::start(call.controller(), limit);
    let directory = TrunkDirectory {
        routing,
        trunk: &job.trunk,
    };
    let flow = match &job.req.then {
        Then::Call(second) => target(routing, &job.account, second, "To")
            .ok()
            .map(|t| Arc::new(click_to_call(t, &job.req))),
        Then::Flow(id) => flow_for(routing, Some(&job.account), id),
    };
    let account = job.account.clone();
    let lookup = |id: &str| flow_for(routing, Some(&account), id);
    match flow {
        Some(flow) => {
            let (webhooks, settings) = (state.webhooks(), &state.settings);
            executor::run(&flow, call, webhooks, &directory, settings, info, &lookup).await
        }
        None => {
            call.hangup(480).await;
            let mut r = CallRecord::new(&info, &flow_id(&job.req));
            r.status = CallStatus::Failed;
            let mut step = StepTrace::new("(flow)", "connect");
            step.notes.push("the flow is no longer loaded".into());
            r.steps.push(step);
            r
        }
    }
}

/// Click-to-call's flow: connect to the second party with the caller id, ringing as
/// long as `TimeOut`, then hang up.
fn click_to_call(second: Target, req: &ConnectRequest) -> Flow {
    let connect: AppletRef = Arc::new(Connect {
        dial: Dial::To(vec![second]),
        ring_timeout: req.time_out,
        max_duration: req
            .time_limit
            .unwrap_or(Duration::from_secs(crate::api::connect::MAX_TIME_LIMIT)),
        caller_id: Template::compile(&req.caller_id).ok(),
        ..Connect::default()
    });
    let bye: AppletRef = Arc::new(Hangup::default());
    Flow::from_applets(
        "click-to-call",
        vec![
            ("second-party", connect, vec![(Transition::Any, "bye")]),
            ("bye", bye, Vec::new()),
        ],
    )
}
