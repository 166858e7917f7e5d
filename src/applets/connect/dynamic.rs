//! The dynamic URL of a connect applet (docs/architecture.md §4): GET the partner's URL, read
//! whom to dial from its JSON, fall back to `fallback_url`, and with
//! `fetch_after_attempt` ask again after each unanswered attempt.

use std::time::Duration;

use serde::Deserialize;

use super::dial::{Attempt, Plan, dial_plan, expand_all, failed, render_caller_id, render_headers};
use super::params::{Connect, Outcome, Target};
use crate::applets::Context;
use crate::lang::expr::Template;
use crate::runtime::Step;
use crate::sip::Uri;

/// The answer of a dynamic URL. Unknown fields are ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DynamicAnswer {
    /// Ask again after each unanswered attempt.
    pub fetch_after_attempt: bool,
    /// Whom to dial.
    pub destination: Option<Destination>,
    /// `param1=value1&param2=value2`, sent as `X-param1: value1` …
    pub custom_params: Option<String>,
    /// Caller id to present.
    pub outgoing_phone_number: Option<String>,
    /// Record the call.
    pub record: Option<bool>,
    /// `single` or `dual`.
    pub recording_channels: Option<String>,
    /// Ring timeout, seconds.
    pub max_ringing_duration: Option<u64>,
    /// Longest conversation, seconds.
    pub max_conversation_duration: Option<u64>,
    /// `{"activate": true, "max_parallel_attempts": N}`: ring up to N legs at once.
    pub parallel_ringing: Option<serde_json::Value>,
}

/// `destination`: one of a trunk, E.164 numbers or SIP URIs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Destination {
    /// A trunk sid.
    pub trunk: Option<String>,
    /// E.164 numbers, dialled through the carriers.
    pub numbers: Vec<String>,
    /// SIP URIs.
    pub uris: Vec<String>,
}

impl DynamicAnswer {
    /// Parses and checks an answer body; the error says what does not validate.
    pub fn parse(body: &[u8]) -> Result<DynamicAnswer, String> {
        let text = std::str::from_utf8(body)
            .map_err(|e| format!("body is not UTF-8 (byte {})", e.valid_up_to()))?;
        let a: DynamicAnswer = serde_json::from_str(text).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => format!("body is not a valid answer: {e}"),
            _ => format!("body is not JSON: {e}"),
        })?;
        if let Some(d) = &a.destination {
            let set = usize::from(d.trunk.is_some())
                + usize::from(!d.numbers.is_empty())
                + usize::from(!d.uris.is_empty());
            if set > 1 {
                return Err("destination holds more than one of trunk, numbers, uris".into());
            }
            if let Some(n) = d.numbers.iter().find(|n| !crate::lang::number::is_e164(n)) {
                return Err(format!("destination number '{n}' is not E.164"));
            }
            if let Some(u) = d
                .uris
                .iter()
                .find(|u| !matches!(Uri::parse(u), Ok(Uri::Sip(_))))
            {
                return Err(format!("destination URI '{u}' is not a SIP URI"));
            }
        }
        if let Some(n) = &a.outgoing_phone_number
            && !crate::lang::number::is_e164(n)
        {
            return Err(format!("outgoing_phone_number '{n}' is not E.164"));
        }
        Ok(a)
    }

    /// Whether the answer names nobody to dial.
    pub fn is_empty(&self) -> bool {
        self.destination
            .as_ref()
            .is_none_or(|d| d.trunk.is_none() && d.numbers.is_empty() && d.uris.is_empty())
    }
}

/// `custom_params` as headers `X-<name>: <value>`.
pub fn custom_params(params: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(params.as_bytes())
        .map(|(k, v)| (format!("X-{k}"), v.into_owned()))
        .collect()
}

/// Runs a dynamic connect.
pub async fn run(
    c: &Connect,
    url: &Template,
    fallback: Option<&Template>,
    cx: &mut Context<'_>,
) -> Step {
    let mut attempt = 1u32;
    let mut last: Option<Step> = None;
    loop {
        let answer = match fetch(url, fallback, attempt, cx).await {
            Fetched::CallerGone => return Step::Stop,
            Fetched::Failed(why) => return failed(cx, why),
            Fetched::Answer(a) => a,
        };
        if answer.record == Some(true) {
            let dual = answer.recording_channels.as_deref() == Some("dual");
            super::dial::record(cx, dual).await;
        }
        if answer.is_empty() {
            cx.step
                .notes
                .push(format!("attempt {attempt}: no destination"));
            return last.unwrap_or_else(|| {
                cx.vars.set_connect(Outcome::NotDialed.dial_status(), 0, "");
                Outcome::NotDialed.into()
            });
        }
        let plan = match plan_of(c, &answer, cx) {
            Ok(p) => p,
            Err(why) => return failed(cx, why),
        };
        let step = dial_plan(&plan, cx).await.step;
        let unanswered = [Outcome::NoAnswer, Outcome::Busy]
            .map(Step::from)
            .contains(&step);
        if !(unanswered && answer.fetch_after_attempt)
            || attempt > cx.settings.max_attempts_after_fetch
        {
            return step;
        }
        attempt += 1;
        last = Some(step);
    }
}

fn plan_of(c: &Connect, answer: &DynamicAnswer, cx: &Context<'_>) -> Result<Plan, String> {
    let d = answer.destination.clone().unwrap_or_default();
    let targets: Vec<Target> = if let Some(t) = d.trunk {
        vec![Target::Trunk(t)]
    } else if !d.numbers.is_empty() {
        d.numbers.into_iter().map(Target::Number).collect()
    } else {
        d.uris.into_iter().map(Target::Uri).collect()
    };
    let mut attempts: Vec<Attempt> = expand_all(&targets, cx)?;
    let fork = answer.parallel_ringing.as_ref();
    let parallel = fork
        .and_then(|p| p.get("activate"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(c.parallel_ringing);
    if parallel
        && let Some(max) = fork
            .and_then(|p| p.get("max_parallel_attempts"))
            .and_then(serde_json::Value::as_u64)
    {
        attempts.truncate(usize::try_from(max.max(1)).unwrap_or(usize::MAX));
    }
    let extra = answer
        .custom_params
        .as_deref()
        .map(custom_params)
        .unwrap_or_default();
    let caller_id = match &answer.outgoing_phone_number {
        Some(n) => Some(n.clone()),
        None => render_caller_id(c.caller_id.as_ref(), cx)?,
    };
    Ok(Plan {
        attempts,
        headers: render_headers(c, cx, extra)?,
        // Seconds from the network: at least one, at most the longest a flow may say.
        ring_timeout: answer
            .max_ringing_duration
            .map_or(c.ring_timeout, bounded_secs),
        max_duration: answer
            .max_conversation_duration
            .map_or(c.max_duration, bounded_secs),
        caller_id,
        parallel,
    })
}

/// A duration in seconds from a webhook, kept between 1 s and 24 h.
fn bounded_secs(secs: u64) -> Duration {
    Duration::from_secs(secs.max(1)).min(crate::lang::duration::MAX)
}

enum Fetched {
    Answer(DynamicAnswer),
    Failed(String),
    CallerGone,
}

/// Asks the dynamic URL, then the fallback; the reason names each failure.
async fn fetch(
    url: &Template,
    fallback: Option<&Template>,
    attempt: u32,
    cx: &mut Context<'_>,
) -> Fetched {
    let mut reasons = Vec::new();
    for (label, t) in
        std::iter::once(("dynamic_url", url)).chain(fallback.map(|f| ("fallback_url", f)))
    {
        let target = match cx.vars.renderer().render(t) {
            Ok(u) => u,
            Err(e) => {
                reasons.push(format!("{label}: template failed: {e}"));
                continue;
            }
        };
        let mut query = cx.webhook_params();
        query.push_display("Attempt", &attempt);
        let timeout = cx.settings.webhook_timeout;
        match cx.get(&target, query, timeout).await {
            None => return Fetched::CallerGone,
            Some(Ok(r)) if (200..300).contains(&r.status) => match DynamicAnswer::parse(&r.body) {
                Ok(a) => return Fetched::Answer(a),
                Err(why) => reasons.push(format!("{label} {target}: {why}")),
            },
            Some(Ok(r)) => reasons.push(format!("{label} {target}: HTTP {}", r.status)),
            Some(Err(e)) => reasons.push(format!("{label} {target}: {e}")),
        }
    }
    Fetched::Failed(reasons.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_validate() {
        let a = DynamicAnswer::parse(br#"{"destination":{"trunk":"t1"},"custom_params":"param1=value1&param2=v%202","extra":1}"#).unwrap();
        assert!(!a.is_empty());
        assert_eq!(
            custom_params(a.custom_params.as_deref().unwrap()),
            vec![
                ("X-param1".to_string(), "value1".to_string()),
                ("X-param2".to_string(), "v 2".to_string())
            ]
        );
        assert!(
            DynamicAnswer::parse(br#"{"destination":{}}"#)
                .unwrap()
                .is_empty()
        );
        assert!(DynamicAnswer::parse(br#"{"destination":{"numbers":["12"]}}"#).is_err());
        assert!(DynamicAnswer::parse(b"not json").is_err());
    }
}
