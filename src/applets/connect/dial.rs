//! Placing a connect's legs on a live call: expand the targets (trunk destinations
//! by priority, numbers through the carriers by priority), place legs in turn or all
//! at once, bridge the one that answers, and turn how it ended into an outcome.
//!
//! A partner's call to the PSTN goes through the same [`dial_plan`]: carrier legs take
//! a channel of their carrier and move on to the next carrier only on the statuses
//! the configuration names (408, 5xx, 6xx by default).

use std::time::{Duration, Instant};

use super::params::{Connect, Outcome, Target, parse_target};
use crate::applets::Context;
use crate::lang::expr::Template;
use crate::lang::headers;
use crate::runtime::{Directory, LegEnd, LegMedia, LegOutcome, LegRequest, LegTrace, Step};
use crate::sip::{SipUri, Uri};

/// One leg to try.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The Request-URI.
    pub uri: SipUri,
    /// The trunk it belongs to, for X-Callflow-TrunkSid.
    pub trunk: Option<String>,
    /// The carrier it goes through, whose channel it takes.
    pub carrier: Option<String>,
    /// What was dialled, for `connect.dialed` and DialWhomNumber.
    pub dialed: String,
    /// How its media is offered.
    pub media: LegMedia,
}

/// How to place the legs of one dial.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The legs, in order.
    pub attempts: Vec<Attempt>,
    /// Custom headers, rendered and checked.
    pub headers: Vec<(String, String)>,
    /// Ring timeout of each leg.
    pub ring_timeout: Duration,
    /// Longest bridged time.
    pub max_duration: Duration,
    /// Caller id override.
    pub caller_id: Option<String>,
    /// Ring every leg at once instead of in turn.
    pub parallel: bool,
}

/// What dialling a plan gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialled {
    /// The applet's step: an outcome, or stop when the call ended in it.
    pub step: Step,
    /// The final SIP status that ended the search for a leg, when none was bridged:
    /// the last rejection, 408 when the last leg did not answer.
    pub last_status: Option<u16>,
}

/// The plan of a connect whose targets are written in the flow.
pub fn plan(c: &Connect, targets: &[Target], cx: &Context<'_>) -> Result<Plan, String> {
    Ok(Plan {
        attempts: expand_all(targets, cx)?,
        headers: render_headers(c, cx, Vec::new())?,
        ring_timeout: c.ring_timeout,
        max_duration: c.max_duration,
        caller_id: render_caller_id(c.caller_id.as_ref(), cx)?,
        parallel: c.parallel_ringing,
    })
}

/// The outcome `failed`, with the reason in the trace.
pub fn failed(cx: &mut Context<'_>, why: String) -> Step {
    tracing::info!(sid = %cx.info.sid, applet = %cx.applet, %why, "connect failed");
    cx.step.notes.push(why);
    cx.vars.set_connect(Outcome::Failed.dial_status(), 0, "");
    Outcome::Failed.into()
}

/// Expands every target into legs.
pub fn expand_all(targets: &[Target], cx: &Context<'_>) -> Result<Vec<Attempt>, String> {
    let mut out = Vec::new();
    for t in targets {
        out.extend(expand(t, cx, true)?);
    }
    // The plan lives as long as the call; growth's spare room would too.
    out.shrink_to_fit();
    Ok(out)
}

fn expand(target: &Target, cx: &Context<'_>, allow_template: bool) -> Result<Vec<Attempt>, String> {
    match target {
        Target::Template(t) if allow_template => {
            let rendered = Template::compile(t)
                .map_err(|e| e.error.message)
                .and_then(|t| cx.vars.renderer().render(&t).map_err(|e| e.to_string()))
                .map_err(|e| format!("target '{t}' failed: {e}"))?;
            let parsed = parse_target(rendered.trim())
                .map_err(|e| format!("target '{t}' gave '{rendered}': {e}"))?;
            expand(&parsed, cx, false)
        }
        Target::Template(t) => Err(format!("target '{t}' gave another template")),
        other => expand_target(other, cx.directory, &cx.info.to),
    }
}

/// Expands a target that is not a template into legs: a trunk's usable destinations
/// by priority (Request-URI user its external alias, else `did`), a number through
/// each usable carrier by priority, a SIP URI as written.
pub fn expand_target(
    target: &Target,
    directory: &dyn Directory,
    did: &str,
) -> Result<Vec<Attempt>, String> {
    match target {
        Target::Trunk(sid) => {
            let route = directory.trunk(sid).map_err(|e| e.to_string())?;
            let user = route.external_alias.unwrap_or_else(|| did.to_string());
            let media = route.media;
            Ok(route
                .destinations
                .into_iter()
                .map(|mut uri| {
                    uri.user = Some(user.as_str().into());
                    Attempt {
                        uri,
                        trunk: Some(sid.clone()),
                        carrier: None,
                        dialed: ["sip:", sid].concat(),
                        media: media.clone(),
                    }
                })
                .collect())
        }
        Target::Number(n) => {
            directory.destination_allowed(n)?;
            let carriers = directory.carriers();
            if carriers.is_empty() {
                return Err(format!("no carrier to dial {n} through"));
            }
            Ok(carriers
                .into_iter()
                .map(|c| {
                    let mut uri = c.uri;
                    uri.user = Some(n.as_str().into());
                    Attempt {
                        uri,
                        trunk: None,
                        carrier: Some(c.name),
                        dialed: n.clone(),
                        media: LegMedia::plain(),
                    }
                })
                .collect())
        }
        Target::Uri(s) => match Uri::parse(s) {
            Ok(Uri::Sip(uri)) => Ok(vec![Attempt {
                uri,
                trunk: None,
                carrier: None,
                dialed: s.clone(),
                media: LegMedia::default(),
            }]),
            _ => Err(format!("'{s}' is not a SIP URI")),
        },
        Target::Template(t) => Err(format!("target '{t}' is a template")),
    }
}

/// Whether the search for a leg goes on to the next attempt after `outcome`: a
/// carrier's rejection only on the statuses the configuration names (408, 5xx, 6xx
/// by default); anything else not answered always.
pub fn gives_way(outcome: &LegOutcome, to_carrier: bool, directory: &dyn Directory) -> bool {
    match outcome {
        LegOutcome::Answered | LegOutcome::CallerGone => false,
        LegOutcome::Rejected(s) => !to_carrier || directory.fails_over(*s),
        LegOutcome::NoAnswer | LegOutcome::Failed(_) => true,
    }
}

/// Renders the applet's custom headers, adds `extra` (from a dynamic URL), and checks
/// the whole set against the custom-header limits (3, 200 bytes, reserved prefixes).
pub fn render_headers(
    c: &Connect,
    cx: &Context<'_>,
    extra: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut renderer = cx.vars.renderer();
    for h in &c.headers {
        let value = renderer
            .render(&h.value)
            .map_err(|e| format!("header {}: {e}", h.name))?;
        out.push((h.name.clone(), value));
    }
    out.extend(extra);
    headers::check_set(&out, &cx.settings.reserved_prefixes).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Renders the caller-id override; it must give an E.164 number.
pub fn render_caller_id(t: Option<&Template>, cx: &Context<'_>) -> Result<Option<String>, String> {
    let Some(t) = t else { return Ok(None) };
    let v = cx
        .vars
        .renderer()
        .render(t)
        .map_err(|e| format!("caller_id: {e}"))?;
    if crate::lang::number::is_e164(&v) {
        Ok(Some(v))
    } else {
        Err(format!(
            "caller_id '{}' is not an E.164 number",
            v.escape_default()
        ))
    }
}

/// The INVITE parameters of one attempt, with callflow's own headers first.
fn leg_request(plan: &Plan, attempt: &Attempt, cx: &mut Context<'_>) -> (String, LegRequest) {
    cx.legs_placed += 1;
    // `{sid}L{n}`, without the formatting machinery (a leg is placed per attempt).
    let leg_sid = [
        cx.info.sid.as_str(),
        "L",
        itoa::Buffer::new().format(cx.legs_placed),
    ]
    .concat();
    let mut headers = vec![
        ("X-Callflow-CallSid".to_string(), cx.info.sid.clone()),
        ("X-Callflow-LegSid".to_string(), leg_sid.clone()),
    ];
    if let Some(t) = attempt.trunk.as_ref().or(cx.info.trunk.as_ref()) {
        headers.push(("X-Callflow-TrunkSid".to_string(), t.clone()));
    }
    headers.extend(plan.headers.iter().cloned());
    let leg = LegRequest {
        uri: attempt.uri.clone(),
        headers,
        ring_timeout: plan.ring_timeout,
        caller_id: plan.caller_id.clone(),
        media: attempt.media.clone(),
    };
    (leg_sid, leg)
}

/// Asks the call to record itself; the trace says why when it cannot.
pub async fn record(cx: &mut Context<'_>, dual: bool) {
    cx.record.record = true;
    cx.record.recording_channels = Some(if dual { "dual" } else { "single" }.into());
    if let Err(why) = cx.call.record(dual).await {
        cx.step.notes.push(format!("not recorded: {why}"));
    }
}

/// How a leg's outcome reads in the trace.
pub fn describe(outcome: &LegOutcome) -> String {
    match outcome {
        LegOutcome::Answered => "answered".to_string(),
        LegOutcome::Rejected(s) => s.to_string(),
        LegOutcome::NoAnswer => "no-answer".to_string(),
        LegOutcome::Failed(why) => format!("failed: {why}"),
        LegOutcome::CallerGone => "caller-gone".to_string(),
    }
}

/// Where the search for a leg stands after one attempt.
enum Next {
    /// The applet is over (bridged and ended, or the caller left).
    Done(Step),
    /// Try the next leg; the applet's outcome if none answers.
    Continue(Outcome),
    /// A carrier's status that does not fail over: stop searching.
    Stop(Outcome),
}

/// Places the plan's legs, in turn or all at once, until one answers; bridges it
/// and waits for it to end.
pub async fn dial_plan(plan: &Plan, cx: &mut Context<'_>) -> Dialled {
    if plan.parallel && plan.attempts.len() > 1 {
        return dial_parallel(plan, cx).await;
    }
    let (mut last, mut last_status) = (Outcome::NoAnswer, None);
    for attempt in &plan.attempts {
        let _channel = match &attempt.carrier {
            Some(name) => match cx.directory.carrier_channel(name) {
                Some(c) => Some(c),
                None => {
                    cx.step.notes.push(format!("carrier {name} is full; next"));
                    continue;
                }
            },
            None => None,
        };
        let (leg_sid, leg) = leg_request(plan, attempt, cx);
        let outcome = cx.call.dial(leg).await;
        tracing::debug!(sid = %cx.info.sid, to = %attempt.uri, ?outcome, "attempt");
        last_status = match &outcome {
            LegOutcome::Rejected(s) => Some(*s),
            LegOutcome::NoAnswer => last_status.or(Some(408)),
            _ => last_status,
        };
        let trace = LegTrace {
            leg_sid,
            to: attempt.uri.to_string(),
            result: describe(&outcome),
            duration_secs: 0,
        };
        let carrier = attempt.carrier.is_some();
        match settle(outcome, trace, &attempt.dialed, carrier, plan, cx).await {
            Next::Done(step) => return Dialled { step, last_status },
            Next::Continue(o) => last = o,
            Next::Stop(o) => {
                last = o;
                break;
            }
        }
    }
    let dialed = plan.attempts.last().map_or("", |a| a.dialed.as_str());
    cx.vars.set_connect(last.dial_status(), 0, dialed);
    Dialled {
        step: last.into(),
        last_status,
    }
}

async fn dial_parallel(plan: &Plan, cx: &mut Context<'_>) -> Dialled {
    let (sids, legs): (Vec<String>, Vec<LegRequest>) = plan
        .attempts
        .iter()
        .map(|a| leg_request(plan, a, cx))
        .unzip();
    let outcome = cx.call.dial_parallel(legs, plan.ring_timeout).await;
    let last_status = match &outcome {
        LegOutcome::Rejected(s) => Some(*s),
        LegOutcome::NoAnswer => Some(408),
        _ => None,
    };
    let dialed: Vec<&str> = plan.attempts.iter().map(|a| a.dialed.as_str()).collect();
    let trace = LegTrace {
        leg_sid: sids.join(","),
        to: dialed.join(", "),
        result: describe(&outcome),
        duration_secs: 0,
    };
    let dialed = dialed.join(",");
    let carrier = plan.attempts.iter().any(|a| a.carrier.is_some());
    let step = match settle(outcome, trace, &dialed, carrier, plan, cx).await {
        Next::Done(step) => step,
        Next::Continue(last) | Next::Stop(last) => {
            cx.vars.set_connect(last.dial_status(), 0, &dialed);
            last.into()
        }
    };
    Dialled { step, last_status }
}

/// What a placed leg means for the applet; `to_carrier` when it went through a
/// carrier (whose statuses fail over only as configured).
async fn settle(
    outcome: LegOutcome,
    mut trace: LegTrace,
    dialed: &str,
    to_carrier: bool,
    plan: &Plan,
    cx: &mut Context<'_>,
) -> Next {
    let next = match outcome {
        LegOutcome::Answered => {
            let started = Instant::now();
            let end = cx.call.wait(plan.max_duration).await;
            trace.duration_secs = started.elapsed().as_secs();
            cx.vars.set_connect(
                Outcome::Completed.dial_status(),
                trace.duration_secs,
                dialed,
            );
            cx.step.legs.push(trace);
            return Next::Done(bridged_end(end, cx));
        }
        LegOutcome::CallerGone => {
            cx.step.legs.push(trace);
            return Next::Done(Step::Stop);
        }
        LegOutcome::Rejected(s) if !gives_way(&outcome, to_carrier, cx.directory) => {
            Next::Stop(rejection(s))
        }
        LegOutcome::Rejected(s) => Next::Continue(rejection(s)),
        _ => Next::Continue(Outcome::NoAnswer),
    };
    cx.step.legs.push(trace);
    next
}

/// Busy for 486 and 600, no answer for any other rejection.
pub fn rejection(status: u16) -> Outcome {
    if matches!(status, 486 | 600) {
        Outcome::Busy
    } else {
        Outcome::NoAnswer
    }
}

/// The step for how a bridged leg ended.
fn bridged_end(end: LegEnd, cx: &mut Context<'_>) -> Step {
    match end {
        LegEnd::FarHangup => Outcome::Completed.into(),
        LegEnd::Transfer { refer_to, headers } => {
            cx.vars.set_refer(&refer_to, &headers);
            cx.step.notes.push(format!("REFER to {refer_to}"));
            Outcome::Transfer.into()
        }
        LegEnd::CallerHangup => Step::Stop,
        LegEnd::Redirected => {
            cx.step
                .notes
                .push("moved into another flow; the far leg hung up".into());
            Step::Stop
        }
        LegEnd::MaxDuration => {
            cx.step
                .notes
                .push("max_duration reached; both legs hung up".into());
            Step::Stop
        }
        LegEnd::MediaTimeout(after) => {
            cx.step.notes.push(format!(
                "media timeout: no RTP for {}s; both legs hung up",
                after.as_secs()
            ));
            Step::Stop
        }
    }
}
