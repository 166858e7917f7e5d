//! Calls from a partner to the PSTN (issue 5's outbound direction): whitelisted
//! sources, the caller-id check, carrier failover, and channel and rate limits.

mod support;

use std::net::SocketAddr;

use callflow::config::Config;
use callflow::server::Server;
use callflow::sip::{Message, Name, Transport};
use support::{Ua, answer, digest_answer, fast_timers, serve};

const CONFIG: &str = r#"
sip: { listen: ["udp://127.0.0.1:0"], options_interval: null }
flows: flows
outbound: { ring_timeout: 1s }
carriers:
  - { name: a, uri: "sip:CARRIER_A", addresses: [10.1.0.1/32], priority: 1 }
  - { name: b, uri: "sip:CARRIER_B", addresses: [10.2.0.1/32], priority: 2 }
  - { name: c, uri: "sip:CARRIER_C", addresses: [10.3.0.1/32], priority: 3 }
trunks:
  - sid: partner
    whitelisted_ips: [WHITELIST]
    numbers: [{ number: "+918047112233", mode: pstn }]
    LIMITS
"#;

struct Setup {
    server: Server,
    partner: Ua,
    carriers: Vec<Ua>,
    _dir: tempfile::TempDir,
}

async fn setup(whitelist: &str, limits: &str) -> Setup {
    let mut carriers = Vec::new();
    for name in ["a", "b", "c"] {
        carriers.push(Ua::new(Transport::Udp, name, None).await);
    }
    let partner = Ua::new(Transport::Udp, "sbc", None).await;
    let text = CONFIG
        .replace("CARRIER_A", &carriers[0].addr.to_string())
        .replace("CARRIER_B", &carriers[1].addr.to_string())
        .replace("CARRIER_C", &carriers[2].addr.to_string())
        .replace("WHITELIST", whitelist)
        .replace("LIMITS", limits);
    let (server, dir) = serve(&text, &[]).await;
    Setup {
        server,
        partner,
        carriers,
        _dir: dir,
    }
}

impl Setup {
    fn engine(&self) -> SocketAddr {
        self.server.transports.local_addr(Transport::Udp).unwrap()
    }

    /// The partner calls `dialled` with caller id `from`.
    async fn call(&self, dialled: &str, from: &str, id: &str) -> Message {
        let to = self.engine();
        let mut invite = self.partner.invite(&format!("sip:{dialled}@{to}"), id);
        invite.set_header(
            Name::From,
            format!("<sip:{from}@{}>;tag=p{id}", self.partner.addr),
        );
        self.partner.send(&invite, to).await;
        invite
    }
}

#[tokio::test]
async fn carrier_failover_503_then_no_answer_then_200() {
    let mut s = setup("127.0.0.0/31", "").await;
    s.call("+919999999999", "+918047112233", "failover").await;
    // Carrier a: 503.
    let (inv, from) = s.carriers[0].expect_request("INVITE").await;
    assert_eq!(inv.request_uri().unwrap().user(), Some("+919999999999"));
    assert_eq!(inv.from_header().unwrap().uri.user(), Some("+918047112233"));
    s.carriers[0]
        .send(&s.carriers[0].response(&inv, 503, "a", None), from)
        .await;
    s.carriers[0].expect_request("ACK").await;
    // Carrier b: rings and never answers; cancelled at the ring timeout.
    let (inv, from) = s.carriers[1].expect_request("INVITE").await;
    s.carriers[1]
        .send(&s.carriers[1].response(&inv, 180, "b", None), from)
        .await;
    let (cancel, from) = s.carriers[1].expect_request("CANCEL").await;
    s.carriers[1]
        .send(&s.carriers[1].response(&cancel, 200, "b", None), from)
        .await;
    s.carriers[1]
        .send(&s.carriers[1].response(&inv, 487, "b", None), from)
        .await;
    // Carrier c: answers. The partner saw no failure.
    let (inv, from) = s.carriers[2].expect_request("INVITE").await;
    s.carriers[2]
        .send(
            &s.carriers[2].response(&inv, 200, "c", Some(&answer(41000))),
            from,
        )
        .await;
    let mut statuses = Vec::new();
    loop {
        let r = s.partner.expect_response().await;
        statuses.push(r.status().unwrap());
        if r.status().unwrap() >= 200 {
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&200), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 180 || *s == 200),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn every_carrier_failing_reaches_the_partner() {
    let mut s = setup("127.0.0.1/32", "").await;
    s.call("+919999999999", "+918047112233", "allfail").await;
    for c in 0..3 {
        let (inv, from) = s.carriers[c].expect_request("INVITE").await;
        s.carriers[c]
            .send(&s.carriers[c].response(&inv, 502, "x", None), from)
            .await;
    }
    assert_eq!(s.partner.expect_final("INVITE").await.status(), Some(502));
}

#[tokio::test]
async fn a_non_failover_status_is_relayed_at_once() {
    let mut s = setup("127.0.0.1/32", "").await;
    s.call("+919999999999", "+918047112233", "busy").await;
    let (inv, from) = s.carriers[0].expect_request("INVITE").await;
    s.carriers[0]
        .send(&s.carriers[0].response(&inv, 486, "a", None), from)
        .await;
    assert_eq!(s.partner.expect_final("INVITE").await.status(), Some(486));
    assert!(s.carriers[1].recv(0.2).await.is_none());
}

#[tokio::test]
async fn caller_id_must_be_a_number_of_the_trunk() {
    let mut s = setup("127.0.0.1/32", "").await;
    s.call("+919999999999", "+911111111111", "spoof").await;
    let r = s.partner.expect_final("INVITE").await;
    assert_eq!(r.status(), Some(403));
    let callflow::sip::StartLine::Response { reason, .. } = &r.start else {
        panic!()
    };
    // The reason stays in the log and the metrics; the peer learns nothing.
    assert_eq!(reason, "Forbidden");
}

#[tokio::test]
async fn source_outside_the_whitelist_is_refused() {
    // 127.0.0.1 is just outside 127.0.0.2/31.
    let mut s = setup("127.0.0.2/31", "").await;
    s.call("+919999999999", "+918047112233", "outside").await;
    assert!(s.partner.recv(0.5).await.is_none(), "dropped, not answered");
    assert!(s.carriers[0].recv(0.2).await.is_none());
}

#[tokio::test]
async fn trunk_channel_limit_gives_503_with_retry_after() {
    let mut s = setup("127.0.0.1/32", "max_channels: 2").await;
    for id in ["ch1", "ch2"] {
        s.call("+919999999999", "+918047112233", id).await;
        let (inv, from) = s.carriers[0].expect_request("INVITE").await;
        s.carriers[0]
            .send(
                &s.carriers[0].response(&inv, 200, id, Some(&answer(41000))),
                from,
            )
            .await;
        assert_eq!(s.partner.expect_final("INVITE").await.status(), Some(200));
    }
    s.call("+919999999999", "+918047112233", "ch3").await;
    let r = s.partner.expect_final("INVITE").await;
    assert_eq!(r.status(), Some(503));
    assert_eq!(r.header(&Name::RetryAfter), Some("5"));
}

#[tokio::test]
async fn trunk_calls_per_second_limit() {
    let mut s = setup("127.0.0.1/32", "max_cps: 1").await;
    s.call("+919999999999", "+918047112233", "cps1").await;
    s.call("+919999999999", "+918047112233", "cps2").await;
    let (inv, from) = s.carriers[0].expect_request("INVITE").await;
    s.carriers[0]
        .send(&s.carriers[0].response(&inv, 486, "a", None), from)
        .await;
    let mut finals = Vec::new();
    while finals.len() < 2 {
        let r = s.partner.expect_response().await;
        if r.status().unwrap() >= 200 && !finals.iter().any(|(id, _)| id == r.call_id().unwrap()) {
            finals.push((r.call_id().unwrap().to_string(), r.status().unwrap()));
        }
    }
    let mut codes: Vec<u16> = finals.iter().map(|f| f.1).collect();
    codes.sort();
    assert_eq!(codes, [486, 503]);
}

#[tokio::test]
async fn digest_sha256_authenticates_a_trunk_without_a_whitelisted_address() {
    let (_s, status) = digest_race("SHA-256", "s3cret").await;
    assert_eq!(status, 200);
}

/// Digest then the carrier answering 200. The trunk takes MD5 only for an MD5 race
/// (SHA-256 only is the default).
async fn digest_race(alg: &str, password: &str) -> (Setup, u16) {
    let md5 = if alg == "MD5" {
        "\n    allow_md5: true"
    } else {
        ""
    };
    let mut s = setup(
        "10.9.9.9/32",
        &format!("credentials: {{ username: partner, password: s3cret }}{md5}"),
    )
    .await;
    let invite = s
        .call("+919999999999", "+918047112233", &format!("auth-{alg}"))
        .await;
    let r = s.partner.expect_final("INVITE").await;
    assert_eq!(r.status(), Some(401));
    let challenges: Vec<String> = r
        .header_values(&Name::parse("WWW-Authenticate"))
        .map(str::to_string)
        .collect();
    assert!(
        challenges[0].contains("algorithm=SHA-256"),
        "{challenges:?}"
    );
    assert_eq!(
        challenges.iter().any(|c| c.contains("algorithm=MD5")),
        alg == "MD5",
        "MD5 is offered only when a trunk takes it: {challenges:?}"
    );
    let challenge = challenges
        .iter()
        .find(|c| c.contains(&format!("algorithm={alg}")))
        .unwrap()
        .clone();
    let uri = invite.request_uri().unwrap().to_string();
    let mut again = invite.clone();
    again.set_header(Name::CSeq, "2 INVITE");
    again.set_header(Name::CallId, format!("auth-{alg}-2"));
    let via = invite
        .header(&Name::Via)
        .unwrap()
        .replace(";branch=z9hG4bK", ";branch=z9hG4bKretry");
    again.set_header(Name::Via, via);
    again.push_header(
        Name::parse("Authorization"),
        digest_answer(&challenge, alg, &uri, "partner", password),
    );
    s.partner.send(&again, s.engine()).await;
    if password == "s3cret" {
        let (inv, from) = s.carriers[0].expect_request("INVITE").await;
        s.carriers[0]
            .send(
                &s.carriers[0].response(&inv, 200, "a", Some(&answer(41000))),
                from,
            )
            .await;
    }
    let status = loop {
        let r = s.partner.expect_response().await;
        if r.call_id().unwrap() == format!("auth-{alg}-2") && r.status().unwrap() >= 200 {
            break r.status().unwrap();
        }
    };
    (s, status)
}

#[tokio::test]
async fn digest_md5_authenticates_too() {
    let (_s, status) = digest_race("MD5", "s3cret").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn digest_with_a_wrong_password_is_refused() {
    let (_s, status) = digest_race("SHA-256", "guess").await;
    assert_eq!(status, 403);
}

/// A carrier that answers every INVITE 200 (with SDP) and holds the call.
async fn answering_carrier() -> SocketAddr {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let Ok(m) = Message::parse(&buf[..n], callflow::sip::Framing::Datagram) else {
                continue;
            };
            if m.method().map(|m| m.as_str()) != Some("INVITE") {
                continue;
            }
            let mut r = Message::response_to(&m, 200);
            let mut to = r.to_header().unwrap().clone();
            to.set_tag("carrier");
            r.set_header(Name::To, to.to_string());
            r.push_header(Name::Contact, format!("<sip:c@{addr}>"));
            r.set_body("application/sdp", bytes::Bytes::from(answer(41000)));
            let _ = socket.send_to(&r.to_bytes(), from).await;
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_simultaneous_invites_against_a_limit_of_100_connect_exactly_100() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let carrier = answering_carrier().await;
    let config = format!(
        "sip: {{ listen: [\"udp://127.0.0.1:0\", \"tcp://127.0.0.1:0\"], options_interval: null }}\nflows: flows\ncarriers:\n  - {{ name: a, uri: \"sip:{carrier}\", addresses: [10.1.0.1/32] }}\ntrunks:\n  - sid: partner\n    whitelisted_ips: [127.0.0.1/32]\n    numbers: [{{ number: \"+918047112233\", mode: pstn }}]\n    max_channels: 100\n"
    );
    let (server, _dir) = serve(&config, &[]).await;
    let engine = server.transports.local_addr(Transport::Tcp).unwrap();
    let mut tcp = tokio::net::TcpStream::connect(engine).await.unwrap();
    let me = tcp.local_addr().unwrap();
    let sdp = answer(40000);
    let mut burst = Vec::new();
    for i in 0..1000 {
        burst.extend_from_slice(format!(
            "INVITE sip:+919999999999@{engine};transport=tcp SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bKburst{i}\r\nMax-Forwards: 70\r\nFrom: <sip:+918047112233@{me}>;tag=b{i}\r\nTo: <sip:+919999999999@{engine}>\r\nCall-ID: burst-{i}\r\nCSeq: 1 INVITE\r\nContact: <sip:sbc@{me};transport=tcp>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        ).as_bytes());
    }
    tcp.write_all(&burst).await.unwrap();
    let mut finals = std::collections::HashMap::new();
    let mut buf = bytes::BytesMut::new();
    while finals.len() < 1000 {
        let n = tokio::time::timeout(std::time::Duration::from_secs(20), tcp.read_buf(&mut buf))
            .await
            .expect("responses keep coming")
            .unwrap();
        assert!(n > 0, "connection closed");
        while let Ok(Some(len)) = callflow::sip::message::frame(&buf) {
            let bytes = buf.split_to(len);
            let m = Message::parse(&bytes, callflow::sip::Framing::Stream).unwrap();
            if let Some(s) = m.status().filter(|s| *s >= 200) {
                finals.insert(m.call_id().unwrap().to_string(), s);
            }
        }
    }
    let ok = finals.values().filter(|s| **s == 200).count();
    let refused = finals.values().filter(|s| **s == 503).count();
    assert_eq!((ok, refused), (100, 900));
}

#[tokio::test]
async fn a_full_carrier_is_skipped_for_the_next() {
    let cfg_limit = "max_channels: 10";
    let mut s = setup("127.0.0.1/32", cfg_limit).await;
    // Rewrite carrier a with max_channels 1 and restart.
    let path = s._dir.path().join("callflow.yaml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "addresses: [10.1.0.1/32], priority: 1 }",
        "addresses: [10.1.0.1/32], priority: 1, max_channels: 1 }",
    );
    std::fs::write(&path, text).unwrap();
    s.server = Server::start(&Config::load(&path).unwrap(), fast_timers())
        .await
        .unwrap();
    s.call("+919999999999", "+918047112233", "full1").await;
    let (inv, from) = s.carriers[0].expect_request("INVITE").await;
    s.carriers[0]
        .send(
            &s.carriers[0].response(&inv, 200, "a", Some(&answer(41000))),
            from,
        )
        .await;
    assert_eq!(s.partner.expect_final("INVITE").await.status(), Some(200));
    // Carrier a is full: the next call goes to b.
    s.call("+919999999999", "+918047112233", "full2").await;
    let (inv, from) = s.carriers[1].expect_request("INVITE").await;
    s.carriers[1]
        .send(
            &s.carriers[1].response(&inv, 200, "b", Some(&answer(41000))),
            from,
        )
        .await;
    let r = loop {
        let r = s.partner.expect_final("INVITE").await;
        if r.call_id().unwrap() == "full2" {
            break r;
        }
    };
    assert_eq!(r.status(), Some(200));
}
