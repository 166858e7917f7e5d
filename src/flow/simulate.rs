//! Scripted stand-ins for a call and for webhooks, so the one executor can run a flow
//! without a network: `callflow simulate` and the executor's unit tests use them.
//!
//! A scenario file says what each dialled leg does, in order, and what each webhook
//! answers:
//!
//! ```yaml
//! call: { from: "+919812345678", to: "+918047112233" }
//! legs: [completed, "transfer sip:queue@example.com", busy]
//! webhooks:
//!   https://partner.example.com/handoff: [{ status: 200, body: { select: sales } }]
//! ```
//!
//! Leg results: `completed` (answered, then the far end hangs up), `transfer URI`
//! (answered, then REFER), `caller_hangup` (answered, then the caller hangs up),
//! `busy`, `no_answer`, `failed`, `rejected NNN`. Legs beyond the list do not answer.
//! A webhook without a scripted answer fails as a refused connection would.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::runtime::{
    CallControl, CarrierRoute, Channel, Directory, DirectoryError, Http, HttpError, HttpResponse,
    LegEnd, LegError, LegOutcome, LegRequest, Query, TrunkRoute,
};
use crate::sip::{Host, SipUri};

/// A scenario file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    /// The caller.
    pub call: ScenarioCall,
    /// What each leg does, in the order the flow places them.
    pub legs: Vec<String>,
    /// What each webhook URL (without query) answers, in order.
    pub webhooks: HashMap<String, Vec<ScriptedAnswer>>,
}

/// The simulated caller.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScenarioCall {
    /// Caller's number.
    pub from: String,
    /// Dialled number.
    pub to: String,
}

impl Default for ScenarioCall {
    fn default() -> Self {
        ScenarioCall {
            from: "+919812345678".into(),
            to: "+918047112233".into(),
        }
    }
}

/// One scripted webhook answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedAnswer {
    /// HTTP status.
    #[serde(default = "ok_status")]
    pub status: u16,
    /// Body: JSON (sent as JSON) or a string (sent as it is).
    #[serde(default)]
    pub body: serde_json::Value,
    /// Fail instead of answering: `timeout` or `refused`.
    pub error: Option<String>,
}

fn ok_status() -> u16 {
    200
}

/// A call whose legs do what the scenario says.
#[derive(Debug)]
pub struct ScriptedCall {
    legs: VecDeque<String>,
    pending_end: Option<LegEnd>,
    answered: bool,
    gone: bool,
    /// What happened, line by line.
    pub log: Vec<String>,
}

impl ScriptedCall {
    /// A call following `legs`.
    pub fn new(legs: &[String]) -> ScriptedCall {
        ScriptedCall {
            legs: legs.iter().cloned().collect(),
            pending_end: None,
            answered: false,
            gone: false,
            log: Vec::new(),
        }
    }
}

#[async_trait]
impl CallControl for ScriptedCall {
    async fn dial(&mut self, leg: LegRequest) -> LegOutcome {
        let script = self.legs.pop_front().unwrap_or_else(|| "no_answer".into());
        let headers: Vec<String> = leg
            .headers
            .iter()
            .map(|(n, v)| format!("{n}: {v}"))
            .collect();
        self.log.push(format!(
            "dial {} [{}] -> {script}",
            leg.uri,
            headers.join(", ")
        ));
        let (word, rest) = script.split_once(' ').unwrap_or((script.as_str(), ""));
        match word {
            "completed" | "transfer" | "caller_hangup" => {
                self.answered = true;
                self.pending_end = Some(match word {
                    "completed" => LegEnd::FarHangup,
                    "transfer" => LegEnd::Transfer {
                        refer_to: rest.trim().to_string(),
                        headers: Default::default(),
                    },
                    _ => LegEnd::CallerHangup,
                });
                LegOutcome::Answered
            }
            "busy" => LegOutcome::Rejected(486),
            "rejected" => LegOutcome::Rejected(rest.trim().parse().unwrap_or(480)),
            "failed" => LegOutcome::Failed(LegError::Transport("scripted failure".into())),
            _ => LegOutcome::NoAnswer,
        }
    }

    async fn dial_parallel(&mut self, legs: Vec<LegRequest>, _ring: Duration) -> LegOutcome {
        let uris: Vec<String> = legs.iter().map(|l| l.uri.to_string()).collect();
        self.log
            .push(format!("ringing at once: {}", uris.join(", ")));
        match legs.into_iter().next() {
            Some(first) => self.dial(first).await,
            None => LegOutcome::NoAnswer,
        }
    }

    async fn wait(&mut self, _max: Duration) -> LegEnd {
        let end = self.pending_end.take().unwrap_or(LegEnd::FarHangup);
        if end == LegEnd::CallerHangup {
            self.gone = true;
        }
        end
    }

    async fn hangup(&mut self, status: u16) {
        self.log.push(if self.answered {
            "hangup: BYE to the caller".to_string()
        } else {
            format!("hangup: {status} to the caller")
        });
        self.gone = true;
    }

    async fn until_caller_gone(&mut self) {
        std::future::pending::<()>().await
    }

    fn caller_gone(&self) -> bool {
        self.gone
    }

    fn answered(&self) -> bool {
        self.answered
    }
}

/// Webhooks that answer from the scenario and log each request.
#[derive(Debug, Default)]
pub struct ScriptedHttp {
    answers: Mutex<HashMap<String, VecDeque<ScriptedAnswer>>>,
    /// Every request, as `GET url?query` or `POST url`.
    pub requests: Mutex<Vec<String>>,
}

impl ScriptedHttp {
    /// Webhooks answering as `scenario` says.
    pub fn new(scenario: &Scenario) -> ScriptedHttp {
        ScriptedHttp {
            answers: Mutex::new(
                scenario
                    .webhooks
                    .iter()
                    .map(|(k, v)| (k.clone(), v.iter().cloned().collect()))
                    .collect(),
            ),
            requests: Mutex::new(Vec::new()),
        }
    }

    fn log(&self, line: String) {
        if let Ok(mut r) = self.requests.lock() {
            r.push(line);
        }
    }

    fn next(&self, url: &str) -> Option<ScriptedAnswer> {
        self.answers.lock().ok()?.get_mut(url)?.pop_front()
    }
}

#[async_trait]
impl Http for ScriptedHttp {
    async fn get(&self, url: &str, query: &Query, _t: Duration) -> Result<HttpResponse, HttpError> {
        self.log(format!("GET {url}?{}", query.as_str()));
        let a = self
            .next(url)
            .ok_or_else(|| HttpError::Connect("connection refused (no scripted answer)".into()))?;
        match a.error.as_deref() {
            Some("timeout") => return Err(HttpError::Timeout),
            Some(e) => return Err(HttpError::Connect(e.to_string())),
            None => {}
        }
        let body = match a.body {
            serde_json::Value::String(s) => s.into_bytes(),
            serde_json::Value::Null => Vec::new(),
            v => v.to_string().into_bytes(),
        };
        Ok(HttpResponse {
            status: a.status,
            body,
        })
    }

    fn spawn_get(&self, url: &str, query: &Query, _t: Duration) {
        self.log(format!("GET {url}?{} (async, not awaited)", query.as_str()));
    }

    async fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
        _t: Duration,
    ) -> Result<u16, HttpError> {
        self.log(format!("POST {url} {body}"));
        Ok(200)
    }
}

/// Trunks and carriers for a simulation: any trunk sid has one destination
/// `sip:<sid>.simulated`, and one carrier `sip:pstn.simulated` carries numbers.
#[derive(Debug, Default)]
pub struct SimulatedDirectory;

impl Directory for SimulatedDirectory {
    fn trunk(&self, sid: &str) -> Result<TrunkRoute, DirectoryError> {
        let host = Host::Domain(format!("{sid}.simulated").into());
        Ok(TrunkRoute {
            destinations: vec![SipUri::new(None, host, None)],
            external_alias: None,
            media: crate::runtime::LegMedia::default(),
        })
    }

    fn carriers(&self) -> Vec<CarrierRoute> {
        vec![CarrierRoute {
            name: "simulated".into(),
            uri: SipUri::new(None, Host::Domain("pstn.simulated".into()), None),
        }]
    }

    fn carrier_channel(&self, _name: &str) -> Option<Channel> {
        Some(Box::new(()))
    }

    fn fails_over(&self, _status: u16) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::executor::run;
    use crate::flow::{CompileOptions, compile_str};
    use crate::lang::vars::CallInfo;
    use crate::runtime::Settings;

    const FLOW: &str = "flow: f\nstart: bot\napplets:\n  bot:\n    connect: { to: \"sip:bot@10.0.0.1\" }\n    on: { completed: ask, no_answer: sorry, busy: busy, transfer: ask }\n  ask:\n    passthru: { url: \"https://p.example/h\" }\n    on: { ok: route, fail: sorry }\n  route:\n    switchcase: { cases: { sales: agent }, default: sorry }\n  agent:\n    connect: { to: \"sip:agent@10.0.0.2\" }\n    next: bye\n  busy:\n    hangup: { status: 486 }\n  sorry:\n    hangup: { status: 480 }\n  bye:\n    hangup: {}\n";

    /// The executor's future lives as long as the call: it stays small (issue 12's
    /// 10,000 concurrent calls; BENCHMARKS.md).
    #[test]
    fn the_executor_future_is_small() {
        let flow = compile_str("f.yaml".into(), FLOW, &CompileOptions::default())
            .flow
            .unwrap();
        let scenario = Scenario::default();
        let mut call = ScriptedCall::new(&[]);
        let http = ScriptedHttp::new(&scenario);
        let settings = Settings::default();
        let lookup = |_: &str| None;
        let fut = run(
            &flow,
            &mut call,
            crate::flow::executor::Webhooks::same(&http),
            &SimulatedDirectory,
            &settings,
            CallInfo::default(),
            &lookup,
        );
        let size = std::mem::size_of_val(&fut);
        eprintln!(
            "executor future {size} B, Context {} B",
            std::mem::size_of::<crate::applets::Context<'_>>()
        );
        assert!(size < 2048, "{size} B");
    }

    async fn path(legs: &[&str], webhooks: &str) -> Vec<(String, String)> {
        let flow = compile_str("f.yaml".into(), FLOW, &CompileOptions::default())
            .flow
            .unwrap();
        let mut scenario: Scenario = serde_yaml::from_str(webhooks).unwrap();
        scenario.legs = legs.iter().map(|s| s.to_string()).collect();
        let mut call = ScriptedCall::new(&scenario.legs);
        let http = ScriptedHttp::new(&scenario);
        let info = CallInfo {
            sid: "CA1".into(),
            ..CallInfo::default()
        };
        let record = run(
            &flow,
            &mut call,
            crate::flow::executor::Webhooks::same(&http),
            &SimulatedDirectory,
            &Settings::default(),
            info,
            &|_| None,
        )
        .await;
        record
            .steps
            .into_iter()
            .map(|s| (s.applet, s.outcome))
            .collect()
    }

    fn p(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[tokio::test]
    async fn handoff_path() {
        let got = path(
            &["completed", "completed"],
            "webhooks: { 'https://p.example/h': [{ body: { select: sales } }] }",
        )
        .await;
        assert_eq!(
            got,
            p(&[
                ("bot", "completed"),
                ("ask", "ok"),
                ("route", "sales"),
                ("agent", "completed"),
                ("bye", "-")
            ])
        );
    }

    #[tokio::test]
    async fn busy_and_fallback_paths() {
        assert_eq!(
            path(&["busy"], "{}").await,
            p(&[("bot", "busy"), ("busy", "-")])
        );
        assert_eq!(
            path(&["failed"], "{}").await,
            p(&[("bot", "no_answer"), ("sorry", "-")])
        );
        // A passthru with no answer at all takes fail.
        assert_eq!(
            path(&["completed"], "{}").await,
            p(&[("bot", "completed"), ("ask", "fail"), ("sorry", "-")])
        );
        // 404 has no transition of its own: fail.
        assert_eq!(
            path(
                &["transfer sip:x@y"],
                "webhooks: { 'https://p.example/h': [{ status: 404 }] }"
            )
            .await,
            p(&[("bot", "transfer"), ("ask", "404"), ("sorry", "-")])
        );
    }

    #[tokio::test]
    async fn dynamic_url_record_is_kept_on_the_call_record() {
        let flow = "flow: d\nstart: c\napplets:\n  c:\n    connect: { dynamic_url: \"https://p.example/r\" }\n    next: bye\n  bye:\n    hangup: {}\n";
        let flow = compile_str("d.yaml".into(), flow, &CompileOptions::default())
            .flow
            .unwrap();
        let scenario: Scenario = serde_yaml::from_str(
            "legs: [completed]\nwebhooks: { 'https://p.example/r': [{ body: { destination: { uris: ['sip:bot@10.0.0.1'] }, record: true, recording_channels: dual } }] }",
        )
        .unwrap();
        let mut call = ScriptedCall::new(&scenario.legs);
        let http = ScriptedHttp::new(&scenario);
        let record = run(
            &flow,
            &mut call,
            crate::flow::executor::Webhooks::same(&http),
            &SimulatedDirectory,
            &Settings::default(),
            CallInfo::default(),
            &|_| None,
        )
        .await;
        assert!(record.record);
        assert_eq!(record.recording_channels.as_deref(), Some("dual"));
        assert_eq!(record.steps[0].outcome, "completed");
    }

    #[tokio::test]
    async fn caller_hanging_up_stops_the_flow() {
        assert_eq!(path(&["caller_hangup"], "{}").await, p(&[("bot", "-")]));
    }
}
