//! The calls API's outbound calls end to end (`POST …/Calls/connect`): the test UA
//! plays the customer behind the carrier (127.0.0.2, 127.0.0.3) and the partner's bot
//! and agent on the trunk; the partner's webhook server takes the passthru and the
//! status callbacks. Click-to-call both ways with the SDP each side ends up with
//! (RFC 3725 flow I), connect-to-flow through the seed's hand-off, busy, no answer,
//! carrier failover, TimeLimit, the account's checks and limits, and control of a
//! call the API placed.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use callflow::sip::{Message, Name, Transport};
use reqwest::StatusCode;
use serde_json::Value;
use support::Ua;
use support::node::*;
use support::partner::partner;

const CUSTOMER: &str = "+919845012345";

/// A node whose carrier is a test UA on 127.0.0.2 (the customer's side), an account,
/// and a bot on TCP behind the account's trunk with a fresh number (the caller id).
struct Env {
    partner: support::partner::Partner,
    paddr: SocketAddr,
    carrier: Ua,
    node: Node,
    a: Account,
    bot: Ua,
    did: String,
    trunk: String,
    dir: tempfile::TempDir,
}

async fn env(account: &str) -> Env {
    let (partner, paddr) = partner().await;
    let carrier = Ua::new_at(Transport::Udp, "carrier", None, "127.0.0.2").await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("c.db").display());
    let node = start(&config(&store, carrier.addr), paddr).await;
    let a = node.account(account).await;
    let bot = Ua::new(Transport::Tcp, "bot", None).await;
    let did = fresh_number();
    let trunk = pstn_trunk(&node, &a, "bots", &did, bot.addr).await;
    Env {
        partner,
        paddr,
        carrier,
        node,
        a,
        bot,
        did,
        trunk,
        dir,
    }
}

/// The customer answers with the test offer and the bot with its answer; both get
/// their ACK (the customer's carrying the bot's answer).
async fn both_answer(carrier: &mut Ua, bot: &mut Ua) -> (Message, Message) {
    let (inv, from) = carrier.expect_request("INVITE").await;
    carrier
        .send(
            &carrier.response(&inv, 200, "cu1", Some(support::OFFER)),
            from,
        )
        .await;
    let (binv, bfrom) = bot.expect_request("INVITE").await;
    bot.send(
        &bot.response(&binv, 200, "b1", Some(&support::answer(41000))),
        bfrom,
    )
    .await;
    let (ack, _) = carrier.expect_request("ACK").await;
    assert!(String::from_utf8_lossy(&ack.body).contains("m=audio 41000"));
    bot.expect_request("ACK").await;
    (inv, binv)
}

/// The user part of a header's URI.
fn user_of(m: &Message, name: Name) -> String {
    let v = m.header(&name).unwrap();
    callflow::sip::typed::NameAddr::parse(v)
        .unwrap()
        .uri
        .user()
        .unwrap()
        .to_string()
}

/// Places a call; its sid (the answer checked: 200, queued, outbound-api).
async fn connect(node: &Node, a: &Account, form: &[(&str, &str)]) -> String {
    let (s, v) = v1_post(node, a, "/Calls/connect.json", form).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["Call"]["Status"], "queued", "{v}");
    assert_eq!(v["Call"]["Direction"], "outbound-api");
    v["Call"]["Sid"].as_str().unwrap().to_string()
}

/// The applets a stored record went through.
fn applets(call: &Value) -> Vec<String> {
    call["Trace"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["applet"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn click_to_call_number_first_then_the_bot() {
    let Env {
        partner,
        paddr,
        mut carrier,
        node,
        a,
        mut bot,
        did,
        trunk,
        dir: _dir,
    } = env("c2c").await;
    let to = format!("sip:{trunk}");
    let callback = format!("http://{paddr}/status");
    let sid = connect(
        &node,
        &a,
        &[
            ("From", CUSTOMER),
            ("To", &to),
            ("CallerId", &did),
            ("CustomField", "campaign-7"),
            ("StatusCallback", &callback),
            ("StatusCallbackEvents[0]", "answered"),
            ("StatusCallbackEvents[1]", "terminal"),
            ("StatusCallbackContentType", "application/json"),
        ],
    )
    .await;
    // The customer is called first, through the carrier, without SDP.
    let (inv, from) = carrier.expect_request("INVITE").await;
    assert_eq!(inv.request_uri().unwrap().user(), Some(CUSTOMER));
    assert_eq!(user_of(&inv, Name::From), did);
    carrier
        .send(&carrier.response(&inv, 180, "cu1", None), from)
        .await;
    until_call(&node, &a, &sid, |c| c["Status"] == "ringing").await;
    carrier
        .send(
            &carrier.response(&inv, 200, "cu1", Some(support::OFFER)),
            from,
        )
        .await;
    // The customer's offer (filtered) goes to the bot; the bot's answer returns in the ACK.
    let (binv, bfrom) = bot.expect_request("INVITE").await;
    let offer = String::from_utf8_lossy(&binv.body).to_string();
    assert!(offer.contains("m=audio 40000 RTP/AVP 8 0 101"), "{offer}");
    assert!(!offer.contains("opus"));
    assert_eq!(user_of(&binv, Name::From), did);
    assert_eq!(
        binv.header(&Name::parse("X-Callflow-CallSid")),
        Some(sid.as_str())
    );
    bot.send(
        &bot.response(&binv, 200, "b1", Some(&support::answer(41000))),
        bfrom,
    )
    .await;
    let (ack, _) = carrier.expect_request("ACK").await;
    let answer = String::from_utf8_lossy(&ack.body).to_string();
    assert!(answer.contains("m=audio 41000 RTP/AVP 8 101"), "{answer}");
    let (back, _) = bot.expect_request("ACK").await;
    assert!(back.body.is_empty());
    until_call(&node, &a, &sid, |c| c["Status"] == "in-progress").await;
    // The bot hangs up; the customer gets BYE.
    let bye = bot.in_dialog("BYE", &binv, false, "b1", 1, "bbye");
    bot.send(&bye, Ua::contact_addr(&binv)).await;
    let (cbye, cfrom) = carrier.expect_request("BYE").await;
    carrier
        .send(&carrier.response(&cbye, 200, "cu1", None), cfrom)
        .await;
    let call = until_call(&node, &a, &sid, |c| c["Status"] == "completed").await;
    assert_eq!(applets(&call), ["(first party)", "second-party", "bye"]);
    assert_eq!(call["From"], CUSTOMER);
    assert_eq!(call["To"], to.as_str());
    assert_eq!(call["Trace"]["custom_field"], "campaign-7");
    // Both callbacks came, with Exotel's fields.
    let mut posted = Vec::new();
    for _ in 0..100 {
        posted = partner.posted.lock().unwrap().clone();
        if posted.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(posted.len(), 2, "{posted:?}");
    let answered = posted
        .iter()
        .find(|p| p["EventType"] == "answered")
        .unwrap();
    assert_eq!(answered["Status"], "in-progress");
    assert_eq!(answered["CustomField"], "campaign-7");
    let terminal = posted
        .iter()
        .find(|p| p["EventType"] == "terminal")
        .unwrap();
    assert_eq!(terminal["Status"], "completed");
    assert_eq!(terminal["CallSid"], sid.as_str());
    assert_eq!(terminal["Direction"], "outbound-api");
    assert!(
        terminal["DateCreated"].as_str().unwrap().len() == 19,
        "{terminal}"
    );
}

#[tokio::test]
async fn click_to_call_bot_first_then_a_number() {
    let Env {
        partner: _,
        paddr: _,
        mut carrier,
        node,
        a,
        mut bot,
        did,
        trunk,
        dir: _dir,
    } = env("c2c").await;
    let from = format!("sip:{trunk}");
    let sid = connect(
        &node,
        &a,
        &[("From", &from), ("To", CUSTOMER), ("CallerId", &did)],
    )
    .await;
    let (binv, bfrom) = bot.expect_request("INVITE").await;
    assert!(binv.body.is_empty());
    bot.send(&bot.response(&binv, 200, "b1", Some(support::OFFER)), bfrom)
        .await;
    // The customer gets the bot's offer and the caller id.
    let (inv, cfrom) = carrier.expect_request("INVITE").await;
    assert_eq!(inv.request_uri().unwrap().user(), Some(CUSTOMER));
    assert_eq!(user_of(&inv, Name::From), did);
    let offer = String::from_utf8_lossy(&inv.body).to_string();
    assert!(offer.contains("m=audio 40000 RTP/AVP 8 0 101"), "{offer}");
    carrier
        .send(
            &carrier.response(&inv, 200, "cu1", Some(&support::answer(42000))),
            cfrom,
        )
        .await;
    let (ack, _) = bot.expect_request("ACK").await;
    assert!(String::from_utf8_lossy(&ack.body).contains("m=audio 42000"));
    carrier.expect_request("ACK").await;
    // The customer hangs up; the bot gets BYE.
    let bye = carrier.in_dialog("BYE", &inv, false, "cu1", 1, "cbye");
    carrier.send(&bye, Ua::contact_addr(&inv)).await;
    let (b, f) = bot.expect_request("BYE").await;
    bot.send(&bot.response(&b, 200, "b1", None), f).await;
    let call = until_call(&node, &a, &sid, |c| c["Status"] == "completed").await;
    assert_eq!(call["Trace"]["steps"][0]["legs"][0]["result"], "answered");
}

#[tokio::test]
async fn connect_to_flow_runs_the_seed_hand_off() {
    let Env {
        partner,
        paddr,
        mut carrier,
        node,
        a,
        mut bot,
        did,
        trunk,
        dir: _dir,
    } = env("flows").await;
    let mut agent = Ua::new(Transport::Udp, "agent", None).await;
    let flow = format!(
        "flow: handoff\nstart: bot\napplets:\n  bot:\n    connect: {{ to: \"sip:{trunk}\" }}\n    on: {{ completed: ask }}\n  ask:\n    passthru: {{ url: \"http://{paddr}/handoff\" }}\n    on: {{ ok: route, fail: bye }}\n  route:\n    switchcase:\n      value: passthru.select\n      cases: {{ sales: agent }}\n      default: bye\n  agent:\n    connect: {{ to: \"sip:agent@{}\" }}\n    next: bye\n  bye:\n    hangup: {{}}\n",
        agent.addr
    );
    assert_eq!(
        put_flow(&node, &a, "handoff", &flow).await.0,
        StatusCode::OK
    );
    partner.answer("handoff", 200, r#"{"select": "sales"}"#);
    let url = format!("http://my.exotel.com/{}/exoml/start_voice/handoff", a.sid);
    let sid = connect(
        &node,
        &a,
        &[
            ("From", CUSTOMER),
            ("Url", &url),
            ("CallerId", &did),
            ("CustomField", "cf-1"),
        ],
    )
    .await;
    let (inv, cfrom) = carrier.expect_request("INVITE").await;
    carrier
        .send(
            &carrier.response(&inv, 200, "cu1", Some(support::OFFER)),
            cfrom,
        )
        .await;
    // The bot answers the customer's offer, talks, hangs up.
    let (binv, bfrom) = bot.expect_request("INVITE").await;
    assert!(!binv.body.is_empty());
    assert_eq!(
        user_of(&binv, Name::From),
        CUSTOMER,
        "the bot sees the customer"
    );
    bot.send(
        &bot.response(&binv, 200, "b1", Some(&support::answer(41000))),
        bfrom,
    )
    .await;
    let (ack, _) = carrier.expect_request("ACK").await;
    assert!(String::from_utf8_lossy(&ack.body).contains("m=audio 41000"));
    bot.expect_request("ACK").await;
    let bye = bot.in_dialog("BYE", &binv, false, "b1", 1, "bbye");
    bot.send(&bye, Ua::contact_addr(&binv)).await;
    // Passthru, switchcase, the agent: invited without SDP, the customer re-INVITEd.
    let (ainv, afrom) = agent.expect_request("INVITE").await;
    assert!(ainv.body.is_empty());
    agent
        .send(
            &agent.response(&ainv, 200, "ag1", Some(&support::answer(43000))),
            afrom,
        )
        .await;
    let (reinv, rfrom) = carrier.expect_request("INVITE").await;
    assert!(String::from_utf8_lossy(&reinv.body).contains("m=audio 43000"));
    carrier
        .send(
            &carrier.response(&reinv, 200, "cu1", Some(&support::answer(40000))),
            rfrom,
        )
        .await;
    let (aack, _) = agent.expect_request("ACK").await;
    assert!(String::from_utf8_lossy(&aack.body).contains("m=audio 40000"));
    let asked = partner.asked("handoff");
    assert_eq!(asked[0]["CustomField"], "cf-1");
    assert_eq!(asked[0]["Direction"], "outbound-api");
    assert_eq!(asked[0]["CallFrom"], CUSTOMER);
    // The agent hangs up; the customer gets BYE.
    let abye = agent.in_dialog("BYE", &ainv, false, "ag1", 1, "abye");
    agent.send(&abye, Ua::contact_addr(&ainv)).await;
    let (cbye, f) = carrier.expect_request("BYE").await;
    carrier
        .send(&carrier.response(&cbye, 200, "cu1", None), f)
        .await;
    let call = until_call(&node, &a, &sid, |c| c["Status"] == "completed").await;
    assert_eq!(
        applets(&call),
        ["(first party)", "bot", "ask", "route", "agent", "bye"]
    );
}

/// Two carriers by priority (127.0.0.2, then 127.0.0.3).
fn two_carriers(store: &str, first: SocketAddr, second: SocketAddr) -> String {
    format!(
        "sip: {{ listen: [\"udp://127.0.0.1:0\", \"tcp://127.0.0.1:0\"], options_interval: null }}\napi: {{ listen: \"127.0.0.1:0\", admin_token: {ADMIN} }}\nstore: \"{store}\"\nflows: flows\nwebhooks: {{ allow_private: true }}\ncarriers:\n  - {{ name: one, uri: \"sip:{first}\", addresses: [127.0.0.2/32], priority: 1 }}\n  - {{ name: two, uri: \"sip:{second}\", addresses: [127.0.0.3/32], priority: 2 }}\n"
    )
}

#[tokio::test]
async fn failover_then_busy_then_no_answer_with_callbacks_that_fail_twice() {
    let (partner, paddr) = partner().await;
    let mut one = Ua::new_at(Transport::Udp, "one", None, "127.0.0.2").await;
    let mut two = Ua::new_at(Transport::Udp, "two", None, "127.0.0.3").await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("c.db").display());
    let node = start(&two_carriers(&store, one.addr, two.addr), paddr).await;
    let a = node.account("busy").await;
    let bot = Ua::new(Transport::Tcp, "bot", None).await;
    let did = fresh_number();
    let trunk = pstn_trunk(&node, &a, "bots", &did, bot.addr).await;
    let to = format!("sip:{trunk}");
    let callback = format!("http://{paddr}/status");
    partner.post_statuses.lock().unwrap().extend([500, 503]);
    let form = [
        ("From", CUSTOMER),
        ("To", to.as_str()),
        ("CallerId", did.as_str()),
        ("StatusCallback", callback.as_str()),
        ("TimeOut", "1"),
    ];
    let sid = connect(&node, &a, &form).await;
    // The first carrier fails over (503), the second says busy.
    let (inv, from) = one.expect_request("INVITE").await;
    one.send(&one.response(&inv, 503, "x", None), from).await;
    one.expect_request("ACK").await;
    let (inv, from) = two.expect_request("INVITE").await;
    two.send(&two.response(&inv, 486, "y", None), from).await;
    two.expect_request("ACK").await;
    let call = until_call(&node, &a, &sid, |c| c["Status"] == "busy").await;
    let legs = &call["Trace"]["steps"][0]["legs"];
    assert_eq!(legs[0]["result"], "503");
    assert_eq!(legs[1]["result"], "486");
    // The callback (multipart, Exotel's default) fails twice and arrives the third time.
    let mut attempts = Value::Null;
    for _ in 0..100 {
        let (_, v) = v1(&node, &a, &format!("/Calls/{sid}")).await;
        attempts = v["Call"]["Trace"]["callbacks"].clone();
        if attempts.as_array().is_some_and(|a| a.len() == 3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let statuses: Vec<u64> = attempts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [500, 503, 200]);
    let posted = partner.posted.lock().unwrap().clone();
    assert!(
        posted
            .iter()
            .all(|p| p["_multipart"] == true && p["Status"] == "busy")
    );
    assert_eq!(posted[2]["Legs[1][Status]"], "486");
    // Nobody answers within TimeOut: CANCEL, no-answer (no failover on a timeout
    // that the caller's TimeOut set? it does fail over: the second carrier rings too).
    let sid = connect(&node, &a, &form).await;
    for ua in [&mut one, &mut two] {
        let (inv, from) = ua.expect_request("INVITE").await;
        ua.send(&ua.response(&inv, 180, "r", None), from).await;
        let (cancel, cf) = ua.expect_request("CANCEL").await;
        ua.send(&ua.response(&cancel, 200, "r", None), cf).await;
        ua.send(&ua.response(&inv, 487, "r", None), from).await;
        ua.expect_request("ACK").await;
    }
    until_call(&node, &a, &sid, |c| c["Status"] == "no-answer").await;
}

#[tokio::test]
async fn time_limit_hangs_up_both_parties() {
    let Env {
        partner: _,
        paddr: _,
        mut carrier,
        node,
        a,
        mut bot,
        did,
        trunk,
        dir: _dir,
    } = env("limit").await;
    let to = format!("sip:{trunk}");
    let sid = connect(
        &node,
        &a,
        &[
            ("From", CUSTOMER),
            ("To", &to),
            ("CallerId", &did),
            ("TimeLimit", "2"),
        ],
    )
    .await;
    let (_inv, _binv) = both_answer(&mut carrier, &mut bot).await;
    // Nobody hangs up: at the limit both get BYE.
    let (b, f) = bot.expect_request("BYE").await;
    bot.send(&bot.response(&b, 200, "b1", None), f).await;
    let (c, f) = carrier.expect_request("BYE").await;
    carrier
        .send(&carrier.response(&c, 200, "cu1", None), f)
        .await;
    let call = until_call(&node, &a, &sid, |c| c["Status"] == "completed").await;
    assert!(call["Duration"].as_u64().unwrap() >= 2, "{call}");
}

#[tokio::test]
async fn the_accounts_numbers_trunks_records_and_limits() {
    let (_, paddr) = partner().await;
    let mut carrier = Ua::new_at(Transport::Udp, "carrier", None, "127.0.0.2").await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("c.db").display());
    let node = start(&config(&store, carrier.addr), paddr).await;
    let a = node.account("mine").await;
    let b = node.account("theirs").await;
    let bot = Ua::new(Transport::Tcp, "bot", None).await;
    let (mine, theirs) = (fresh_number(), fresh_number());
    let my_trunk = pstn_trunk(&node, &a, "m", &mine, bot.addr).await;
    let their_trunk = pstn_trunk(&node, &b, "t", &theirs, bot.addr).await;
    let post = |form: Vec<(&'static str, String)>| {
        let (node, a) = (&node, &a);
        async move {
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            v1_post(node, a, "/Calls/connect", &form).await
        }
    };
    // Another account's caller id, another account's trunk, a SIP URI elsewhere.
    let (s, v) = post(vec![
        ("From", CUSTOMER.into()),
        ("To", format!("sip:{my_trunk}")),
        ("CallerId", theirs.clone()),
    ])
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["RestException"]["Message"]
            .as_str()
            .unwrap()
            .contains("not a number of this account's trunks"),
        "{v}"
    );
    let (s, v) = post(vec![
        ("From", CUSTOMER.into()),
        ("To", format!("sip:{their_trunk}")),
        ("CallerId", mine.clone()),
    ])
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, _) = post(vec![
        ("From", CUSTOMER.into()),
        ("To", "sip:someone@198.51.100.7".into()),
        ("CallerId", mine.clone()),
    ])
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = post(vec![
        ("From", CUSTOMER.into()),
        ("Url", "x/flows/none".into()),
        ("CallerId", mine.clone()),
    ])
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // One channel on the trunk: the second call is refused with 429 and not placed.
    let (s, _) = node
        .call(
            &a,
            "POST",
            &format!("/trunks/{my_trunk}/settings"),
            Some(serde_json::json!({ "settings": [{ "name": "max_channels", "value": 1 }] })),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let form = vec![
        ("From", CUSTOMER.into()),
        ("To", format!("sip:{my_trunk}")),
        ("CallerId", mine.clone()),
    ];
    let mut first = None;
    for _ in 0..50 {
        let (s, v) = post(form.clone()).await;
        if s == StatusCode::OK {
            first = Some(v["Call"]["Sid"].as_str().unwrap().to_string());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sid = first.expect("the first call is placed");
    let (inv, from) = carrier.expect_request("INVITE").await;
    carrier
        .send(&carrier.response(&inv, 180, "r", None), from)
        .await;
    let (s, v) = post(form.clone()).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert!(carrier.recv(0.3).await.is_none(), "no second INVITE");
    // The account sees its call ringing; the other account does not see it at all.
    until_call(&node, &a, &sid, |c| c["Status"] == "ringing").await;
    assert_eq!(
        v1(&node, &b, &format!("/Calls/{sid}")).await.0,
        StatusCode::NOT_FOUND
    );
    // Hung up over the API while it rings: CANCEL, and the call is canceled.
    let (s, _) = v1_post(
        &node,
        &a,
        &format!("/Calls/{sid}"),
        &[("Status", "completed")],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (cancel, cf) = carrier.expect_request("CANCEL").await;
    carrier
        .send(&carrier.response(&cancel, 200, "r", None), cf)
        .await;
    carrier
        .send(&carrier.response(&inv, 487, "r", None), from)
        .await;
    until_call(&node, &a, &sid, |c| c["Status"] == "canceled").await;
    assert_eq!(
        v1(&node, &b, &format!("/Calls/{sid}")).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn an_api_call_moves_into_another_flow() {
    let Env {
        partner: _,
        paddr: _,
        mut carrier,
        node,
        a,
        mut bot,
        did,
        trunk,
        dir: _dir,
    } = env("mv").await;
    let mut agent = Ua::new(Transport::Udp, "agent", None).await;
    let agents = format!(
        "flow: agents\nstart: c\napplets:\n  c:\n    connect: {{ to: \"sip:agent@{}\" }}\n    next: bye\n  bye:\n    hangup: {{}}\n",
        agent.addr
    );
    assert_eq!(
        put_flow(&node, &a, "agents", &agents).await.0,
        StatusCode::OK
    );
    let to = format!("sip:{trunk}");
    let sid = connect(
        &node,
        &a,
        &[("From", CUSTOMER), ("To", &to), ("CallerId", &did)],
    )
    .await;
    let (inv, _binv) = both_answer(&mut carrier, &mut bot).await;
    let (s, v) = v1_post(
        &node,
        &a,
        &format!("/Calls/{sid}"),
        &[("Url", "x/flows/agents")],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (b, f) = bot.expect_request("BYE").await;
    bot.send(&bot.response(&b, 200, "b1", None), f).await;
    let (ainv, afrom) = agent.expect_request("INVITE").await;
    assert!(ainv.body.is_empty(), "invited without SDP (RFC 3725)");
    agent
        .send(
            &agent.response(&ainv, 200, "ag1", Some(support::OFFER)),
            afrom,
        )
        .await;
    let (reinv, rf) = carrier.expect_request("INVITE").await;
    carrier
        .send(
            &carrier.response(&reinv, 200, "cu1", Some(&support::answer(40000))),
            rf,
        )
        .await;
    let (aack, _) = agent.expect_request("ACK").await;
    assert!(String::from_utf8_lossy(&aack.body).contains("m=audio 40000"));
    let bye = carrier.in_dialog("BYE", &inv, false, "cu1", 1, "cbye");
    carrier.send(&bye, Ua::contact_addr(&inv)).await;
    let (b, f) = agent.expect_request("BYE").await;
    agent.send(&agent.response(&b, 200, "ag1", None), f).await;
    let call = until_call(&node, &a, &sid, |c| c["Status"] == "completed").await;
    assert_eq!(
        applets(&call),
        ["(first party)", "second-party", "(redirect)", "c"]
    );
}
