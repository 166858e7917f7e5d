//! Passthru: ask the partner's webhook and branch on its answer. Outcomes: `ok` (any
//! 2xx), a specific non-2xx status such as `"302"`, and `fail` (any other status, a
//! timeout or a connection error).

use std::time::Duration;

use async_trait::async_trait;

use super::{Applet, Context, DecodeContext};
use crate::lang::decode::{self, MapReader};
use crate::lang::diagnostic::{Diagnostics, did_you_mean};
use crate::lang::expr::Template;
use crate::lang::yaml::Node;
use crate::runtime::Step;

/// The kind's name in flow files.
pub const NAME: &str = "passthru";

/// The named outcomes; statuses from 300 to 599 may be named too.
pub const OUTCOMES: [&str; 2] = ["ok", "fail"];

/// The keys its body may hold.
pub const KEYS: [&str; 3] = ["url", "timeout", "async"];

/// How long the webhook may take when the flow does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The parameters of a passthru applet.
#[derive(Debug, Clone)]
pub struct Passthru {
    /// The webhook, called with GET and the call's parameters.
    pub url: Template,
    /// How long to wait for the answer.
    pub timeout: Duration,
    /// Send without waiting and always take `ok`.
    pub is_async: bool,
}

#[async_trait]
impl Applet for Passthru {
    /// Decodes a passthru body.
    fn decode(body: &Node, cx: DecodeContext<'_>, d: &mut Diagnostics) -> Option<Passthru> {
        let what = format!("passthru applet '{}'", cx.applet);
        let mut m = MapReader::new(body, &what, d)?;
        let errors_before = d.error_count();
        let url = match m.take("url") {
            Some((_, v)) => decode::url(v, "url", d),
            None => {
                d.error(body.pos, format!("{what} needs 'url'"));
                None
            }
        };
        let timeout = m
            .take("timeout")
            .and_then(|(_, v)| decode::duration(v, "timeout", d))
            .unwrap_or(DEFAULT_TIMEOUT);
        let is_async = m
            .take("async")
            .and_then(|(_, v)| decode::boolean(v, "async", d))
            .unwrap_or(false);
        m.finish(d, &KEYS, &what);
        let url = url?;
        (d.error_count() == errors_before).then_some(Passthru {
            url,
            timeout,
            is_async,
        })
    }

    /// Checks an outcome name written under `on:`: ok, fail, or a status from 300
    /// to 599.
    fn check_outcome(outcome: &str) -> Result<(), String> {
        if OUTCOMES.contains(&outcome) {
            return Ok(());
        }
        match outcome.parse::<u16>() {
            Ok(200..=299) => Err(format!(
                "passthru outcome '{outcome}' is never taken: every 2xx status takes 'ok'"
            )),
            Ok(300..=599) if outcome.len() == 3 => Ok(()),
            _ => Err(format!(
                "passthru has no outcome '{outcome}'{}; its outcomes are ok, fail and \
                 HTTP statuses from 300 to 599 such as \"302\"",
                did_you_mean(outcome, OUTCOMES)
            )),
        }
    }

    fn kind(&self) -> &'static str {
        NAME
    }

    fn summary(&self) -> String {
        format!("passthru {}", self.url.source)
    }

    fn waits(&self) -> bool {
        !self.is_async
    }

    /// The outcomes that end the flow when left without a transition.
    fn expected_outcomes(&self) -> Vec<&'static str> {
        if self.is_async {
            vec!["ok"]
        } else {
            vec!["ok", "fail"]
        }
    }

    /// A status without a transition of its own takes `fail`.
    fn fallback(&self, outcome: &str) -> Option<&'static str> {
        outcome.parse::<u16>().is_ok().then_some("fail")
    }

    /// GET the webhook with the call's parameters; 2xx → `ok` with the body in
    /// `passthru.*`; another status → that status (the flow falls back to `fail`
    /// when it names no transition for it); timeout or connection error → `fail`.
    async fn run(&self, cx: &mut Context<'_>) -> Step {
        let url = match cx.vars.renderer().render(&self.url) {
            Ok(u) => u,
            Err(e) => {
                cx.step.notes.push(format!("url template failed: {e}"));
                return Step::outcome("fail");
            }
        };
        let query = cx.webhook_params();
        if self.is_async {
            cx.http.spawn_get(&url, &query, self.timeout);
            cx.step
                .notes
                .push(format!("{url} sent without waiting (async)"));
            return Step::outcome("ok");
        }
        match cx.get(&url, query, self.timeout).await {
            None => Step::Stop,
            Some(Ok(r)) => {
                cx.vars.set_passthru(r.status, &r.body);
                if (200..300).contains(&r.status) {
                    Step::outcome("ok")
                } else {
                    Step::outcome(r.status.to_string())
                }
            }
            Some(Err(e)) => {
                cx.vars.set_passthru(0, b"");
                cx.step.notes.push(format!("{url}: {e}"));
                Step::outcome("fail")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes() {
        assert!(Passthru::check_outcome("ok").is_ok());
        assert!(Passthru::check_outcome("302").is_ok());
        assert!(Passthru::check_outcome("404").is_ok());
        assert!(Passthru::check_outcome("200").is_err());
        assert!(Passthru::check_outcome("99").is_err());
        assert!(Passthru::check_outcome("0302").is_err());
        assert!(
            Passthru::check_outcome("okay")
                .unwrap_err()
                .contains("did you mean 'ok'")
        );
    }
}
