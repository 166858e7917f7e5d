//! Running a connect applet on a live call: expand the targets, place legs in turn
//! (trunk destinations by priority, numbers through carriers by priority), bridge the
//! one that answers, and turn how it ended into an outcome.

use std::time::{Duration, Instant};

use super::{Connect, Dial, Target, dynamic, parse_target};
use crate::call::{LegEnd, LegOutcome, LegRequest};
use crate::flow::executor::{CallControl, Http, LegTrace, Runtime, Step};
use crate::flow::expr::Template;
use crate::flow::headers;
use crate::sip::{SipUri, Uri};

/// One leg to try.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The Request-URI.
    pub uri: SipUri,
    /// The trunk it belongs to, for X-Callflow-TrunkSid.
    pub trunk: Option<String>,
    /// What was dialled, for `connect.dialed` and DialWhomNumber.
    pub dialed: String,
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

/// Runs the applet.
pub async fn run<C: CallControl, H: Http>(c: &Connect, rt: &mut Runtime<'_, C, H>) -> Step {
    match &c.dial {
        Dial::To(targets) => {
            let plan = expand_all(targets, rt).and_then(|attempts| {
                Ok(Plan {
                    attempts,
                    headers: render_headers(c, rt, Vec::new())?,
                    ring_timeout: c.ring_timeout,
                    max_duration: c.max_duration,
                    caller_id: render_caller_id(c.caller_id.as_ref(), rt)?,
                    parallel: c.parallel_ringing,
                })
            });
            match plan {
                Ok(plan) => dial_plan(&plan, rt).await,
                Err(why) => failed(rt, why),
            }
        }
        Dial::Dynamic { url, fallback } => dynamic::run(c, url, fallback.as_ref(), rt).await,
    }
}

/// The outcome `failed`, with the reason in the trace.
pub fn failed<C: CallControl, H: Http>(rt: &mut Runtime<'_, C, H>, why: String) -> Step {
    tracing::info!(sid = %rt.info.sid, applet = %rt.applet, %why, "connect failed");
    rt.step.notes.push(why);
    rt.vars.set_connect("failed", 0, "");
    Step::Outcome("failed".into())
}

/// Expands every target into legs.
pub fn expand_all<C: CallControl, H: Http>(
    targets: &[Target],
    rt: &Runtime<'_, C, H>,
) -> Result<Vec<Attempt>, String> {
    let mut out = Vec::new();
    for t in targets {
        out.extend(expand(t, rt, true)?);
    }
    Ok(out)
}

fn expand<C: CallControl, H: Http>(
    target: &Target,
    rt: &Runtime<'_, C, H>,
    allow_template: bool,
) -> Result<Vec<Attempt>, String> {
    match target {
        Target::Trunk(sid) => {
            let trunk = rt
                .routing
                .trunk(sid)
                .ok_or_else(|| format!("trunk '{sid}' does not exist"))?;
            if trunk.destinations.is_empty() {
                return Err(format!("trunk '{sid}' has no destinations"));
            }
            let user = trunk
                .external_alias
                .clone()
                .unwrap_or_else(|| rt.info.to.clone());
            Ok(rt
                .routing
                .usable_destinations(&trunk)
                .into_iter()
                .map(|d| {
                    let mut uri = d;
                    uri.user = Some(user.clone());
                    Attempt {
                        uri,
                        trunk: Some(sid.clone()),
                        dialed: format!("sip:{sid}"),
                    }
                })
                .collect())
        }
        Target::Number(n) => {
            if rt.routing.carriers().is_empty() {
                return Err(format!("no carrier to dial {n} through"));
            }
            Ok(rt
                .routing
                .usable_carriers()
                .iter()
                .map(|c| {
                    let mut uri = c.uri.clone();
                    uri.user = Some(n.clone());
                    Attempt {
                        uri,
                        trunk: None,
                        dialed: n.clone(),
                    }
                })
                .collect())
        }
        Target::Uri(s) => match Uri::parse(s) {
            Ok(Uri::Sip(uri)) => Ok(vec![Attempt {
                uri,
                trunk: None,
                dialed: s.clone(),
            }]),
            _ => Err(format!("'{s}' is not a SIP URI")),
        },
        Target::Template(t) if allow_template => {
            let rendered = Template::compile(t)
                .map_err(|e| e.error.message)
                .and_then(|t| t.render(&mut rt.vars.scope()).map_err(|e| e.to_string()))
                .map_err(|e| format!("target '{t}' failed: {e}"))?;
            let parsed = parse_target(rendered.trim())
                .map_err(|e| format!("target '{t}' gave '{rendered}': {e}"))?;
            expand(&parsed, rt, false)
        }
        Target::Template(t) => Err(format!("target '{t}' gave another template")),
    }
}

/// Renders the applet's custom headers, adds `extra` (from a dynamic URL), and checks
/// the whole set against DESIGN.md §3's limits.
pub fn render_headers<C: CallControl, H: Http>(
    c: &Connect,
    rt: &Runtime<'_, C, H>,
    extra: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut scope = rt.vars.scope();
    for h in &c.headers {
        let value = h
            .value
            .render(&mut scope)
            .map_err(|e| format!("header {}: {e}", h.name))?;
        out.push((h.name.clone(), value));
    }
    out.extend(extra);
    headers::check_set(&out, &rt.settings.reserved_prefixes).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Renders the caller-id override; it must give an E.164 number.
pub fn render_caller_id<C: CallControl, H: Http>(
    t: Option<&Template>,
    rt: &Runtime<'_, C, H>,
) -> Result<Option<String>, String> {
    let Some(t) = t else { return Ok(None) };
    let v = t
        .render(&mut rt.vars.scope())
        .map_err(|e| format!("caller_id: {e}"))?;
    if crate::config::is_e164(&v) {
        Ok(Some(v))
    } else {
        Err(format!(
            "caller_id '{}' is not an E.164 number",
            v.escape_default()
        ))
    }
}

/// The INVITE parameters of one attempt, with callflow's own headers first.
fn leg_request<C: CallControl, H: Http>(
    plan: &Plan,
    attempt: &Attempt,
    rt: &mut Runtime<'_, C, H>,
) -> (String, LegRequest) {
    rt.legs_placed += 1;
    let leg_sid = format!("{}L{}", rt.info.sid, rt.legs_placed);
    let mut headers = vec![
        ("X-Callflow-CallSid".to_string(), rt.info.sid.clone()),
        ("X-Callflow-LegSid".to_string(), leg_sid.clone()),
    ];
    if let Some(t) = &attempt.trunk {
        headers.push(("X-Callflow-TrunkSid".to_string(), t.clone()));
    }
    headers.extend(plan.headers.iter().cloned());
    let leg = LegRequest {
        uri: attempt.uri.clone(),
        headers,
        ring_timeout: plan.ring_timeout,
        caller_id: plan.caller_id.clone(),
    };
    (leg_sid, leg)
}

fn describe(outcome: &LegOutcome) -> String {
    match outcome {
        LegOutcome::Answered => "answered".to_string(),
        LegOutcome::Rejected(s) => s.to_string(),
        LegOutcome::NoAnswer => "no-answer".to_string(),
        LegOutcome::Failed(why) => format!("failed: {why}"),
        LegOutcome::CallerGone => "caller-gone".to_string(),
    }
}

/// Places the plan's legs, in turn or all at once, until one answers; bridges it
/// and waits for it to end.
pub async fn dial_plan<C: CallControl, H: Http>(plan: &Plan, rt: &mut Runtime<'_, C, H>) -> Step {
    if plan.parallel && plan.attempts.len() > 1 {
        let (sids, legs): (Vec<String>, Vec<LegRequest>) = plan
            .attempts
            .iter()
            .map(|a| leg_request(plan, a, rt))
            .unzip();
        let outcome = rt.call.dial_parallel(legs, plan.ring_timeout).await;
        let dialed: Vec<&str> = plan.attempts.iter().map(|a| a.dialed.as_str()).collect();
        let trace = LegTrace {
            leg_sid: sids.join(","),
            to: dialed.join(", "),
            result: describe(&outcome),
            duration_secs: 0,
        };
        return settle(outcome, trace, &dialed.join(","), plan, rt)
            .await
            .unwrap_or_else(|last| {
                rt.vars.set_connect(
                    if last == "busy" { "busy" } else { "no-answer" },
                    0,
                    &dialed.join(","),
                );
                Step::Outcome(last.into())
            });
    }
    let mut last = "no_answer";
    for attempt in &plan.attempts {
        let (leg_sid, leg) = leg_request(plan, attempt, rt);
        let outcome = rt.call.dial(leg).await;
        let trace = LegTrace {
            leg_sid,
            to: attempt.uri.to_string(),
            result: describe(&outcome),
            duration_secs: 0,
        };
        match settle(outcome, trace, &attempt.dialed, plan, rt).await {
            Ok(step) => return step,
            Err(l) => last = l,
        }
    }
    let dialed = plan.attempts.last().map_or("", |a| a.dialed.as_str());
    rt.vars
        .set_connect(if last == "busy" { "busy" } else { "no-answer" }, 0, dialed);
    Step::Outcome(last.into())
}

/// What a placed leg means for the applet: `Ok(step)` when the applet is over
/// (bridged and ended, or the caller left), `Err(outcome)` to try the next leg.
async fn settle<C: CallControl, H: Http>(
    outcome: LegOutcome,
    mut trace: LegTrace,
    dialed: &str,
    plan: &Plan,
    rt: &mut Runtime<'_, C, H>,
) -> Result<Step, &'static str> {
    match outcome {
        LegOutcome::Answered => {
            let started = Instant::now();
            let end = rt.call.wait(plan.max_duration).await;
            trace.duration_secs = started.elapsed().as_secs();
            rt.vars
                .set_connect("completed", trace.duration_secs, dialed);
            rt.step.legs.push(trace);
            Ok(match end {
                LegEnd::FarHangup => Step::Outcome("completed".into()),
                LegEnd::Transfer { refer_to, headers } => {
                    rt.vars.set_refer(&refer_to, &headers);
                    rt.step.notes.push(format!("REFER to {refer_to}"));
                    Step::Outcome("transfer".into())
                }
                LegEnd::CallerHangup => Step::Stop,
                LegEnd::MaxDuration => {
                    rt.step
                        .notes
                        .push("max_duration reached; both legs hung up".into());
                    Step::Stop
                }
            })
        }
        LegOutcome::CallerGone => {
            rt.step.legs.push(trace);
            Ok(Step::Stop)
        }
        LegOutcome::Rejected(486 | 600) => {
            rt.step.legs.push(trace);
            Err("busy")
        }
        _ => {
            rt.step.legs.push(trace);
            Err("no_answer")
        }
    }
}
