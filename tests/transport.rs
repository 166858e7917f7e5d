//! Stream transports as a peer sees them: CRLF keep-alive, idle timeout, one
//! connection reused for every call to the same address, and TLS verification.

mod support;

use std::time::Duration;

use callflow::runtime::{LegOutcome, LegRequest};
use callflow::sip::{Transport, Uri};
use support::{TestEngine, Ua, answer, handler, test_cert};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

fn dial_to(uri: String, report: mpsc::UnboundedSender<String>) -> callflow::call::CallHandler {
    handler(move |mut call| {
        let (uri, report) = (uri.clone(), report.clone());
        async move {
            let Ok(Uri::Sip(sip)) = Uri::parse(&uri) else {
                return;
            };
            let leg = LegRequest {
                uri: sip,
                headers: vec![],
                ring_timeout: Duration::from_secs(2),
                caller_id: None,
                media: Default::default(),
            };
            let outcome = call.dial(leg).await;
            let _ = report.send(format!("{outcome:?}"));
            match outcome {
                LegOutcome::Answered => {
                    call.wait(Duration::from_secs(10)).await;
                }
                LegOutcome::Failed(_) => call.hangup(503).await,
                LegOutcome::Rejected(s) => call.hangup(s).await,
                _ => call.hangup(480).await,
            }
        }
    })
}

#[tokio::test]
async fn crlf_ping_gets_a_pong() {
    let (tx, _rx) = mpsc::unbounded_channel();
    let e = TestEngine::start(dial_to("sip:x@127.0.0.1:9".into(), tx), None).await;
    let mut tcp = tokio::net::TcpStream::connect(e.addr(Transport::Tcp))
        .await
        .unwrap();
    tcp.write_all(b"\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(2), tcp.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"\r\n");
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let (tx, _rx) = mpsc::unbounded_channel();
    let e = TestEngine::start_with(
        dial_to("sip:x@127.0.0.1:9".into(), tx),
        None,
        Duration::from_millis(200),
    )
    .await;
    let mut tcp = tokio::net::TcpStream::connect(e.addr(Transport::Tcp))
        .await
        .unwrap();
    let mut buf = [0u8; 8];
    let r = tokio::time::timeout(Duration::from_secs(3), tcp.read(&mut buf)).await;
    assert!(
        matches!(r, Ok(Ok(0)) | Ok(Err(_))),
        "closed by the engine after idling"
    );
}

async fn one_call(caller: &mut Ua, far: &mut Ua, engine: &TestEngine, id: &str) {
    let to = engine.addr(caller.transport);
    caller
        .send(&caller.invite(&format!("sip:+918047112233@{to}"), id), to)
        .await;
    let (inv, from) = far.expect_request("INVITE").await;
    far.send(&far.response(&inv, 486, "f", None), from).await;
    far.expect_request("ACK").await;
    assert_eq!(caller.expect_final("INVITE").await.status(), Some(486));
}

#[tokio::test]
async fn one_connection_per_remote_address_is_reused() {
    let mut far = Ua::new(Transport::Tcp, "bot", None).await;
    let (tx, _rx) = mpsc::unbounded_channel();
    let uri = format!("sip:bot@{};transport=tcp", far.addr);
    let engine = TestEngine::start(dial_to(uri, tx), None).await;
    let mut caller = Ua::new(Transport::Tcp, "caller", None).await;
    for id in ["reuse1", "reuse2", "reuse3"] {
        one_call(&mut caller, &mut far, &engine, id).await;
    }
    assert_eq!(far.accepted.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[tokio::test]
async fn tls_peer_must_present_a_trusted_certificate() {
    // The engine trusts `trusted` only; the far end presents `other`.
    let trusted = test_cert();
    let other = test_cert();
    let far = Ua::new(Transport::Tls, "bot", Some(&other)).await;
    let (tx, mut report) = mpsc::unbounded_channel();
    let uri = format!("sip:bot@localhost:{};transport=tls", far.addr.port());
    let engine = TestEngine::start(dial_to(uri, tx), Some(&trusted)).await;
    let mut caller = Ua::new(Transport::Tls, "caller", Some(&trusted)).await;
    let to = engine.addr(Transport::Tls);
    caller
        .send(
            &caller.invite(&format!("sip:+918047112233@{to}"), "untrusted"),
            to,
        )
        .await;
    let outcome = report.recv().await.unwrap();
    assert!(
        outcome.contains("Failed") && outcome.contains("TLS"),
        "{outcome}"
    );
    assert_eq!(caller.expect_final("INVITE").await.status(), Some(503));
}

#[tokio::test]
async fn tls_by_name_verifies_the_certificate_with_sni() {
    let cert = test_cert();
    let mut far = Ua::new(Transport::Tls, "bot", Some(&cert)).await;
    let (tx, mut report) = mpsc::unbounded_channel();
    // "localhost" is both what is resolved and the name checked against the cert.
    let uri = format!("sip:bot@localhost:{};transport=tls", far.addr.port());
    let engine = TestEngine::start(dial_to(uri, tx), Some(&cert)).await;
    let mut caller = Ua::new(Transport::Tls, "caller", Some(&cert)).await;
    let to = engine.addr(Transport::Tls);
    caller
        .send(
            &caller.invite(&format!("sip:+918047112233@{to}"), "sni"),
            to,
        )
        .await;
    let (inv, from) = far.expect_request("INVITE").await;
    far.send(&far.response(&inv, 200, "f", Some(&answer(41000))), from)
        .await;
    assert_eq!(caller.expect_final("INVITE").await.status(), Some(200));
    assert_eq!(report.recv().await.unwrap(), "Answered");
}
