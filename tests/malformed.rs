//! A corpus of malformed messages: each is answered 400 or dropped and counted, and
//! the engine goes on serving calls.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use callflow::runtime::{LegOutcome, LegRequest};
use callflow::sip::transport::Stats;
use callflow::sip::{Transport, Uri};
use support::{TestEngine, Ua, answer, handler};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn request(to: &str, from_addr: &str, drop_header: &str) -> String {
    let lines = [
        format!("Via: SIP/2.0/UDP {from_addr};branch=z9hG4bK{drop_header}x"),
        "Max-Forwards: 70".into(),
        "From: <sip:a@example.com>;tag=1".into(),
        format!("To: <sip:+918047112233@{to}>"),
        format!("Call-ID: malformed-{drop_header}"),
        "CSeq: 1 INVITE".into(),
    ];
    let kept: Vec<String> = lines
        .into_iter()
        .filter(|l| drop_header.is_empty() || !l.starts_with(drop_header))
        .collect();
    format!(
        "INVITE sip:+918047112233@{to} SIP/2.0\r\n{}\r\nContent-Length: 0\r\n\r\n",
        kept.join("\r\n")
    )
}

#[tokio::test]
async fn malformed_corpus_is_answered_or_dropped_and_counted() {
    let bot = std::sync::Arc::new(tokio::sync::Mutex::new(None::<String>));
    let route = bot.clone();
    let engine = TestEngine::start(
        handler(move |mut call| {
            let bot = route.clone();
            async move {
                let Some(uri) = bot.lock().await.clone() else {
                    return;
                };
                let Ok(Uri::Sip(uri)) = Uri::parse(&uri) else {
                    return;
                };
                let leg = LegRequest {
                    uri,
                    headers: vec![],
                    ring_timeout: Duration::from_secs(2),
                    caller_id: None,
                    media: Default::default(),
                };
                if call.dial(leg).await == LegOutcome::Answered {
                    call.wait(Duration::from_secs(10)).await;
                }
                call.hangup(480).await;
            }
        }),
        None,
    )
    .await;
    let to = engine.addr(Transport::Udp);
    let mut ua = Ua::new(Transport::Udp, "fuzzer", None).await;
    let me = ua.addr.to_string();
    let good = request(&to.to_string(), &me, "");
    let vias = format!("Via: SIP/2.0/UDP {me};branch=z9hG4bKv\r\n").repeat(1000);
    let dropped: Vec<Vec<u8>> = vec![
        good.as_bytes()[..good.len() / 2].to_vec(), // truncated
        good.replace("Max-Forwards: 70", "Max-Forwards: \u{fffd}7\u{0}")
            .into_bytes(), // control byte
        {
            let mut b = good.clone().into_bytes();
            b.splice(40..40, [0xff, 0xfe, 0x80]); // not UTF-8
            b
        },
        good.replace("Max-Forwards: 70\r\n", &vias).into_bytes(), // thousands of Via
        b"\x00\x01\x02 garbage".to_vec(),
        // Not a request, so never answered: an ACK and a response, both unreadable.
        good.replace("INVITE sip:", "ACK sip:")
            .replace("SIP/2.0\r\nVia", "SIP/7.0\r\nVia")
            .replace("1 INVITE", "1 ACK")
            .into_bytes(),
        good.replace(
            "INVITE sip:+918047112233@",
            "SIP/2.0 4294967301 better not break the receiver\r\nX-Was: ",
        )
        .into_bytes(),
    ];
    let stats = &engine.transports.stats;
    let before = Stats::get(&stats.malformed_dropped);
    for m in &dropped {
        ua.send_raw(m, to).await;
    }
    let answered_before = Stats::get(&stats.malformed_answered);
    for missing in ["Call-ID", "CSeq", "From"] {
        ua.send_raw(request(&to.to_string(), &me, missing).as_bytes(), to)
            .await;
        let (r, _) = ua.recv(2.0).await.expect("a 400");
        assert_eq!(r.status(), Some(400), "missing {missing}");
    }
    // Nothing else comes back for the dropped ones.
    assert!(ua.recv(0.3).await.is_none());
    assert_eq!(
        Stats::get(&stats.malformed_dropped) - before,
        dropped.len() as u64
    );
    assert_eq!(Stats::get(&stats.malformed_answered) - answered_before, 3);

    // RFC 4475's requests whose request line or Content-Length is bad but whose
    // headers read: 505 for another SIP version, 400 saying why for the rest.
    let line = format!("INVITE sip:+918047112233@{to} SIP/2.0");
    let refused = [
        (
            line.replace("SIP/2.0", "SIP/7.0"),
            505,
            "Version Not Supported",
        ), // badvers
        (
            line.replace("sip:+918047112233@", "<sip:+918047112233@")
                .replace(" SIP/2.0", "> SIP/2.0"),
            400,
            "URI",
        ), // ltgtruri
        (line.replace(' ', "  "), 400, "start line"), // lwsstart
        (format!("{line} "), 400, "start line"),      // trws
    ];
    let body_lines = [
        ("Content-Length: 0", "Content-Length: 500", "says 500 bytes"), // wrong
        ("Content-Length: 0", "Content-Length: -4", "-4"),              // ncl
        (
            "Content-Length: 0",
            "Content-Length: 0\r\nContent-Length: 2",
            "several",
        ), // mcl01
    ];
    let mut answered = 0;
    for (first, status, why) in refused {
        let m = good.replacen(&line, &first, 1);
        ua.send_raw(m.as_bytes(), to).await;
        let (r, _) = ua.recv(2.0).await.expect("an answer");
        assert_eq!(r.status(), Some(status), "{first}");
        assert!(
            r.reason().is_some_and(|w| w.contains(why)),
            "{first}: {r:?}"
        );
        answered += 1;
    }
    for (from, into, why) in body_lines {
        ua.send_raw(good.replace(from, into).as_bytes(), to).await;
        let (r, _) = ua.recv(2.0).await.expect("a 400");
        assert_eq!(r.status(), Some(400), "{into}");
        assert!(r.reason().is_some_and(|w| w.contains(why)), "{into}: {r:?}");
        answered += 1;
    }
    assert!(ua.recv(0.3).await.is_none());
    assert_eq!(
        Stats::get(&stats.malformed_answered) - answered_before,
        3 + answered
    );

    // Over TCP: an oversized header section cannot be framed; the connection is closed
    // and counted.
    let mut tcp = tokio::net::TcpStream::connect(engine.addr(Transport::Tcp))
        .await
        .unwrap();
    let huge = format!(
        "INVITE sip:a@b SIP/2.0\r\nX-Big: {}\r\n",
        "a".repeat(70_000)
    );
    let _ = tcp.write_all(huge.as_bytes()).await;
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "connection closed"
    );
    assert_eq!(stats.framing_errors.load(Ordering::Relaxed), 1);

    // Still serving: a real call goes through.
    let mut far = Ua::new(Transport::Udp, "bot", None).await;
    *bot.lock().await = Some(format!("sip:bot@{}", far.addr));
    let invite = ua.invite(&format!("sip:+918047112233@{to}"), "after-fuzz");
    ua.send(&invite, to).await;
    let (inv, from) = far.expect_request("INVITE").await;
    far.send(&far.response(&inv, 200, "b1", Some(&answer(41000))), from)
        .await;
    assert_eq!(ua.expect_final("INVITE").await.status(), Some(200));
}
