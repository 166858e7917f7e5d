//! Flows on live calls, end to end over real sockets: the engine started from a
//! configuration, a partner webhook on local HTTP, and the test UA as caller, bot and
//! agent.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use callflow::config::Config;
use callflow::server::Server;
use callflow::sip::{Message, Name, Transport};
use support::partner::{Partner, partner};
use support::{Ua, answer, serve};

struct World {
    server: Server,
    caller: Ua,
    bot: Ua,
    agent: Ua,
    partner: Partner,
    _dir: tempfile::TempDir,
}

/// The engine with `flow` (its `WEBHOOK` replaced by the partner's address) on
/// +918047112233, trunk_bot → the bot, trunk_sales → the agent; carriers at
/// `carrier_cidr`.
const CONFIG: &str = r#"
sip: { listen: ["udp://127.0.0.1:0"], options_interval: null }
flows: flows
carriers:
  - { name: pstn, uri: "sip:127.0.0.1:9", addresses: [CARRIER_CIDR], priority: 1 }
trunks:
  - sid: trunk_bot
    destinations: ["sip:BOT"]
    numbers:
      - { number: "+918047112233", mode: flow, flow: f }
  - sid: trunk_sales
    destinations: ["sip:AGENT"]
webhooks: { timeout: 2s }
"#;

async fn world(flow: &str, carrier_cidr: &str) -> World {
    world_cfg(flow, &CONFIG.replace("CARRIER_CIDR", carrier_cidr)).await
}

/// The engine with `flow` and the configuration `template`, where BOT, AGENT and
/// WEBHOOK (in either) stand for the UAs' and the partner's addresses.
async fn world_cfg(flow: &str, template: &str) -> World {
    let (partner, http) = partner().await;
    let bot = Ua::new(Transport::Udp, "bot", None).await;
    let agent = Ua::new(Transport::Udp, "agent", None).await;
    let caller = Ua::new(Transport::Udp, "caller", None).await;
    let place = |text: &str| {
        text.replace("WEBHOOK", &format!("http://{http}"))
            .replace("BOT", &bot.addr.to_string())
            .replace("AGENT", &agent.addr.to_string())
    };
    let (server, dir) = serve(&place(template), &[("f", &place(flow))]).await;
    World {
        server,
        caller,
        bot,
        agent,
        partner,
        _dir: dir,
    }
}

impl World {
    fn engine(&self) -> SocketAddr {
        self.server.transports.local_addr(Transport::Udp).unwrap()
    }

    async fn call(&mut self, number: &str, id: &str) {
        let to = self.engine();
        let invite = self.caller.invite(&format!("sip:{number}@{to}"), id);
        self.caller.send(&invite, to).await;
    }

    /// The bot answers; the caller gets 200 and ACKs. Returns the bot's INVITE and
    /// the caller's 200.
    async fn bot_answers(&mut self) -> (Message, Message) {
        let (inv, from) = self.bot.expect_request("INVITE").await;
        self.bot
            .send(
                &self.bot.response(&inv, 200, "bot1", Some(&answer(41000))),
                from,
            )
            .await;
        let ok = self.caller.expect_final("INVITE").await;
        assert_eq!(ok.status(), Some(200));
        let ack = self.caller.in_dialog("ACK", &ok, true, "", 1, "ack");
        self.caller.send(&ack, Ua::contact_addr(&ok)).await;
        self.bot.expect_request("ACK").await;
        (inv, ok)
    }

    /// The agent answers a re-targeted leg (invited without SDP); the caller is
    /// re-INVITEd and answers.
    async fn agent_answers(&mut self) -> Message {
        let (inv, from) = self.agent.expect_request("INVITE").await;
        assert!(inv.body.is_empty());
        self.agent
            .send(
                &self.agent.response(&inv, 200, "ag1", Some(&answer(42000))),
                from,
            )
            .await;
        let (reinvite, efrom) = self.caller.expect_request("INVITE").await;
        self.caller
            .send(
                &self
                    .caller
                    .response(&reinvite, 200, "x", Some(&answer(40000))),
                efrom,
            )
            .await;
        self.agent.expect_request("ACK").await;
        inv
    }
}

const HANDOFF: &str = r#"
flow: f
start: bot
applets:
  bot:
    connect:
      to: sip:trunk_bot
      headers: { X-Caller: "${call.from}" }
    on: { completed: handoff, transfer: handoff, no_answer: sorry }
  handoff:
    passthru: { url: WEBHOOK/handoff }
    on: { ok: route, "302": bye, "404": bye, fail: bye }
  route:
    switchcase:
      cases: { sales: agent_sales }
      default: bye
  agent_sales:
    connect: { to: sip:trunk_sales }
    next: bye
  sorry:
    hangup: { status: 480 }
  bye:
    hangup: {}
"#;

#[tokio::test]
async fn seed_handoff_bot_hangs_up_then_agent() {
    let mut w = world(HANDOFF, "127.0.0.1/32").await;
    w.partner.answer("handoff", 200, r#"{"select":"sales"}"#);
    w.call("+918047112233", "handoff").await;
    let (bot_inv, _) = w.bot_answers().await;
    // What the bot sees: the DID in the Request-URI, callflow's and the flow's headers.
    assert_eq!(bot_inv.request_uri().unwrap().user(), Some("+918047112233"));
    assert_eq!(
        bot_inv.header(&Name::parse("X-Callflow-TrunkSid")),
        Some("trunk_bot")
    );
    assert_eq!(
        bot_inv.header(&Name::parse("X-Caller")),
        Some("+919812345678")
    );
    let sid = bot_inv
        .header(&Name::parse("X-Callflow-CallSid"))
        .unwrap()
        .to_string();
    // The bot hangs up; the caller stays; the webhook decides; the agent answers.
    let bye = w.bot.in_dialog("BYE", &bot_inv, false, "bot1", 5, "botbye");
    w.bot.send(&bye, w.engine()).await;
    w.agent_answers().await;
    let asked = w.partner.asked("handoff");
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0]["CallSid"], sid);
    assert_eq!(asked[0]["From"], "+919812345678");
    assert_eq!(asked[0]["To"], "+918047112233");
    assert_eq!(asked[0]["flow_id"], "f");
    assert_eq!(asked[0]["applet"], "handoff");
    assert_eq!(asked[0]["DialCallStatus"], "completed");
}

#[tokio::test]
async fn seed_handoff_with_refer_from_the_bot() {
    let mut w = world(HANDOFF, "127.0.0.1/32").await;
    w.partner.answer("handoff", 200, r#"{"select":"sales"}"#);
    w.call("+918047112233", "refer").await;
    let (bot_inv, _) = w.bot_answers().await;
    let mut refer = w
        .bot
        .in_dialog("REFER", &bot_inv, false, "bot1", 5, "refer");
    refer.push_header(Name::ReferTo, "<sip:queue@example.com>");
    refer.push_header(Name::parse("X-Intent"), "human");
    w.bot.send(&refer, w.engine()).await;
    assert_eq!(w.bot.expect_final("REFER").await.status(), Some(202));
    for _ in 0..2 {
        let (n, from) = w.bot.expect_request("NOTIFY").await;
        w.bot
            .send(&w.bot.response(&n, 200, "bot1", None), from)
            .await;
    }
    let (bye, from) = w.bot.expect_request("BYE").await;
    w.bot
        .send(&w.bot.response(&bye, 200, "bot1", None), from)
        .await;
    w.agent_answers().await;
    assert_eq!(w.partner.asked("handoff").len(), 1);
}

async fn passthru_branch(status: u16, body: &str, expect_agent: bool) {
    let mut w = world(HANDOFF, "127.0.0.1/32").await;
    passthru_answered(&mut w, status, body, expect_agent).await;
}

async fn passthru_answered(w: &mut World, status: u16, body: &str, expect_agent: bool) {
    w.partner.answer("handoff", status, body);
    w.call("+918047112233", &format!("pt{status}")).await;
    let (bot_inv, _) = w.bot_answers().await;
    let bye = w.bot.in_dialog("BYE", &bot_inv, false, "bot1", 5, "botbye");
    w.bot.send(&bye, w.engine()).await;
    if expect_agent {
        w.agent_answers().await;
    } else {
        // The engine hangs up on the caller; no agent is called.
        let (b, from) = w.caller.expect_request("BYE").await;
        w.caller
            .send(&w.caller.response(&b, 200, "x", None), from)
            .await;
        assert!(w.agent.recv(0.2).await.is_none());
    }
}

#[tokio::test]
async fn passthru_200_routes_to_the_agent() {
    passthru_branch(200, r#"{"select":"sales"}"#, true).await;
}

/// Each named status has its own applet (an async passthru that leaves a mark on
/// the partner), and a status the flow does not name takes `fail`.
const BY_STATUS: &str = r#"
flow: f
start: bot
applets:
  bot:
    connect: { to: sip:trunk_bot }
    on: { completed: handoff, transfer: handoff, no_answer: bye }
  handoff:
    passthru: { url: WEBHOOK/handoff }
    on: { ok: took_ok, "302": took_302, "404": took_404, fail: took_fail }
  took_ok:
    passthru: { url: WEBHOOK/took_ok }
    next: bye
  took_302:
    passthru: { url: WEBHOOK/took_302 }
    next: bye
  took_404:
    passthru: { url: WEBHOOK/took_404 }
    next: bye
  took_fail:
    passthru: { url: WEBHOOK/took_fail }
    next: bye
  bye:
    hangup: {}
"#;

#[tokio::test]
async fn passthru_302_404_500_hang_up() {
    for (status, branch) in [(302, "took_302"), (404, "took_404"), (500, "took_fail")] {
        let mut w = world(BY_STATUS, "127.0.0.1/32").await;
        passthru_answered(&mut w, status, "", false).await;
        for mark in ["took_ok", "took_302", "took_404", "took_fail"] {
            let expected = usize::from(mark == branch);
            assert_eq!(
                w.partner.asked(mark).len(),
                expected,
                "HTTP {status} should take {branch} only (asked {mark})"
            );
        }
    }
}

#[tokio::test]
async fn unknown_number_gets_404() {
    let mut w = world(HANDOFF, "127.0.0.1/32").await;
    w.call("+910000000000", "unknown").await;
    assert_eq!(w.caller.expect_final("INVITE").await.status(), Some(404));
}

#[tokio::test]
async fn source_that_is_not_a_carrier_gets_nothing() {
    // Neither a carrier nor a trunk's address, and no trunk uses digest: dropped.
    let mut w = world(HANDOFF, "10.9.9.9/32").await;
    w.call("+918047112233", "forbidden").await;
    assert!(w.caller.recv(0.5).await.is_none());
    assert!(w.bot.recv(0.2).await.is_none());
}

const DYNAMIC: &str = r#"
flow: f
start: route
status_callback: WEBHOOK/status
applets:
  route:
    connect:
      dynamic_url: WEBHOOK/route
      fallback_url: WEBHOOK/backup
      ring_timeout: 2s
    on: { completed: bye, no_answer: bye, not_dialed: closed, failed: broken, transfer: bye }
  closed:
    hangup: { status: 480 }
  broken:
    hangup: { status: 503 }
  bye:
    hangup: {}
"#;

#[tokio::test]
async fn dynamic_url_trunk_and_three_custom_params_reach_the_bot() {
    let mut w = world(DYNAMIC, "127.0.0.1/32").await;
    w.partner.answer(
        "route",
        200,
        r#"{"destination":{"trunk":"trunk_bot"},"custom_params":"param1=value1&param2=value2&param3=value3","record":true,"recording_channels":"dual"}"#,
    );
    w.call("+918047112233", "dyn").await;
    let (inv, _) = w.bot_answers().await;
    for i in 1..=3 {
        assert_eq!(
            inv.header(&Name::parse(&format!("X-param{i}"))),
            Some(format!("value{i}").as_str())
        );
    }
    let q = &w.partner.asked("route")[0];
    assert_eq!(q["Attempt"], "1");
    assert_eq!(q["Direction"], "incoming");
    assert_eq!(q["CallType"], "call-attempt");
}

async fn dynamic_refused(custom_params: &str) {
    let mut w = world(DYNAMIC, "127.0.0.1/32").await;
    let body =
        serde_json::json!({"destination": {"trunk": "trunk_bot"}, "custom_params": custom_params});
    w.partner.answer("route", 200, &body.to_string());
    w.call("+918047112233", "refused").await;
    assert_eq!(
        w.caller.expect_final("INVITE").await.status(),
        Some(503),
        "{custom_params}"
    );
    assert!(w.bot.recv(0.2).await.is_none(), "no malformed leg placed");
}

#[tokio::test]
async fn dynamic_url_custom_params_over_the_limits_are_refused() {
    dynamic_refused("a=1&b=2&c=3&d=4").await;
    // "X-a" and 198 bytes of value: 201 bytes.
    dynamic_refused(&format!("a={}", "v".repeat(198))).await;
    dynamic_refused("a=x%0D%0AVia:%20SIP/2.0/UDP%20evil").await;
    dynamic_refused("Callflow-CallSid=forged").await;
}

#[tokio::test]
async fn dynamic_url_failure_uses_the_fallback() {
    let mut w = world(DYNAMIC, "127.0.0.1/32").await;
    w.partner.answer("route", 500, "");
    w.partner.answer(
        "backup",
        200,
        r#"{"destination":{"uris":["sip:BOT"]}}"#.replace("BOT", &w.bot.addr.to_string()).as_str(),
    );
    w.call("+918047112233", "fallback").await;
    w.bot_answers().await;
    assert_eq!(w.partner.asked("backup").len(), 1);
}

#[tokio::test]
async fn dynamic_url_and_fallback_failing_gives_failed() {
    let mut w = world(DYNAMIC, "127.0.0.1/32").await;
    w.partner.answer("route", 200, "not json");
    w.call("+918047112233", "bothfail").await;
    assert_eq!(w.caller.expect_final("INVITE").await.status(), Some(503));
}

#[tokio::test]
async fn dynamic_url_empty_destination_is_not_dialed() {
    let mut w = world(DYNAMIC, "127.0.0.1/32").await;
    w.partner.answer("route", 200, r#"{"destination":{}}"#);
    w.call("+918047112233", "notdialed").await;
    assert_eq!(w.caller.expect_final("INVITE").await.status(), Some(480));
}

#[tokio::test]
async fn fetch_after_attempt_asks_again_after_unanswered_attempts() {
    let mut w = world(DYNAMIC, "127.0.0.1/32").await;
    w.partner.answer(
        "route",
        200,
        r#"{"fetch_after_attempt":true,"destination":{"trunk":"trunk_bot"}}"#,
    );
    w.call("+918047112233", "fetch").await;
    for _ in 0..2 {
        let (inv, from) = w.bot.expect_request("INVITE").await;
        w.bot
            .send(&w.bot.response(&inv, 480, "b", None), from)
            .await;
        w.bot.expect_request("ACK").await;
    }
    w.bot_answers().await;
    let asked = w.partner.asked("route");
    let attempts: Vec<&str> = asked.iter().map(|q| q["Attempt"].as_str()).collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    assert_eq!(asked[1]["DialCallStatus"], "no-answer");
}

#[tokio::test]
async fn status_callback_is_posted_at_call_end() {
    let mut w = world(DYNAMIC, "127.0.0.1/32").await;
    w.partner
        .answer("route", 200, r#"{"destination":{"trunk":"trunk_bot"}}"#);
    w.call("+918047112233", "status").await;
    let (_, ok) = w.bot_answers().await;
    let bye = w.caller.in_dialog("BYE", &ok, true, "", 2, "cbye");
    w.caller.send(&bye, Ua::contact_addr(&ok)).await;
    let (b, from) = w.bot.expect_request("BYE").await;
    w.bot
        .send(&w.bot.response(&b, 200, "bot1", None), from)
        .await;
    for _ in 0..100 {
        if !w.partner.posted.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let posted = w.partner.posted.lock().unwrap().clone();
    assert_eq!(posted.len(), 1);
    let p = &posted[0];
    assert_eq!(p["Status"], "completed");
    assert_eq!(p["From"], "+919812345678");
    assert_eq!(p["FlowId"], "f");
    assert_eq!(p["Applets"], serde_json::json!(["route"]));
    assert_eq!(p["Legs"][0]["Status"], "answered");
}

const SLOW: &str = r#"
flow: f
start: bot
applets:
  bot:
    connect: { to: sip:trunk_bot }
    on: { completed: handoff, no_answer: bye, transfer: bye }
  handoff:
    passthru: { url: WEBHOOK/handoff, timeout: 300ms }
    on: { ok: agent, fail: sorry }
  agent:
    connect: { to: sip:trunk_sales }
    next: bye
  sorry:
    hangup: { status: 480 }
  bye:
    hangup: {}
"#;

#[tokio::test]
async fn passthru_too_late_takes_fail() {
    let mut w = world(SLOW, "127.0.0.1/32").await;
    w.partner.answer("handoff", 200, "{}");
    w.partner.delay("handoff", 1000);
    w.call("+918047112233", "late").await;
    let (bot_inv, _) = w.bot_answers().await;
    let bye = w.bot.in_dialog("BYE", &bot_inv, false, "bot1", 5, "b");
    w.bot.send(&bye, w.engine()).await;
    let (b, from) = w.caller.expect_request("BYE").await;
    w.caller
        .send(&w.caller.response(&b, 200, "x", None), from)
        .await;
    assert!(w.agent.recv(0.2).await.is_none());
}

#[tokio::test]
async fn passthru_connection_refused_takes_fail() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let flow = SLOW.replace("WEBHOOK/handoff", &format!("http://{closed}/handoff"));
    let mut w = world(&flow, "127.0.0.1/32").await;
    w.call("+918047112233", "refused").await;
    let (bot_inv, _) = w.bot_answers().await;
    let bye = w.bot.in_dialog("BYE", &bot_inv, false, "bot1", 5, "b");
    w.bot.send(&bye, w.engine()).await;
    // fail goes to sorry (a hangup): the agent, on ok's branch, is never invited.
    assert!(
        w.agent.recv(0.5).await.is_none(),
        "a refused connection must not take ok"
    );
    let (b, from) = w.caller.expect_request("BYE").await;
    w.caller
        .send(&w.caller.response(&b, 200, "x", None), from)
        .await;
}

#[tokio::test]
async fn caller_hanging_up_while_passthru_is_pending_cancels_it() {
    let mut w = world(
        SLOW.replace("timeout: 300ms", "timeout: 30s").as_str(),
        "127.0.0.1/32",
    )
    .await;
    w.partner.answer("handoff", 200, "{}");
    w.partner.delay("handoff", 10_000);
    w.call("+918047112233", "gone").await;
    let (bot_inv, ok) = w.bot_answers().await;
    let bye = w.bot.in_dialog("BYE", &bot_inv, false, "bot1", 5, "b");
    w.bot.send(&bye, w.engine()).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        w.partner.asked("handoff").len(),
        1,
        "the passthru is pending"
    );
    let started = std::time::Instant::now();
    let cbye = w.caller.in_dialog("BYE", &ok, true, "", 2, "cb");
    w.caller.send(&cbye, Ua::contact_addr(&ok)).await;
    assert_eq!(w.caller.expect_final("BYE").await.status(), Some(200));
    for _ in 0..250 {
        if w.server.engine.active_calls() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(w.server.engine.active_calls(), 0);
    // The webhook takes 10 s; the call ended long before.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(6),
        "did not wait for the webhook"
    );
    assert!(w.agent.recv(0.2).await.is_none());
}

#[tokio::test]
async fn caller_cancelling_while_the_bot_rings() {
    let mut w = world(HANDOFF, "127.0.0.1/32").await;
    w.call("+918047112233", "cancel").await;
    let (inv, from) = w.bot.expect_request("INVITE").await;
    w.bot
        .send(&w.bot.response(&inv, 180, "bot1", None), from)
        .await;
    assert_eq!(w.caller.expect_response().await.status(), Some(180));
    let to = w.engine();
    let invite = w
        .caller
        .invite(&format!("sip:+918047112233@{to}"), "cancel");
    let mut cancel = invite.clone();
    cancel.start = callflow::sip::StartLine::Request {
        method: callflow::sip::Method::Cancel,
        uri: invite.request_uri().unwrap().clone(),
    };
    cancel.set_header(Name::CSeq, "1 CANCEL");
    cancel.body = Default::default();
    w.caller.send(&cancel, to).await;
    let (c, from) = w.bot.expect_request("CANCEL").await;
    w.bot
        .send(&w.bot.response(&c, 200, "bot1", None), from)
        .await;
    w.bot
        .send(&w.bot.response(&inv, 487, "bot1", None), from)
        .await;
    assert_eq!(w.caller.expect_final("INVITE").await.status(), Some(487));
    assert!(w.partner.asked("handoff").is_empty(), "the flow stopped");
}

const ONE_LEG: &str = "flow: f\nstart: c\napplets:\n  c:\n    connect: { to: TARGET EXTRA }\n    next: bye\n  bye:\n    hangup: {}\n";

fn one_leg(target: &str, extra: &str) -> String {
    ONE_LEG.replace("TARGET", target).replace("EXTRA", extra)
}

#[tokio::test]
async fn trunk_destinations_fail_over_in_priority_order() {
    let cfg = CONFIG.replace("CARRIER_CIDR", "127.0.0.1/32").replace(
        r#"destinations: ["sip:BOT"]"#,
        r#"destinations: ["sip:AGENT", "sip:BOT"]"#,
    );
    let mut w = world_cfg(&one_leg("sip:trunk_bot", ""), &cfg).await;
    w.call("+918047112233", "failover").await;
    // The first destination answers 503; the second takes the call.
    let (inv, from) = w.agent.expect_request("INVITE").await;
    w.agent
        .send(&w.agent.response(&inv, 503, "a", None), from)
        .await;
    w.agent.expect_request("ACK").await;
    w.bot_answers().await;
}

/// `call.headers` reads the caller's INVITE (names in lower case) in a live call.
#[tokio::test]
async fn call_headers_hold_the_callers_invite() {
    let cfg = CONFIG.replace("CARRIER_CIDR", "127.0.0.1/32");
    let flow = one_leg(
        "sip:trunk_bot",
        ", headers: { X-Came-As: '${call.headers[\"call-id\"]}/${call.headers[\"max-forwards\"]}' }",
    );
    let mut w = world_cfg(&flow, &cfg).await;
    w.call("+918047112233", "hdrs-7").await;
    let (inv, _) = w.bot_answers().await;
    assert_eq!(inv.header(&Name::parse("X-Came-As")), Some("hdrs-7/70"));
    // The first leg's sid is the call's with `L1`.
    let call_sid = inv.header(&Name::parse("X-Callflow-CallSid")).unwrap_or("");
    assert!(call_sid.starts_with("CA"), "{call_sid}");
    assert_eq!(
        inv.header(&Name::parse("X-Callflow-LegSid")),
        Some(format!("{call_sid}L1").as_str())
    );
}

#[tokio::test]
async fn external_alias_is_the_request_uri_user() {
    let cfg = CONFIG.replace("CARRIER_CIDR", "127.0.0.1/32").replace(
        r#"destinations: ["sip:BOT"]"#,
        "destinations: [\"sip:BOT\"]\n    external_alias: \"+910000000001\"",
    );
    let mut w = world_cfg(&one_leg("sip:trunk_bot", ""), &cfg).await;
    w.call("+918047112233", "alias").await;
    let (inv, _) = w.bot_answers().await;
    assert_eq!(inv.request_uri().unwrap().user(), Some("+910000000001"));
    // To still carries the DID the caller dialled.
    assert_eq!(inv.to_header().unwrap().uri.user(), Some("+918047112233"));
}

#[tokio::test]
async fn numbers_go_through_the_carrier_with_caller_id_override() {
    let cfg = CONFIG
        .replace("CARRIER_CIDR", "127.0.0.1/32")
        .replace(r#"uri: "sip:127.0.0.1:9""#, r#"uri: "sip:AGENT""#);
    let flow = one_leg("\"+919999999999\"", ", caller_id: \"+918000000000\"");
    let mut w = world_cfg(&flow, &cfg).await;
    w.call("+918047112233", "pstn").await;
    let (inv, from) = w.agent.expect_request("INVITE").await;
    assert_eq!(inv.request_uri().unwrap().user(), Some("+919999999999"));
    assert_eq!(inv.from_header().unwrap().uri.user(), Some("+918000000000"));
    w.agent
        .send(
            &w.agent.response(&inv, 200, "a", Some(&answer(41000))),
            from,
        )
        .await;
    assert_eq!(w.caller.expect_final("INVITE").await.status(), Some(200));
}

#[tokio::test]
async fn max_duration_hangs_up_both_legs() {
    let mut w = world(
        &one_leg("sip:trunk_bot", ", max_duration: 500ms"),
        "127.0.0.1/32",
    )
    .await;
    w.call("+918047112233", "maxdur").await;
    w.bot_answers().await;
    let (b, from) = w.bot.expect_request("BYE").await;
    w.bot
        .send(&w.bot.response(&b, 200, "bot1", None), from)
        .await;
    let (c, from) = w.caller.expect_request("BYE").await;
    w.caller
        .send(&w.caller.response(&c, 200, "x", None), from)
        .await;
}

#[tokio::test]
async fn draining_engine_answers_new_calls_503_with_retry_after() {
    let mut w = world(HANDOFF, "127.0.0.1/32").await;
    w.server.engine.drain();
    w.call("+918047112233", "drain").await;
    let r = w.caller.expect_final("INVITE").await;
    assert_eq!(r.status(), Some(503));
    assert!(r.header(&Name::RetryAfter).is_some());
}

/// A call to a flow that rings the bot and the agent at once; both INVITEs arrive.
async fn forked(id: &str) -> (World, (Message, SocketAddr), (Message, SocketAddr)) {
    let cfg = CONFIG.replace("CARRIER_CIDR", "127.0.0.1/32");
    let flow = one_leg(
        "[\"sip:bot@BOT\", \"sip:agent@AGENT\"]",
        ", parallel_ringing: true",
    );
    let mut w = world_cfg(&flow, &cfg).await;
    w.call("+918047112233", id).await;
    let bot = w.bot.expect_request("INVITE").await;
    let agent = w.agent.expect_request("INVITE").await;
    (w, bot, agent)
}

#[tokio::test]
async fn parallel_ringing_bridges_the_first_answer_and_cancels_the_rest() {
    let (mut w, (b_inv, b_from), (a_inv, a_from)) = forked("fork").await;
    w.bot
        .send(&w.bot.response(&b_inv, 180, "b", None), b_from)
        .await;
    assert_eq!(w.caller.expect_response().await.status(), Some(180));
    // The agent answers first: bridged; the bot is cancelled.
    w.agent
        .send(
            &w.agent.response(&a_inv, 200, "a", Some(&answer(42000))),
            a_from,
        )
        .await;
    assert_eq!(w.caller.expect_final("INVITE").await.status(), Some(200));
    let (cancel, from) = w.bot.expect_request("CANCEL").await;
    w.bot
        .send(&w.bot.response(&cancel, 200, "b", None), from)
        .await;
    w.bot
        .send(&w.bot.response(&b_inv, 487, "b", None), from)
        .await;
    w.bot.expect_request("ACK").await;
    w.agent.expect_request("ACK").await;
}

#[tokio::test]
async fn parallel_ringing_hangs_up_a_late_second_answer() {
    let (mut w, (b_inv, b_from), (a_inv, a_from)) = forked("fork2").await;
    w.bot
        .send(
            &w.bot.response(&b_inv, 200, "b", Some(&answer(41000))),
            b_from,
        )
        .await;
    assert_eq!(w.caller.expect_final("INVITE").await.status(), Some(200));
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    w.agent
        .send(
            &w.agent.response(&a_inv, 200, "a", Some(&answer(42000))),
            a_from,
        )
        .await;
    // The late answer is acknowledged, then hung up.
    w.agent.expect_request("ACK").await;
    let (bye, from) = w.agent.expect_request("BYE").await;
    w.agent
        .send(&w.agent.response(&bye, 200, "a", None), from)
        .await;
    w.bot.expect_request("ACK").await;
}

#[tokio::test]
async fn pstn_mode_number_goes_straight_to_the_trunk() {
    let cfg = CONFIG
        .replace("CARRIER_CIDR", "127.0.0.1/32")
        .replace(
            r#"      - { number: "+918047112233", mode: flow, flow: f }"#,
            "      - { number: \"+918047112233\", mode: flow, flow: f }\n      - { number: \"+918047112234\", mode: pstn }",
        );
    let mut w = world_cfg(HANDOFF, &cfg).await;
    w.call("+918047112234", "pstn-mode").await;
    let (inv, _) = w.bot_answers().await;
    assert_eq!(inv.request_uri().unwrap().user(), Some("+918047112234"));
    assert!(w.partner.asked("handoff").is_empty(), "no flow ran");
}

#[tokio::test]
async fn async_passthru_does_not_wait_and_takes_ok() {
    let flow = "flow: f\nstart: note\napplets:\n  note:\n    passthru: { url: WEBHOOK/notify, async: true }\n    next: bot\n  bot:\n    connect: { to: sip:trunk_bot }\n    next: bye\n  bye:\n    hangup: {}\n";
    let mut w = world(flow, "127.0.0.1/32").await;
    w.partner.answer("notify", 500, "");
    w.partner.delay("notify", 10_000);
    w.call("+918047112233", "async").await;
    let started = std::time::Instant::now();
    w.bot_answers().await;
    // The webhook takes 10 s; the bot was dialled long before.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(6),
        "did not wait for the webhook"
    );
    assert_eq!(w.partner.asked("notify").len(), 1);
}

#[tokio::test]
async fn refer_target_and_headers_are_flow_variables() {
    let flow = r#"
flow: f
start: bot
applets:
  bot:
    connect: { to: sip:trunk_bot }
    on: { completed: bye, no_answer: bye, transfer: intent }
  intent:
    switchcase:
      value: 'refer.headers["X-Intent"] + "@" + refer.to'
      cases: { "human@sip:queue@example.com": agent }
      default: bye
  agent:
    connect: { to: sip:trunk_sales }
    next: bye
  bye:
    hangup: {}
"#;
    let mut w = world(flow, "127.0.0.1/32").await;
    w.call("+918047112233", "refer-vars").await;
    let (bot_inv, _) = w.bot_answers().await;
    let mut refer = w
        .bot
        .in_dialog("REFER", &bot_inv, false, "bot1", 5, "refer");
    refer.push_header(Name::ReferTo, "<sip:queue@example.com>");
    refer.push_header(Name::parse("X-Intent"), "human");
    w.bot.send(&refer, w.engine()).await;
    for _ in 0..2 {
        let (n, from) = w.bot.expect_request("NOTIFY").await;
        w.bot
            .send(&w.bot.response(&n, 200, "bot1", None), from)
            .await;
    }
    let (bye, from) = w.bot.expect_request("BYE").await;
    w.bot
        .send(&w.bot.response(&bye, 200, "bot1", None), from)
        .await;
    w.agent_answers().await;
}

#[tokio::test]
async fn reload_during_a_live_call_drops_nothing() {
    let mut w = world(HANDOFF, "127.0.0.1/32").await;
    w.partner.answer("handoff", 200, r#"{"select":"nobody"}"#);
    // Call A runs the hand-off flow; the bot answers.
    w.call("+918047112233", "before").await;
    let (bot_inv, ok_a) = w.bot_answers().await;
    // Reload: the number now runs a flow that goes straight to the agent.
    let dir = w._dir.path().to_path_buf();
    std::fs::write(
        dir.join("flows/f.yaml"),
        "flow: f\nstart: agent\napplets:\n  agent:\n    connect: { to: sip:trunk_sales }\n    next: bye\n  bye:\n    hangup: {}\n",
    )
    .unwrap();
    w.server
        .reload(&Config::load(&dir.join("callflow.yaml")).unwrap())
        .await
        .unwrap();
    // A new call gets the new flow.
    w.call("+918047112233", "after").await;
    let (inv, from) = w.agent.expect_request("INVITE").await;
    w.agent
        .send(&w.agent.response(&inv, 486, "ag", None), from)
        .await;
    // Call A still runs the flow it started with: the bot hangs up, the passthru runs.
    let bye = w.bot.in_dialog("BYE", &bot_inv, false, "bot1", 5, "botbye");
    w.bot.send(&bye, w.engine()).await;
    let (b, from) = w.caller.expect_request("BYE").await;
    w.caller
        .send(&w.caller.response(&b, 200, "x", None), from)
        .await;
    assert_eq!(w.partner.asked("handoff").len(), 1, "call A kept its flow");
    let _ = ok_a;
    // An invalid flow is refused and the running configuration stays.
    std::fs::write(dir.join("flows/f.yaml"), "flow: f\nstart: nowhere\n").unwrap();
    let err = w
        .server
        .reload(&Config::load(&dir.join("callflow.yaml")).unwrap())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("f.yaml:1:1: error: missing 'applets'"),
        "{err}"
    );
    w.call("+918047112233", "still").await;
    let (inv, _) = w.agent.expect_request("INVITE").await;
    assert!(inv.header(&Name::parse("X-Callflow-CallSid")).is_some());
}

/// A raw endpoint that answers OPTIONS 200 and INVITE 486; counts INVITEs.
async fn responder(answer_options: bool) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let invites = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = invites.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let Ok(m) = Message::parse(&buf[..n], callflow::sip::Framing::Datagram) else {
                continue;
            };
            let status = match m.method().map(|m| m.as_str().to_string()).as_deref() {
                Some("OPTIONS") if answer_options => 200,
                Some("INVITE") => {
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    486
                }
                _ => continue,
            };
            let mut r = Message::response_to(&m, status);
            let mut to = r.to_header().unwrap().clone();
            to.set_tag("r");
            r.set_header(Name::To, to.to_string());
            let _ = socket.send_to(&r.to_bytes(), from).await;
        }
    });
    (addr, invites)
}

#[tokio::test]
async fn options_pings_take_a_silent_destination_out_of_rotation() {
    let (silent, silent_invites) = responder(false).await;
    let (alive, alive_invites) = responder(true).await;
    let cfg = CONFIG
        .replace("CARRIER_CIDR", "127.0.0.1/32")
        .replace("options_interval: null", "options_interval: 200ms")
        .replace(
            r#"destinations: ["sip:BOT"]"#,
            &format!("destinations: [{{ uri: \"sip:{silent}\", priority: 1 }}, {{ uri: \"sip:{alive}\", priority: 2 }}]"),
        );
    let mut w = world_cfg(&one_leg("sip:trunk_bot", ""), &cfg).await;
    // One ping round finds the silent one down (no answer within 200 ms).
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    w.call("+918047112233", "pinged").await;
    assert_eq!(w.caller.expect_final("INVITE").await.status(), Some(480));
    assert_eq!(
        silent_invites.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "skipped: down"
    );
    assert_eq!(alive_invites.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn absurd_durations_from_the_dynamic_url_are_bounded_not_fatal() {
    let mut w = world(DYNAMIC, "127.0.0.1/32").await;
    w.partner.answer(
        "route",
        200,
        r#"{"destination":{"trunk":"trunk_bot"},"max_ringing_duration":18446744073709551615,"max_conversation_duration":18446744073709551615}"#,
    );
    w.call("+918047112233", "huge").await;
    w.bot_answers().await;
}
