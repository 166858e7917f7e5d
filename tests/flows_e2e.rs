//! Flows on live calls, end to end over real sockets: the engine started from a
//! configuration, a partner webhook on local HTTP, and the test UA as caller, bot and
//! agent.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use callflow::config::Config;
use callflow::server::Server;
use callflow::sip::{Message, Name, Transport};
use support::{Ua, answer, fast_timers};

/// Requests the partner got: path and query.
type Asked = Arc<Mutex<Vec<(String, HashMap<String, String>)>>>;

/// What the partner's webhook answers, per path, and what it was asked.
#[derive(Clone, Default)]
struct Partner {
    answers: Arc<Mutex<HashMap<String, (u16, String)>>>,
    asked: Asked,
}

impl Partner {
    fn answer(&self, path: &str, status: u16, body: &str) {
        self.answers
            .lock()
            .unwrap()
            .insert(path.into(), (status, body.into()));
    }

    fn asked(&self, path: &str) -> Vec<HashMap<String, String>> {
        self.asked
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, q)| q.clone())
            .collect()
    }
}

async fn webhook(
    State(p): State<Partner>,
    axum::extract::Path(path): axum::extract::Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> (StatusCode, String) {
    p.asked.lock().unwrap().push((path.clone(), q));
    let (status, body) = p
        .answers
        .lock()
        .unwrap()
        .get(&path)
        .cloned()
        .unwrap_or((404, String::new()));
    (StatusCode::from_u16(status).unwrap(), body)
}

async fn partner() -> (Partner, SocketAddr) {
    let p = Partner::default();
    let app = axum::Router::new()
        .route("/{path}", get(webhook))
        .with_state(p.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (p, addr)
}

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
async fn world(flow: &str, carrier_cidr: &str) -> World {
    let (partner, http) = partner().await;
    let bot = Ua::new(Transport::Udp, "bot", None).await;
    let agent = Ua::new(Transport::Udp, "agent", None).await;
    let caller = Ua::new(Transport::Udp, "caller", None).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("flows")).unwrap();
    std::fs::write(
        dir.path().join("flows/f.yaml"),
        flow.replace("WEBHOOK", &format!("http://{http}")),
    )
    .unwrap();
    let config = format!(
        r#"
sip: {{ listen: ["udp://127.0.0.1:0"] }}
flows: flows
carriers:
  - {{ name: pstn, uri: "sip:127.0.0.1:9", addresses: [{carrier_cidr}], priority: 1 }}
trunks:
  - sid: trunk_bot
    destinations: ["sip:{}"]
    numbers:
      - {{ number: "+918047112233", mode: flow, flow: f }}
  - sid: trunk_sales
    destinations: ["sip:{}"]
webhooks: {{ timeout: 2s }}
"#,
        bot.addr, agent.addr
    );
    let path = dir.path().join("callflow.yaml");
    std::fs::write(&path, config).unwrap();
    let config = Config::load(&path).unwrap();
    let server = Server::start(&config, fast_timers()).await.unwrap();
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
    w.partner.answer("handoff", status, body);
    w.call("+918047112233", &format!("pt{status}")).await;
    let (bot_inv, ok) = w.bot_answers().await;
    let bye = w.bot.in_dialog("BYE", &bot_inv, false, "bot1", 5, "botbye");
    w.bot.send(&bye, w.engine()).await;
    if expect_agent {
        w.agent_answers().await;
    } else {
        // bye: the engine hangs up on the caller.
        let (b, from) = w.caller.expect_request("BYE").await;
        w.caller
            .send(&w.caller.response(&b, 200, "x", None), from)
            .await;
        assert!(w.agent.recv(0.2).await.is_none());
        let _ = ok;
    }
}

#[tokio::test]
async fn passthru_200_routes_to_the_agent() {
    passthru_branch(200, r#"{"select":"sales"}"#, true).await;
}

#[tokio::test]
async fn passthru_302_404_500_hang_up() {
    for status in [302, 404, 500] {
        passthru_branch(status, "", false).await;
    }
}

#[tokio::test]
async fn unknown_number_gets_404() {
    let mut w = world(HANDOFF, "127.0.0.1/32").await;
    w.call("+910000000000", "unknown").await;
    assert_eq!(w.caller.expect_final("INVITE").await.status(), Some(404));
}

#[tokio::test]
async fn source_that_is_not_a_carrier_gets_403() {
    let mut w = world(HANDOFF, "10.9.9.9/32").await;
    w.call("+918047112233", "forbidden").await;
    assert_eq!(w.caller.expect_final("INVITE").await.status(), Some(403));
    assert!(w.bot.recv(0.2).await.is_none());
}
