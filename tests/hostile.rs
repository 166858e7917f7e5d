//! Issue 13 end to end: the engine facing hostile sources on loopback. Unknown
//! sources are answered statelessly (nothing, one 403, or one identical challenge),
//! floods leave no state and do not stop legitimate calls, password guessers are
//! blocked while other sources carry on, and refusals say nothing about the policy.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use callflow::server::Server;
use callflow::sip::{Message, Name, Transport};
use support::{Ua, answer, digest_answer, serve};

/// A carrier (CARRIER, addresses 127.0.0.2), trunk `partner` with number
/// +918047112233 (whitelisted at WHITELIST, credentials when CREDENTIALS is set),
/// and the SIP settings in SIP.
const CONFIG: &str = r#"
sip: { listen: ["udp://127.0.0.1:0", "tcp://127.0.0.1:0"], options_interval: null, SIP }
flows: flows
carriers:
  - { name: a, uri: "sip:CARRIER", addresses: [127.0.0.2/32] }
trunks:
  - sid: partner
    whitelisted_ips: [WHITELIST]
    numbers: [{ number: "+918047112233", mode: pstn }]
    destinations: ["sip:BOT"]
    CREDENTIALS
"#;

struct Node {
    server: Server,
    carrier: Ua,
    bot: Ua,
    _dir: tempfile::TempDir,
}

async fn node(sip: &str, whitelist: &str, credentials: &str) -> Node {
    let carrier = Ua::new_at(Transport::Udp, "carrier", None, "127.0.0.2").await;
    let bot = Ua::new(Transport::Udp, "bot", None).await;
    let text = CONFIG
        .replace("CARRIER", &carrier.addr.to_string())
        .replace("BOT", &bot.addr.to_string())
        .replace("WHITELIST", whitelist)
        .replace("SIP", sip)
        .replace("CREDENTIALS", credentials);
    let (server, dir) = serve(&text, &[]).await;
    Node {
        server,
        carrier,
        bot,
        _dir: dir,
    }
}

impl Node {
    fn sip(&self) -> SocketAddr {
        self.server.transports.local_addr(Transport::Udp).unwrap()
    }

    /// An INVITE from `ua` to `dialled`, From `from`, Call-ID `id`.
    fn invite(&self, ua: &Ua, dialled: &str, from: &str, id: &str) -> Message {
        let mut m = ua.invite(&format!("sip:{dialled}@{}", self.sip()), id);
        m.set_header(Name::From, format!("<sip:{from}@{}>;tag=t{id}", ua.addr));
        m
    }
}

/// Every message `ua` gets within `secs`.
async fn all_within(ua: &mut Ua, secs: f64) -> Vec<Message> {
    let mut out = Vec::new();
    while let Some((m, _)) = ua.recv(secs).await {
        out.push(m);
    }
    out
}

/// A legitimate call from the PSTN to the trunk's number, answered by the bot.
async fn legitimate_call(n: &mut Node, id: &str) {
    let mut caller = Ua::new_at(Transport::Udp, "pstn", None, "127.0.0.2").await;
    let inv = caller.invite(&format!("sip:+918047112233@{}", n.sip()), id);
    caller.send(&inv, n.sip()).await;
    let (binv, from) = n.bot.expect_request("INVITE").await;
    n.bot
        .send(&n.bot.response(&binv, 200, id, Some(&answer(41000))), from)
        .await;
    assert_eq!(caller.expect_final("INVITE").await.status(), Some(200));
}

#[tokio::test]
async fn a_flood_from_an_unknown_source_gets_nothing_and_leaves_no_state() {
    let mut n = node("unknown_sources: drop", "10.9.9.9/32", "").await;
    let mut stranger = Ua::new_at(Transport::Udp, "stranger", None, "127.0.0.5").await;
    for i in 0..150 {
        let m = n.invite(
            &stranger,
            "+919999999999",
            "+918047112233",
            &format!("f{i}"),
        );
        stranger.send(&m, n.sip()).await;
    }
    legitimate_call(&mut n, "legit-during-drop").await;
    assert!(
        all_within(&mut stranger, 0.5).await.is_empty(),
        "no answer at all"
    );
    assert!(n.carrier.recv(0.1).await.is_none());
    // No transaction was made for any of them (only the legitimate call's remain).
    assert!(
        n.server.engine.core.layer.alive() <= 2,
        "{}",
        n.server.engine.core.layer.alive()
    );
}

#[tokio::test]
async fn reject_answers_each_invite_exactly_once_without_trying() {
    let mut n = node("unknown_sources: reject", "10.9.9.9/32", "").await;
    let mut stranger = Ua::new_at(Transport::Udp, "stranger", None, "127.0.0.5").await;
    for i in 0..50 {
        let m = n.invite(
            &stranger,
            "+919999999999",
            "+918047112233",
            &format!("r{i}"),
        );
        stranger.send(&m, n.sip()).await;
    }
    legitimate_call(&mut n, "legit-during-reject").await;
    // The stranger never ACKs: a transaction would retransmit its 403 (T1 = 500 ms).
    let got = all_within(&mut stranger, 1.5).await;
    assert_eq!(got.len(), 50, "one answer per INVITE, no retransmission");
    for m in &got {
        assert_eq!(m.status(), Some(403));
        let callflow::sip::StartLine::Response { reason, .. } = &m.start else {
            panic!()
        };
        assert_eq!(reason, "Forbidden");
        assert!(m.to_header().unwrap().tag().is_some());
    }
}

#[tokio::test]
async fn the_challenge_is_the_same_whatever_the_from() {
    let creds = "credentials: { username: partner, password: s3cret }";
    let n = node("unknown_sources: drop", "10.9.9.9/32", creds).await;
    let mut stranger = Ua::new_at(Transport::Udp, "stranger", None, "127.0.0.5").await;
    let mut answers = Vec::new();
    for (i, from) in ["+918047112233", "+911111111111", "anonymous"]
        .iter()
        .enumerate()
    {
        let m = n.invite(&stranger, "+919999999999", from, &format!("o{i}"));
        stranger.send(&m, n.sip()).await;
        let got = all_within(&mut stranger, 0.3).await;
        assert_eq!(got.len(), 1, "one stateless answer, no 100 Trying");
        answers.push(got[0].clone());
    }
    // Same status, reason and header names; the challenges differ only in the nonce.
    let shape = |m: &Message| {
        let names: Vec<String> = m
            .headers()
            .iter()
            .map(|h| h.name.as_str().to_string())
            .collect();
        let challenges: Vec<String> = m
            .header_values(&Name::parse("WWW-Authenticate"))
            .map(|c| {
                let nonce = c
                    .split("nonce=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap();
                c.replace(nonce, "N")
            })
            .collect();
        (m.status(), format!("{:?}", m.start), names, challenges)
    };
    assert_eq!(shape(&answers[0]).0, Some(401));
    assert_eq!(shape(&answers[0]).2, shape(&answers[1]).2);
    assert_eq!(shape(&answers[0]).3, shape(&answers[1]).3);
    assert_eq!(shape(&answers[1]).3, shape(&answers[2]).3);
    let realm = &shape(&answers[0]).3[0];
    assert!(!realm.to_ascii_lowercase().contains("callflow"), "{realm}");
}

/// A fresh challenge to `ua` (a stateless 401).
async fn challenge(n: &Node, ua: &mut Ua, id: &str) -> String {
    let m = n.invite(ua, "+919999999999", "+918047112233", id);
    ua.send(&m, n.sip()).await;
    let got = all_within(ua, 0.3).await;
    assert_eq!(got.len(), 1, "{id}: {got:?}");
    got[0]
        .header_values(&Name::parse("WWW-Authenticate"))
        .next()
        .unwrap()
        .to_string()
}

/// An INVITE from `ua` answering `challenge` with `password`; what it got within
/// `secs` (the carrier answers 200 when it is let through).
async fn authenticated(
    n: &mut Node,
    ua: &mut Ua,
    challenge: &str,
    password: &str,
    id: &str,
) -> Vec<u16> {
    let mut m = n.invite(ua, "+919999999999", "+918047112233", id);
    let uri = m.request_uri().unwrap().to_string();
    m.push_header(
        Name::parse("Authorization"),
        digest_answer(challenge, "SHA-256", &uri, "partner", password),
    );
    ua.send(&m, n.sip()).await;
    while let Some((inv, from)) = n.carrier.recv(0.5).await {
        if inv.method().is_some_and(|m| m.as_str() == "INVITE") {
            let ok = n.carrier.response(&inv, 200, id, Some(&answer(41000)));
            n.carrier.send(&ok, from).await;
            break;
        }
    }
    let mut finals = Vec::new();
    while let Some((r, _)) = ua.recv(0.5).await {
        match r.status() {
            Some(s) if s >= 300 => {
                finals.push(s);
                // The ACK of a failure: the INVITE's branch, the response's To.
                let mut ack = m.clone();
                ack.start = callflow::sip::StartLine::Request {
                    method: callflow::sip::Method::Ack,
                    uri: m.request_uri().unwrap().clone(),
                };
                ack.set_header(Name::CSeq, "1 ACK");
                ack.set_header(Name::To, r.header(&Name::To).unwrap().to_string());
                ack.body = Default::default();
                ack.remove_header(&Name::parse("Authorization"));
                ua.send(&ack, n.sip()).await;
            }
            Some(s) if s >= 200 => finals.push(s),
            _ => {}
        }
    }
    finals.dedup();
    finals
}

#[tokio::test]
async fn md5_is_refused_for_a_trunk_that_takes_sha256_only() {
    let creds = "credentials: { username: partner, password: s3cret }";
    let mut n = node("unknown_sources: drop", "10.9.9.9/32", creds).await;
    let mut ua = Ua::new_at(Transport::Udp, "md5", None, "127.0.0.7").await;
    let c = challenge(&n, &mut ua, "m0").await;
    assert!(c.contains("algorithm=SHA-256"));
    // The right password, answered with MD5 to the same nonce: refused.
    let mut m = n.invite(&ua, "+919999999999", "+918047112233", "m1");
    let uri = m.request_uri().unwrap().to_string();
    m.push_header(
        Name::parse("Authorization"),
        digest_answer(&c, "MD5", &uri, "partner", "s3cret"),
    );
    ua.send(&m, n.sip()).await;
    let r = ua.expect_final("INVITE").await;
    assert_eq!(r.status(), Some(403));
    assert!(n.carrier.recv(0.3).await.is_none());
}

#[tokio::test]
async fn a_guesser_is_blocked_and_other_sources_carry_on() {
    let creds = "credentials: { username: partner, password: s3cret }";
    let sip = "shield: { auth_failures_per_minute: 3, block: 4s }";
    let mut n = node(sip, "10.9.9.9/32", creds).await;
    let mut guesser = Ua::new_at(Transport::Udp, "guesser", None, "127.0.0.5").await;
    for i in 0..4 {
        let c = challenge(&n, &mut guesser, &format!("c{i}")).await;
        let got = authenticated(
            &mut n,
            &mut guesser,
            &c,
            &format!("guess{i}"),
            &format!("g{i}"),
        )
        .await;
        assert_eq!(got, [403], "guess {i}: a plain 403");
    }
    // Blocked: even the right password from it gets nothing, not even a challenge.
    let m = n.invite(&guesser, "+919999999999", "+918047112233", "blocked");
    guesser.send(&m, n.sip()).await;
    let got = all_within(&mut guesser, 0.5).await;
    assert!(
        got.iter().all(|m| m.call_id().unwrap() != "blocked"),
        "nothing for the blocked source's INVITE"
    );
    // Another source with the right password is not affected.
    let mut trunk = Ua::new_at(Transport::Udp, "trunk", None, "127.0.0.6").await;
    let c = challenge(&n, &mut trunk, "t0").await;
    assert_eq!(
        authenticated(&mut n, &mut trunk, &c, "s3cret", "t1").await,
        [200]
    );
    // The block ends; the right password from the guesser's address then works.
    tokio::time::sleep(Duration::from_millis(4100)).await;
    let c = challenge(&n, &mut guesser, "after").await;
    assert_eq!(
        authenticated(&mut n, &mut guesser, &c, "s3cret", "after-ok").await,
        [200]
    );
}

#[tokio::test]
async fn a_flooding_source_is_blocked_and_a_carrier_is_not() {
    let sip = "unknown_sources: reject, shield: { requests_per_second: 20, block: 5s }";
    let mut n = node(sip, "10.9.9.9/32", "").await;
    let mut stranger = Ua::new_at(Transport::Udp, "stranger", None, "127.0.0.5").await;
    for i in 0..60 {
        let m = n.invite(
            &stranger,
            "+919999999999",
            "+918047112233",
            &format!("p{i}"),
        );
        stranger.send(&m, n.sip()).await;
    }
    let got = all_within(&mut stranger, 0.5).await;
    assert!(got.len() <= 20, "{} answers: blocked after 20", got.len());
    // The carrier, exempt, sends as fast and its call still completes.
    let pstn = Ua::new_at(Transport::Udp, "pstn", None, "127.0.0.2").await;
    for i in 0..60 {
        let mut o = pstn.invite(&format!("sip:+918047112233@{}", n.sip()), &format!("o{i}"));
        o.start = callflow::sip::StartLine::Request {
            method: callflow::sip::Method::Options,
            uri: o.request_uri().unwrap().clone(),
        };
        o.set_header(Name::CSeq, "1 OPTIONS");
        o.body = Default::default();
        pstn.send(&o, n.sip()).await;
    }
    legitimate_call(&mut n, "carrier-after-flood").await;
    let text = callflow::metrics::global().encode();
    assert!(
        text.contains("callflow_shield_dropped_packets_total"),
        "{text}"
    );
}

#[tokio::test]
async fn a_partner_over_tcp_gets_in_dialog_requests_on_its_own_connection() {
    // The partner's SBC (whitelisted 127.0.0.1) calls the PSTN over TCP; its Contact
    // is a listener callflow must not need (behind NAT it would be unreachable).
    let mut n = node("unknown_sources: drop", "127.0.0.1/32", "").await;
    let mut sbc = Ua::new(Transport::Tcp, "sbc", None).await;
    let engine = n.server.transports.local_addr(Transport::Tcp).unwrap();
    let mut inv = sbc.invite(&format!("sip:+919999999999@{engine};transport=tcp"), "tcp1");
    inv.set_header(
        Name::From,
        format!("<sip:+918047112233@{}>;tag=sbc1", sbc.addr),
    );
    sbc.send(&inv, engine).await;
    let (cinv, from) = n.carrier.expect_request("INVITE").await;
    n.carrier
        .send(
            &n.carrier.response(&cinv, 200, "c1", Some(&answer(41000))),
            from,
        )
        .await;
    let ok = sbc.expect_final("INVITE").await;
    assert_eq!(ok.status(), Some(200));
    let ack = sbc.in_dialog("ACK", &ok, true, "", 1, "ack1");
    sbc.send(&ack, engine).await;
    n.carrier.expect_request("ACK").await;
    // The carrier hangs up: the BYE reaches the SBC over the SBC's own connection.
    let bye = n.carrier.in_dialog("BYE", &cinv, false, "c1", 1, "cbye");
    n.carrier.send(&bye, Ua::contact_addr(&cinv)).await;
    let (b, _) = sbc.expect_request("BYE").await;
    assert_eq!(
        sbc.accepted.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "no new connection to the SBC's Contact"
    );
    sbc.send(&sbc.response(&b, 200, "x", None), engine).await;
}

#[tokio::test]
async fn two_engines_pointed_at_each_other_stop_at_483() {
    // Each engine takes every loopback source as a carrier and sends the number
    // straight to the other engine: a loop that only Max-Forwards can end.
    let free = || {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (a_addr, b_addr) = (free(), free());
    let config = |me: SocketAddr, other: SocketAddr| {
        format!(
            "sip: {{ listen: [\"udp://{me}\"], options_interval: null }}\nflows: flows\ncarriers:\n  - {{ name: loop, uri: \"sip:127.0.0.1:9\", addresses: [127.0.0.0/8] }}\ntrunks:\n  - sid: other\n    destinations: [\"sip:{other}\"]\n    numbers: [{{ number: \"+918047112233\", mode: pstn }}]\n"
        )
    };
    let (a, _da) = serve(&config(a_addr, b_addr), &[]).await;
    let (b, _db) = serve(&config(b_addr, a_addr), &[]).await;
    let mut caller = Ua::new_at(Transport::Udp, "caller", None, "127.0.0.2").await;
    let inv = caller.invite(&format!("sip:+918047112233@{a_addr}"), "loop");
    caller.send(&inv, a_addr).await;
    let r = caller.expect_final("INVITE").await;
    assert!(r.status().unwrap() >= 400, "the loop ends in a failure");
    let count = |s: &Server, dir: usize, class: usize| {
        s.transports.stats.messages.responses[dir][class].load(std::sync::atomic::Ordering::Relaxed)
    };
    let invites = |s: &Server| {
        s.transports.stats.messages.requests[0][0].load(std::sync::atomic::Ordering::Relaxed)
    };
    let hops = invites(&a) + invites(&b);
    assert!(
        (60..=80).contains(&hops),
        "{hops} INVITEs: about 70, not forever"
    );
    assert!(
        count(&a, 1, 3) + count(&b, 1, 3) > 0,
        "4xx (the 483) were sent"
    );
}

#[tokio::test]
async fn a_wrong_user_and_a_wrong_password_get_the_same_answer() {
    let creds = "credentials: { username: partner, password: s3cret }";
    let mut n = node("unknown_sources: drop", "10.9.9.9/32", creds).await;
    let mut answers = Vec::new();
    for (i, (user, password)) in [("partner", "guess"), ("nobody", "s3cret")]
        .iter()
        .enumerate()
    {
        let mut ua = Ua::new_at(Transport::Udp, "o", None, &format!("127.0.0.{}", 20 + i)).await;
        let c = challenge(&n, &mut ua, &format!("w{i}")).await;
        let mut m = n.invite(&ua, "+919999999999", "+918047112233", &format!("u{i}"));
        let uri = m.request_uri().unwrap().to_string();
        m.push_header(
            Name::parse("Authorization"),
            digest_answer(&c, "SHA-256", &uri, user, password),
        );
        ua.send(&m, n.sip()).await;
        let r = ua.expect_final("INVITE").await;
        let names: Vec<String> = r
            .headers()
            .iter()
            .map(|h| h.name.as_str().to_string())
            .collect();
        answers.push((format!("{:?}", r.start), names));
    }
    assert!(
        answers[0].0.contains("403") && answers[0].0.contains("Forbidden"),
        "{answers:?}"
    );
    assert_eq!(answers[0], answers[1]);
    assert!(n.carrier.recv(0.2).await.is_none());
}

#[tokio::test]
async fn the_far_ends_of_callflows_own_calls_are_not_rate_limited() {
    // The bot (127.0.0.1) is neither a carrier nor a trunk's address; it answers
    // calls callflow sends it, faster than the shield lets a stranger send.
    let mut n = node(
        "shield: { requests_per_second: 3, block: 30s }",
        "10.9.9.9/32",
        "",
    )
    .await;
    for i in 0..8 {
        legitimate_call(&mut n, &format!("peer{i}")).await;
    }
}
