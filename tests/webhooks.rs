//! Webhooks that misbehave (issue 13): a body over 64 KiB, invalid JSON, invalid
//! UTF-8, a redirect, an answer that trickles in slower than the timeout. Each takes
//! the flow's failure branch, and the call's record says why. And an account's flow
//! may not reach the operator's private addresses unless `webhooks.allow_private`.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use callflow::sip::Transport;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::Ua;
use support::node::*;
use support::partner::partner;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A webhook server that misbehaves as each path says.
async fn misbehaving() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = tcp.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = head
                    .split(' ')
                    .nth(1)
                    .unwrap_or("")
                    .split('?')
                    .next()
                    .unwrap_or("");
                let ok = |len: usize| {
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
                    )
                };
                let _ = match path {
                    "/big" => {
                        let body = " ".repeat(100 * 1024);
                        tcp.write_all(format!("{}{body}", ok(body.len())).as_bytes()).await
                    }
                    "/badjson" => tcp.write_all(format!("{}{{not json", ok(9)).as_bytes()).await,
                    "/badutf8" => {
                        let body: &[u8] = b"{\"destination\": {\"uris\": [\"sip:\xff\xfe@x\"]}}";
                        let mut out = ok(body.len()).into_bytes();
                        out.extend_from_slice(body);
                        tcp.write_all(&out).await
                    }
                    "/redirect" => {
                        tcp.write_all(b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:9/x\r\nContent-Length: 0\r\n\r\n")
                            .await
                    }
                    _ => {
                        // Slow loris: the head at once, then a byte every 400 ms.
                        let _ = tcp.write_all(ok(40).as_bytes()).await;
                        for _ in 0..40 {
                            tokio::time::sleep(Duration::from_millis(400)).await;
                            if tcp.write_all(b" ").await.is_err() {
                                break;
                            }
                        }
                        Ok(())
                    }
                };
            });
        }
    });
    addr
}

/// A flow whose connect asks `url`; a failure hangs up with 503.
fn flow(id: &str, url: &str) -> String {
    format!(
        "flow: {id}\nstart: c\napplets:\n  c:\n    connect: {{ dynamic_url: \"{url}\" }}\n    on: {{ failed: broken, completed: bye }}\n  broken:\n    hangup: {{ status: 503 }}\n  bye:\n    hangup: {{}}\n"
    )
}

/// Points a new number of trunk `t` at flow `id`; the number.
async fn number_for(node: &Node, a: &Account, t: &str, id: &str) -> String {
    let did = fresh_number();
    let (s, v) = node
        .call(
            a,
            "POST",
            &format!("/trunks/{t}/phone-numbers"),
            Some(json!({ "phone_number": did, "mode": "flow", "flow_id": id })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    did
}

/// Calls `did` from the carrier; the final status and the call's record.
async fn call(node: &Node, a: &Account, did: &str, id: &str) -> (u16, Value) {
    let mut caller = Ua::new_at(Transport::Udp, "caller", None, "127.0.0.2").await;
    caller
        .send(
            &caller.invite(&format!("sip:{did}@{}", node.sip()), id),
            node.sip(),
        )
        .await;
    let status = caller.expect_final("INVITE").await.status().unwrap();
    for _ in 0..100 {
        let (_, v) = v1(node, a, "/Calls.json").await;
        let found = v["Calls"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["To"] == did).cloned());
        if let Some(c) = found {
            return (status, c);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no record for {did}");
}

/// Every note and webhook error of a record, as one text.
fn reasons(record: &Value) -> String {
    record["Trace"]["steps"].to_string()
}

#[tokio::test]
async fn each_misbehaviour_takes_the_failure_branch_with_the_reason_recorded() {
    let web = misbehaving().await;
    let (_, paddr) = partner().await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("c.db").display());
    let text = config(&store, "127.0.0.1:9".parse().unwrap()).replace(
        "webhooks: { allow_private: true }",
        "webhooks: { allow_private: true, timeout: 1s }",
    );
    let node = start(&text, paddr).await;
    let a = node.account("web").await;
    let bot = Ua::new(Transport::Tcp, "bot", None).await;
    let t = pstn_trunk(&node, &a, "w", &fresh_number(), bot.addr).await;
    let cases = [
        ("big", "larger than 65536 bytes"),
        ("badjson", "JSON"),
        ("badutf8", "UTF-8"),
        ("redirect", "302"),
        ("slow", "timed out"),
    ];
    for (path, why) in cases {
        let id = format!("w-{path}");
        let (s, v) = put_flow(&node, &a, &id, &flow(&id, &format!("http://{web}/{path}"))).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let did = number_for(&node, &a, &t, &id).await;
        let (status, record) = call(&node, &a, &did, &id).await;
        assert_eq!(status, 503, "{path}: the failure branch");
        let text = reasons(&record);
        assert!(text.contains(why), "{path}: '{why}' not in {text}");
    }
}

#[tokio::test]
async fn an_accounts_flow_may_not_call_private_addresses() {
    let (partner, paddr) = partner().await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("c.db").display());
    let text = config(&store, "127.0.0.1:9".parse().unwrap()).replace(
        "webhooks: { allow_private: true }",
        "webhooks: { timeout: 1s }",
    );
    let node = start(&text, paddr).await;
    let a = node.account("tenant").await;
    let bot = Ua::new(Transport::Tcp, "bot", None).await;
    let t = pstn_trunk(&node, &a, "p", &fresh_number(), bot.addr).await;
    partner.answer(
        "route",
        200,
        r#"{"destination":{"uris":["sip:x@127.0.0.1:9"]}}"#,
    );
    for (id, url) in [
        ("literal", format!("http://{paddr}/route")),
        ("named", format!("http://localhost:{}/route", paddr.port())),
    ] {
        put_flow(&node, &a, id, &flow(id, &url)).await;
        let did = number_for(&node, &a, &t, id).await;
        let (status, record) = call(&node, &a, &did, id).await;
        assert_eq!(status, 503, "{id}");
        assert!(
            reasons(&record).contains("private address"),
            "{id}: {record}"
        );
    }
    assert!(
        partner.asked("route").is_empty(),
        "the partner was never reached"
    );
}
