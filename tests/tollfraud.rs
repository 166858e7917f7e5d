//! Toll-fraud limits end to end (issue 13): a trunk's allowed destinations and
//! longest call, an account's caps on calls in progress and calls a day. A refused
//! call gets a plain answer, is counted, and its record (stored, readable over the
//! calls API) says why.

mod support;

use std::time::Duration;

use callflow::sip::{Name, Transport};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::node::*;
use support::partner::partner;
use support::{Ua, answer};

/// A node whose carrier is `carrier`; account `a` with trunk `t` (pstn number `did`
/// to `bot`), whitelisted at 127.0.0.1 for the partner's calls to the PSTN.
async fn setup(carrier: &Ua, bot: &Ua) -> (Node, Account, String, String, tempfile::TempDir) {
    let (_, paddr) = partner().await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("c.db").display());
    let node = start(&config(&store, carrier.addr), paddr).await;
    let a = node.account("fraud").await;
    let did = fresh_number();
    let t = pstn_trunk(&node, &a, "t", &did, bot.addr).await;
    let (s, v) = node
        .call(
            &a,
            "POST",
            &format!("/trunks/{t}/whitelisted-ips"),
            Some(json!({ "ip": "127.0.0.1", "mask": 32 })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    (node, a, t, did, dir)
}

/// The stored records of `a`, newest first.
async fn records(node: &Node, a: &Account, n: usize) -> Vec<Value> {
    for _ in 0..100 {
        let (_, v) = v1(node, a, "/Calls.json").await;
        let calls = v["Calls"].as_array().cloned().unwrap_or_default();
        if calls.len() >= n {
            return calls;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} records");
}

/// Waits for a record `matches` picks out (records are written as calls end,
/// in no fixed order, so a count alone can be met by others first).
async fn record_where(node: &Node, a: &Account, matches: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..100 {
        let (_, v) = v1(node, a, "/Calls.json").await;
        if let Some(c) = v["Calls"]
            .as_array()
            .and_then(|c| c.iter().find(|c| matches(c)))
        {
            return c.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no such record");
}

#[tokio::test]
async fn allowed_destinations_and_the_longest_call() {
    let mut carrier = Ua::new_at(Transport::Udp, "carrier", None, "127.0.0.2").await;
    let bot = Ua::new(Transport::Tcp, "bot", None).await;
    let (node, a, t, did, _dir) = setup(&carrier, &bot).await;
    let settings = json!({ "settings": [
        { "name": "allowed_destinations", "value": ["+91"] },
        { "name": "max_call_duration", "value": 1 },
    ] });
    let (s, v) = node
        .call(&a, "POST", &format!("/trunks/{t}/settings"), Some(settings))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut sbc = Ua::new(Transport::Udp, "sbc", None).await;
    let (sip, sbc_addr) = (node.sip(), sbc.addr);
    let template = sbc.invite(&format!("sip:x@{sip}"), "x");
    let call = |dialled: &str, id: &str| {
        let mut m = template.clone();
        m.start = callflow::sip::StartLine::Request {
            method: callflow::sip::Method::Invite,
            uri: callflow::sip::Uri::parse(&format!("sip:{dialled}@{sip}")).unwrap(),
        };
        m.set_header(Name::From, format!("<sip:{did}@{sbc_addr}>;tag={id}"));
        m.set_header(Name::CallId, id.to_string());
        let via = m
            .header(&Name::Via)
            .unwrap()
            .replace("invx", &format!("inv{id}"));
        m.set_header(Name::Via, via);
        m
    };
    // A premium number abroad: 403, nothing reaches the carrier.
    sbc.send(&call("+882345678901", "abroad"), node.sip()).await;
    let r = sbc.expect_final("INVITE").await;
    assert_eq!(r.status(), Some(403));
    assert!(carrier.recv(0.3).await.is_none());
    let refused = &records(&node, &a, 1).await[0];
    assert_eq!(refused["Status"], "failed");
    let note = refused["Trace"]["steps"][0]["notes"][0].as_str().unwrap();
    assert!(note.contains("+882345678901 is not in trunk"), "{note}");
    // An Indian number goes through, and is hung up after max_call_duration (1 s).
    sbc.send(&call("+919845012345", "home"), node.sip()).await;
    let (inv, from) = carrier.expect_request("INVITE").await;
    carrier
        .send(
            &carrier.response(&inv, 200, "c", Some(&answer(41000))),
            from,
        )
        .await;
    let ok = loop {
        // (the 403 above is retransmitted until ACKed; this UA does not ACK it)
        let r = sbc.expect_final("INVITE").await;
        if r.call_id().unwrap() == "home" {
            break r;
        }
    };
    assert_eq!(ok.status(), Some(200));
    let ack = sbc.in_dialog("ACK", &ok, true, "", 1, "ack");
    sbc.send(&ack, Ua::contact_addr(&ok)).await;
    let started = std::time::Instant::now();
    let (bye, f) = carrier.expect_request("BYE").await;
    carrier
        .send(&carrier.response(&bye, 200, "c", None), f)
        .await;
    let (bye, f) = sbc.expect_request("BYE").await;
    sbc.send(&sbc.response(&bye, 200, "x", None), f).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    // Through the calls API too: a number outside the list is refused with 403.
    let (s, v) = v1_post(
        &node,
        &a,
        "/Calls/connect",
        &[
            ("From", "+882345678901"),
            ("To", &format!("sip:{t}")),
            ("CallerId", &did),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
}

#[tokio::test]
async fn an_accounts_caps_on_calls_in_progress_and_calls_a_day() {
    let carrier = Ua::new_at(Transport::Udp, "carrier", None, "127.0.0.2").await;
    let mut bot = Ua::new(Transport::Tcp, "bot", None).await;
    let (node, a, _t, did, _dir) = setup(&carrier, &bot).await;
    let r = node
        .http
        .put(format!("{}/v2/accounts/{}/limits", node.base, a.sid))
        .bearer_auth(ADMIN)
        .json(&json!({ "max_concurrent_calls": 1, "max_calls_per_day": 2 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The first call is bridged and stays.
    let (mut first, _sid, ok) = bridged_call(&node, &did, &mut bot, "cap1").await;
    // A second at the same time: 503 with Retry-After.
    let mut caller = Ua::new_at(Transport::Udp, "caller", None, "127.0.0.2").await;
    let inv = caller.invite(&format!("sip:{did}@{}", node.sip()), "cap2");
    caller.send(&inv, node.sip()).await;
    let r = caller.expect_final("INVITE").await;
    assert_eq!(r.status(), Some(503));
    assert!(r.header(&Name::RetryAfter).is_some());
    // The first hangs up; the next call is the second of the day and goes on.
    let bye = first.in_dialog("BYE", &ok, true, "", 2, "bye1");
    first.send(&bye, Ua::contact_addr(&ok)).await;
    let (b, f) = bot.expect_request("BYE").await;
    bot.send(&bot.response(&b, 200, "b1", None), f).await;
    first.expect_final("BYE").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_c, _s, _ok) = bridged_call(&node, &did, &mut bot, "cap3").await;
    // A third call today is refused (403), and the record says why.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = node
        .http
        .put(format!("{}/v2/accounts/{}/limits", node.base, a.sid))
        .bearer_auth(ADMIN)
        .json(&json!({ "max_calls_per_day": 2 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let mut late = Ua::new_at(Transport::Udp, "late", None, "127.0.0.2").await;
    let inv = late.invite(&format!("sip:{did}@{}", node.sip()), "cap4");
    late.send(&inv, node.sip()).await;
    assert_eq!(late.expect_final("INVITE").await.status(), Some(403));
    let daily = record_where(&node, &a, |c| {
        c["Trace"]["steps"][0]["notes"][0]
            .as_str()
            .is_some_and(|n| n.contains("calls of the day"))
    })
    .await;
    assert_eq!(daily["Status"], "failed");
}
