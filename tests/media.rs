//! Media anchored in a real rtpengine (Debian's `rtpengine-daemon`, started by the
//! tests): RTP relayed both ways before and after a bot → agent hand-off without a
//! re-INVITE to the caller (and the old bot's packets kept from the caller), SRTP
//! towards a trunk that requires it, a dual-channel recording whose channels hold the
//! right tones, the media timeout, rtpengine down (503) and back, failover to a
//! second rtpengine, and no call left in rtpengine after any of it.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use callflow::server::Server;
use callflow::sip::{Message, Name, Transport};
use support::rtpengine::{Rtp, Rtpengine, frequency, sdp_port, tone};
use support::{Ua, serve};

/// The engine with media in rtpengine(s) `NG`, timeout `TIMEOUT`; the hand-off flow
/// on +918047112233 (bot on trunk_bot, then agent on trunk_sales).
const CONFIG: &str = r#"
sip: { listen: ["udp://127.0.0.1:0"TLSLISTEN], options_interval: null TLSFILES }
store: "sqlite://STORE"
flows: flows
media: { rtpengine: [NG], timeout: TIMEOUT, ng_timeout: 200ms }
recordings: { dir: RECDIR }
carriers:
  - { name: pstn, uri: "sip:127.0.0.1:9", addresses: [127.0.0.1/32], priority: 1 }
trunks:
  - sid: trunk_bot
    destinations: ["sip:BOTURI"]
    SRTP
    numbers:
      - { number: "+918047112233", mode: flow, flow: f }
  - sid: trunk_sales
    destinations: ["sip:AGENT"]
"#;

const HANDOFF: &str = r#"
flow: f
start: bot
applets:
  bot:
    connect: { to: "sip:trunk_bot" RECORD }
    on: { completed: agent, no_answer: bye, failed: bye }
  agent:
    connect: { to: "sip:trunk_sales" }
    next: bye
  bye:
    hangup: {}
"#;

struct World {
    server: Server,
    partner: support::partner::Partner,
    caller: Ua,
    bot: Ua,
    agent: Ua,
    rtp: Rtpengine,
    rec: tempfile::TempDir,
    _dir: tempfile::TempDir,
}

/// Options of a world.
#[derive(Default)]
struct Opts {
    srtp: bool,
    record: bool,
    timeout: Option<&'static str>,
    dead_first: bool,
    /// The bot is reached over TLS (its trunk has no `srtp` setting).
    tls: bool,
    /// Another flow instead of the hand-off (BOT and AGENT stand for the UAs).
    flow: Option<&'static str>,
}

async fn world(o: Opts) -> Option<World> {
    let rtp = Rtpengine::start().await?;
    let cert = support::test_cert();
    let bot = if o.tls {
        Ua::new(Transport::Tls, "bot", Some(&cert)).await
    } else {
        Ua::new(Transport::Udp, "bot", None).await
    };
    let (tls_listen, tls_files, bot_uri) = if o.tls {
        (
            ", \"tls://127.0.0.1:0\"".to_string(),
            format!(
                ", tls: {{ cert: \"{}\", key: \"{}\", ca: \"{}\" }}",
                cert.cert.display(),
                cert.key.display(),
                cert.cert.display()
            ),
            format!("localhost:{};transport=tls", bot.addr.port()),
        )
    } else {
        (String::new(), String::new(), bot.addr.to_string())
    };
    let agent = Ua::new(Transport::Udp, "agent", None).await;
    let caller = Ua::new(Transport::Udp, "caller", None).await;
    let (partner, webhook) = support::partner::partner().await;
    let rec = tempfile::tempdir().unwrap();
    let ng = if o.dead_first {
        format!("\"udp://127.0.0.1:9\", \"udp://{}\"", rtp.ng)
    } else {
        format!("\"udp://{}\"", rtp.ng)
    };
    let config = CONFIG
        .replace("NG", &ng)
        .replace("TIMEOUT", o.timeout.unwrap_or("60s"))
        .replace("RECDIR", &rec.path().display().to_string())
        .replace("STORE", &rec.path().join("c.db").display().to_string())
        .replace("SRTP", if o.srtp { "srtp: required" } else { "" })
        .replace("TLSLISTEN", &tls_listen)
        .replace("TLSFILES", &tls_files)
        .replace("BOTURI", &bot_uri)
        .replace("AGENT", &agent.addr.to_string());
    let record = if o.record {
        ", record: true, recording_channels: dual"
    } else {
        ""
    };
    let flow = o
        .flow
        .unwrap_or(HANDOFF)
        .replace("RECORD", record)
        .replace("BOT", &bot.addr.to_string())
        .replace("AGENT", &agent.addr.to_string())
        .replace("WEBHOOK", &webhook.to_string());
    let (server, dir) = serve(&config, &[("f", &flow)]).await;
    Some(World {
        server,
        partner,
        caller,
        bot,
        agent,
        rtp,
        rec,
        _dir: dir,
    })
}

impl World {
    fn engine(&self) -> SocketAddr {
        self.server.transports.local_addr(Transport::Udp).unwrap()
    }

    /// The caller sends an INVITE whose SDP names `media`.
    async fn call(&mut self, id: &str, media: &Rtp) {
        let to = self.engine();
        let mut invite = self.caller.invite(&format!("sip:+918047112233@{to}"), id);
        invite.set_body(
            "application/sdp",
            media.sdp_with_ice("RTP/AVP").into_bytes().into(),
        );
        self.caller.send(&invite, to).await;
    }

    /// `ua` answers its INVITE with `media`'s SDP over `proto`; gives the INVITE.
    async fn answer(ua: &mut Ua, tag: &str, media: &Rtp, proto: &str, extra: &str) -> Message {
        let (inv, from) = ua.expect_request("INVITE").await;
        let body = media.sdp(proto) + extra;
        ua.send(&ua.response(&inv, 200, tag, Some(&body)), from)
            .await;
        inv
    }

    /// The caller gets its 200 and ACKs it.
    async fn caller_answered(&mut self) -> Message {
        let ok = self.caller.expect_final("INVITE").await;
        assert_eq!(ok.status(), Some(200), "{ok:?}");
        let branch = format!("ack{}", ok.call_id().unwrap());
        let ack = self.caller.in_dialog("ACK", &ok, true, "", 1, &branch);
        self.caller.send(&ack, Ua::contact_addr(&ok)).await;
        ok
    }

    /// The caller ACKs a final failure to its INVITE `id` (same branch, RFC 3261 §17.1.1.3).
    async fn caller_acks_failure(&mut self, id: &str, resp: &Message) {
        let to = self.engine();
        let mut ack = self.caller.invite(&format!("sip:+918047112233@{to}"), id);
        ack.start = callflow::sip::StartLine::Request {
            method: callflow::sip::Method::Ack,
            uri: ack.request_uri().unwrap().clone(),
        };
        ack.set_header(Name::CSeq, "1 ACK");
        ack.set_header(Name::To, resp.header(&Name::To).unwrap().to_string());
        ack.body = Default::default();
        ack.remove_header(&Name::ContentType);
        self.caller.send(&ack, to).await;
    }

    async fn caller_bye(&mut self, ok: &Message) {
        let branch = format!("bye{}", ok.call_id().unwrap());
        let bye = self.caller.in_dialog("BYE", ok, true, "", 2, &branch);
        self.caller.send(&bye, Ua::contact_addr(ok)).await;
    }
}

/// The WAV at `path` once callflow has written it (within 2 s).
async fn written(path: &std::path::Path) -> Vec<u8> {
    for _ in 0..40 {
        if let Ok(b) = std::fs::read(path) {
            return b;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the recording {} is not written", path.display());
}

/// The 16-bit samples of a WAV written by callflow (44-byte header).
fn samples(wav: &[u8]) -> Vec<i16> {
    wav[44..]
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// `ua` gets a BYE and answers 200.
async fn answer_bye(ua: &mut Ua) -> Message {
    let (bye, from) = ua.expect_request("BYE").await;
    ua.send(&ua.response(&bye, 200, "x", None), from).await;
    bye
}

fn rtpengine_at(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Sends `n` packets from `from` to `to`, 5 ms apart; how many `at` received.
async fn relay(from: &mut Rtp, to: u16, at: &Rtp, n: usize) -> usize {
    at.drain().await;
    for i in 0..n {
        from.send(&tone(440.0, i), rtpengine_at(to)).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut got = 0;
    while at.recv(200).await.is_some() {
        got += 1;
    }
    got
}

#[tokio::test]
async fn rtp_flows_through_rtpengine_and_the_handoff_does_not_reinvite_the_caller() {
    let Some(mut w) = world(Opts::default()).await else {
        return;
    };
    let (mut caller_rtp, mut bot_rtp, mut agent_rtp) =
        (Rtp::new().await, Rtp::new().await, Rtp::new().await);
    w.call("m1", &caller_rtp).await;
    let inv = World::answer(&mut w.bot, "bot1", &bot_rtp, "RTP/AVP", "").await;
    let ok = w.caller_answered().await;
    w.bot.expect_request("ACK").await;
    let offer = String::from_utf8_lossy(&inv.body).to_string();
    assert!(
        !offer.contains("a=ice-") && !offer.contains("a=candidate"),
        "ICE left: {offer}"
    );
    let (to_bot, to_caller) = (sdp_port(&inv.body), sdp_port(&ok.body));
    assert_ne!(
        to_bot, caller_rtp.port,
        "the bot must be offered rtpengine's port"
    );
    assert_ne!(
        to_caller, bot_rtp.port,
        "the caller must be answered with rtpengine's port"
    );
    assert!(!String::from_utf8_lossy(&ok.body).contains("a=ice-"));

    let sid = inv
        .header(&Name::parse("X-Callflow-CallSid"))
        .unwrap()
        .to_string();
    assert_eq!(
        w.rtp.calls().await,
        vec![sid],
        "the call is anchored under its sid"
    );
    assert_eq!(
        relay(&mut caller_rtp, to_caller, &bot_rtp, 10).await,
        10,
        "caller → bot"
    );
    assert_eq!(
        relay(&mut bot_rtp, to_bot, &caller_rtp, 10).await,
        10,
        "bot → caller"
    );

    // The bot hangs up: the flow hands the caller to the agent.
    let bye = w.bot.in_dialog("BYE", &inv, false, "bot1", 1, "bbye");
    w.bot.send(&bye, Ua::contact_addr(&inv)).await;
    assert_eq!(w.bot.expect_final("BYE").await.status(), Some(200));
    let ag = World::answer(&mut w.agent, "ag1", &agent_rtp, "RTP/AVP", "").await;
    assert!(!ag.body.is_empty(), "the agent is offered rtpengine's SDP");
    w.agent.expect_request("ACK").await;
    // No re-INVITE reaches the caller.
    assert!(
        w.caller.recv(0.5).await.is_none(),
        "the caller got a message"
    );
    let to_agent = sdp_port(&ag.body);
    assert_eq!(
        relay(&mut agent_rtp, to_agent, &caller_rtp, 10).await,
        10,
        "agent → caller"
    );
    assert_eq!(
        relay(&mut caller_rtp, to_caller, &agent_rtp, 10).await,
        10,
        "caller → agent"
    );
    // The old bot leg can no longer reach the caller.
    assert_eq!(
        relay(&mut bot_rtp, to_bot, &caller_rtp, 10).await,
        0,
        "old bot → caller"
    );
    assert_eq!(
        relay(&mut agent_rtp, to_agent, &caller_rtp, 5).await,
        5,
        "agent still heard"
    );

    w.caller_bye(&ok).await;
    assert_eq!(w.caller.expect_final("BYE").await.status(), Some(200));
    answer_bye(&mut w.agent).await;
    w.rtp.assert_empty().await;
}

#[tokio::test]
async fn srtp_towards_a_trunk_that_requires_it_and_plain_rtp_to_the_caller() {
    srtp_to_the_bot(Opts {
        srtp: true,
        ..Opts::default()
    })
    .await;
}

#[tokio::test]
async fn srtp_towards_a_destination_reached_over_tls() {
    srtp_to_the_bot(Opts {
        tls: true,
        ..Opts::default()
    })
    .await;
}

/// The bot is offered SDES-keyed SRTP and gets the caller's packets encrypted with
/// that key; the caller stays on plain RTP.
async fn srtp_to_the_bot(o: Opts) {
    let Some(mut w) = world(o).await else {
        return;
    };
    let (mut caller_rtp, bot_rtp) = (Rtp::new().await, Rtp::new().await);
    w.call("m2", &caller_rtp).await;
    let crypto =
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n";
    let inv = World::answer(&mut w.bot, "bot1", &bot_rtp, "RTP/SAVP", crypto).await;
    let ok = w.caller_answered().await;
    let offer = String::from_utf8_lossy(&inv.body).to_string();
    assert!(offer.contains(" RTP/SAVP "), "{offer}");
    let suites: Vec<&str> = offer
        .lines()
        .filter_map(|l| l.strip_prefix("a=crypto:"))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(suites.first(), Some(&"AES_CM_128_HMAC_SHA1_80"), "{offer}");
    assert!(!suites.iter().any(|s| s.starts_with("NULL")), "{offer}");
    assert!(!offer.contains("a=fingerprint"), "no DTLS: {offer}");
    let answer = String::from_utf8_lossy(&ok.body).to_string();
    assert!(
        answer.contains(" RTP/AVP ") && !answer.contains("a=crypto"),
        "{answer}"
    );

    // The caller's plain packets reach the bot as SRTP: same header, longer by the
    // 10-byte tag, payload encrypted.
    caller_rtp
        .send(&tone(440.0, 0), rtpengine_at(sdp_port(&ok.body)))
        .await;
    let got = bot_rtp.recv(1000).await.expect("SRTP at the bot");
    assert_eq!(got.len(), 12 + 160 + 10);
    assert_ne!(
        &got[12..172],
        &tone(440.0, 0)[..],
        "payload sent in the clear"
    );
    let key = offer
        .lines()
        .find_map(|l| l.strip_prefix("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"))
        .unwrap();
    assert_eq!(
        support::srtp::decrypt(key, &got).as_deref(),
        Some(&tone(440.0, 0)[..])
    );
    w.caller_bye(&ok).await;
    answer_bye(&mut w.bot).await;
    w.rtp.assert_empty().await;
}

#[tokio::test]
async fn a_dual_recording_has_the_caller_left_and_the_far_party_right() {
    let Some(mut w) = world(Opts {
        record: true,
        ..Opts::default()
    })
    .await
    else {
        return;
    };
    let (mut caller_rtp, mut bot_rtp) = (Rtp::new().await, Rtp::new().await);
    w.call("m3", &caller_rtp).await;
    let inv = World::answer(&mut w.bot, "bot1", &bot_rtp, "RTP/AVP", "").await;
    let ok = w.caller_answered().await;
    let sid = inv
        .header(&Name::parse("X-Callflow-CallSid"))
        .unwrap()
        .to_string();
    let (to_bot, to_caller) = (sdp_port(&inv.body), sdp_port(&ok.body));
    for i in 0..50 {
        caller_rtp
            .send(&tone(440.0, i), rtpengine_at(to_caller))
            .await;
        bot_rtp.send(&tone(1000.0, i), rtpengine_at(to_bot)).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    w.caller_bye(&ok).await;
    answer_bye(&mut w.bot).await;
    w.rtp.assert_empty().await;
    let wav_path = w.rec.path().join("_operator").join(format!("{sid}.wav"));
    let wav = written(&wav_path).await;
    assert_eq!(&wav[..4], b"RIFF");
    assert_eq!(u16::from_le_bytes([wav[22], wav[23]]), 2, "two channels");
    assert_eq!(
        u32::from_le_bytes([wav[24], wav[25], wav[26], wav[27]]),
        8000
    );
    let samples = samples(&wav);
    let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
    let right: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();
    assert!(left.len() >= 7000, "{} samples", left.len());
    let (l, r) = (frequency(&left), frequency(&right));
    assert!((400.0..480.0).contains(&l), "left {l} Hz");
    assert!((920.0..1080.0).contains(&r), "right {r} Hz");
    // The stored record points at it.
    let record = w
        .server
        .store()
        .unwrap()
        .call_record(&sid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        record["recording_url"]
            .as_str()
            .map(std::path::PathBuf::from),
        Some(std::path::absolute(&wav_path).unwrap())
    );
}

#[tokio::test]
async fn a_call_without_rtp_is_hung_up_after_the_media_timeout() {
    let Some(mut w) = world(Opts {
        timeout: Some("2s"),
        ..Opts::default()
    })
    .await
    else {
        return;
    };
    let (caller_rtp, bot_rtp) = (Rtp::new().await, Rtp::new().await);
    w.call("m4", &caller_rtp).await;
    let inv = World::answer(&mut w.bot, "bot1", &bot_rtp, "RTP/AVP", "").await;
    w.caller_answered().await;
    let sid = inv
        .header(&Name::parse("X-Callflow-CallSid"))
        .unwrap()
        .to_string();
    let started = std::time::Instant::now();
    let (bye, _) = w.caller.expect_request("BYE").await;
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert!(bye.call_id().is_ok());
    answer_bye(&mut w.bot).await;
    w.rtp.assert_empty().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let record = w
        .server
        .store()
        .unwrap()
        .call_record(&sid)
        .await
        .unwrap()
        .unwrap();
    assert!(record.to_string().contains("media timeout"), "{record}");
}

#[tokio::test]
async fn rtpengine_down_refuses_new_calls_with_503_and_back_up_serves_them() {
    let Some(mut w) = world(Opts::default()).await else {
        return;
    };
    let (caller_rtp, bot_rtp) = (Rtp::new().await, Rtp::new().await);
    // A call in progress when rtpengine dies.
    w.call("m5a", &caller_rtp).await;
    let inv = World::answer(&mut w.bot, "bot1", &bot_rtp, "RTP/AVP", "").await;
    let ok = w.caller_answered().await;
    w.bot.expect_request("ACK").await;
    w.rtp.stop();
    w.call("m5b", &caller_rtp).await;
    let refused = w.caller.expect_final("INVITE").await;
    assert_eq!(refused.status(), Some(503));
    w.caller_acks_failure("m5b", &refused).await;
    // The engine keeps serving: the call in progress hangs up cleanly.
    w.caller_bye(&ok).await;
    assert_eq!(w.caller.expect_final("BYE").await.status(), Some(200));
    answer_bye(&mut w.bot).await;
    let _ = inv;
    w.rtp.restart().await;
    // Pinged back within a few seconds; then calls are anchored again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    w.call("m5c", &caller_rtp).await;
    World::answer(&mut w.bot, "bot2", &bot_rtp, "RTP/AVP", "").await;
    let ok = w.caller_answered().await;
    assert_eq!(w.rtp.calls().await.len(), 1);
    w.caller_bye(&ok).await;
    answer_bye(&mut w.bot).await;
    w.rtp.assert_empty().await;
    let metrics = callflow::metrics::global().encode();
    assert!(
        metrics.contains("reason=\"media_unavailable\""),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_dead_first_rtpengine_fails_over_to_the_next() {
    let Some(mut w) = world(Opts {
        dead_first: true,
        ..Opts::default()
    })
    .await
    else {
        return;
    };
    let (mut caller_rtp, bot_rtp) = (Rtp::new().await, Rtp::new().await);
    for id in ["m6a", "m6b", "m6c"] {
        w.call(id, &caller_rtp).await;
        World::answer(&mut w.bot, "bot1", &bot_rtp, "RTP/AVP", "").await;
        let ok = w.caller_answered().await;
        assert_eq!(
            relay(&mut caller_rtp, sdp_port(&ok.body), &bot_rtp, 3).await,
            3
        );
        w.caller_bye(&ok).await;
        answer_bye(&mut w.bot).await;
    }
    w.rtp.assert_empty().await;
}

#[tokio::test]
async fn cancel_and_refusal_leave_no_call_in_rtpengine() {
    let Some(mut w) = world(Opts::default()).await else {
        return;
    };
    let caller_rtp = Rtp::new().await;
    // The caller cancels while the bot rings.
    w.call("m7a", &caller_rtp).await;
    let (inv, from) = w.bot.expect_request("INVITE").await;
    w.bot
        .send(&w.bot.response(&inv, 180, "b", None), from)
        .await;
    let _ringing = w.caller.expect_response().await;
    let to = w.engine();
    let mut cancel = w.caller.invite(&format!("sip:+918047112233@{to}"), "m7a");
    cancel.start = callflow::sip::StartLine::Request {
        method: callflow::sip::Method::Cancel,
        uri: cancel.request_uri().unwrap().clone(),
    };
    cancel.set_header(Name::CSeq, "1 CANCEL");
    cancel.body = Default::default();
    cancel.remove_header(&Name::ContentType);
    w.caller.send(&cancel, to).await;
    let (bcancel, bfrom) = w.bot.expect_request("CANCEL").await;
    w.bot
        .send(&w.bot.response(&bcancel, 200, "b", None), bfrom)
        .await;
    w.bot
        .send(&w.bot.response(&inv, 487, "b", None), bfrom)
        .await;
    w.rtp.assert_empty().await;
    // Bot and agent both refuse: the flow ends with the caller refused.
    w.call("m7b", &caller_rtp).await;
    let (inv, from) = w.bot.expect_request("INVITE").await;
    w.bot
        .send(&w.bot.response(&inv, 486, "b", None), from)
        .await;
    let fin = loop {
        let r = w.caller.expect_response().await;
        if r.status().unwrap_or(0) >= 200
            && r.header(&Name::CSeq).is_some_and(|c| c.contains("INVITE"))
        {
            break r;
        }
    };
    assert!(fin.status().unwrap_or(0) >= 400, "{fin:?}");
    w.caller_acks_failure("m7b", &fin).await;
    w.rtp.assert_empty().await;
}

#[tokio::test]
async fn click_to_call_recorded_through_the_api_is_served_to_its_account_only() {
    use reqwest::StatusCode;
    use support::node::*;
    let Some(rtp) = Rtpengine::start().await else {
        return;
    };
    let (_partner, paddr) = support::partner::partner().await;
    let mut carrier = Ua::new_at(Transport::Udp, "carrier", None, "127.0.0.2").await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("c.db").display());
    let text = format!(
        "{}media: {{ rtpengine: [\"udp://{}\"] }}\nrecordings: {{ dir: \"{}\" }}\n",
        config(&store, carrier.addr),
        rtp.ng,
        dir.path().join("rec").display()
    );
    let node = start(&text, paddr).await;
    let (a, other) = (node.account("rec").await, node.account("other").await);
    let mut bot = Ua::new(Transport::Tcp, "bot", None).await;
    let did = fresh_number();
    let trunk = pstn_trunk(&node, &a, "bots", &did, bot.addr).await;
    let to = format!("sip:{trunk}");
    let form = [
        ("From", "+919845012345"),
        ("To", to.as_str()),
        ("CallerId", did.as_str()),
        ("Record", "true"),
        ("RecordingChannels", "single"),
    ];
    let (s, v) = v1_post(&node, &a, "/Calls/connect.json", &form).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let sid = v["Call"]["Sid"].as_str().unwrap().to_string();
    // The customer (first party) answers with its offer; the bot gets rtpengine's.
    let (mut customer_rtp, mut bot_rtp) = (Rtp::new().await, Rtp::new().await);
    let (inv, from) = carrier.expect_request("INVITE").await;
    assert!(inv.body.is_empty());
    let offer = customer_rtp.sdp("RTP/AVP");
    carrier
        .send(&carrier.response(&inv, 200, "cu1", Some(&offer)), from)
        .await;
    let (binv, bfrom) = bot.expect_request("INVITE").await;
    assert_ne!(sdp_port(&binv.body), customer_rtp.port);
    bot.send(
        &bot.response(&binv, 200, "b1", Some(&bot_rtp.sdp("RTP/AVP"))),
        bfrom,
    )
    .await;
    let (ack, _) = carrier.expect_request("ACK").await;
    let to_customer = sdp_port(&ack.body);
    assert_ne!(
        to_customer, bot_rtp.port,
        "the customer is answered with rtpengine's port"
    );
    for i in 0..25 {
        customer_rtp
            .send(&tone(440.0, i), rtpengine_at(to_customer))
            .await;
        bot_rtp
            .send(&tone(1000.0, i), rtpengine_at(sdp_port(&binv.body)))
            .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let bye = bot.in_dialog("BYE", &binv, false, "b1", 1, "bbye");
    bot.send(&bye, Ua::contact_addr(&binv)).await;
    let (cbye, cfrom) = carrier.expect_request("BYE").await;
    carrier
        .send(&carrier.response(&cbye, 200, "cu1", None), cfrom)
        .await;
    let call = until_call(&node, &a, &sid, |c| {
        c["Status"] == "completed" && !c["RecordingUrl"].is_null()
    })
    .await;
    let url = call["RecordingUrl"]
        .as_str()
        .expect("RecordingUrl")
        .to_string();
    assert_eq!(
        url,
        format!("{}/v1/Accounts/{}/Recordings/{sid}.wav", node.base, a.sid)
    );
    let r = node
        .http
        .get(&url)
        .basic_auth(&a.key, Some(&a.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "audio/wav");
    let wav = r.bytes().await.unwrap();
    assert_eq!(u16::from_le_bytes([wav[22], wav[23]]), 1, "single channel");
    assert!(wav.len() > 44 + 2 * 3000, "{} bytes", wav.len());
    let anonymous = node.http.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let theirs = url.replace(&a.sid, &other.sid);
    let r = node
        .http
        .get(&theirs)
        .basic_auth(&other.key, Some(&other.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    rtp.assert_empty().await;
}

#[tokio::test]
async fn parallel_ringing_anchors_each_fork_and_bridges_the_winner() {
    let flow = "flow: f\nstart: both\napplets:\n  both:\n    connect: { to: [\"sip:BOT\", \"sip:AGENT\"], parallel_ringing: true }\n    next: bye\n  bye:\n    hangup: {}\n";
    let Some(mut w) = world(Opts {
        flow: Some(flow),
        ..Opts::default()
    })
    .await
    else {
        return;
    };
    let (mut caller_rtp, agent_rtp) = (Rtp::new().await, Rtp::new().await);
    w.call("m8", &caller_rtp).await;
    let (binv, bfrom) = w.bot.expect_request("INVITE").await;
    w.bot
        .send(&w.bot.response(&binv, 180, "b", None), bfrom)
        .await;
    let ag = World::answer(&mut w.agent, "ag1", &agent_rtp, "RTP/AVP", "").await;
    assert_ne!(
        sdp_port(&binv.body),
        sdp_port(&ag.body),
        "each fork has its own port"
    );
    let ok = w.caller_answered().await;
    w.agent.expect_request("ACK").await;
    let (cancel, cfrom) = w.bot.expect_request("CANCEL").await;
    w.bot
        .send(&w.bot.response(&cancel, 200, "b", None), cfrom)
        .await;
    w.bot
        .send(&w.bot.response(&binv, 487, "b", None), bfrom)
        .await;
    assert_eq!(
        relay(&mut caller_rtp, sdp_port(&ok.body), &agent_rtp, 5).await,
        5
    );
    w.caller_bye(&ok).await;
    answer_bye(&mut w.agent).await;
    w.rtp.assert_empty().await;
}

#[tokio::test]
async fn max_duration_and_a_hard_stop_leave_no_call_in_rtpengine() {
    let flow = "flow: f\nstart: bot\napplets:\n  bot:\n    connect: { to: \"sip:BOT\", max_duration: 1s }\n    next: bye\n  bye:\n    hangup: {}\n";
    let Some(mut w) = world(Opts {
        flow: Some(flow),
        ..Opts::default()
    })
    .await
    else {
        return;
    };
    let (caller_rtp, bot_rtp) = (Rtp::new().await, Rtp::new().await);
    w.call("m9a", &caller_rtp).await;
    World::answer(&mut w.bot, "bot1", &bot_rtp, "RTP/AVP", "").await;
    w.caller_answered().await;
    let (bye, from) = w.caller.expect_request("BYE").await;
    w.caller
        .send(&w.caller.response(&bye, 200, "x", None), from)
        .await;
    answer_bye(&mut w.bot).await;
    w.rtp.assert_empty().await;
    // A call in progress when the operator stops callflow for good.
    w.call("m9b", &caller_rtp).await;
    World::answer(&mut w.bot, "bot2", &bot_rtp, "RTP/AVP", "").await;
    w.caller_answered().await;
    assert_eq!(w.rtp.calls().await.len(), 1);
    let caller = &mut w.caller;
    let bot = &mut w.bot;
    let answer = async {
        let (bye, from) = caller.expect_request("BYE").await;
        caller
            .send(&caller.response(&bye, 200, "x", None), from)
            .await;
        answer_bye(bot).await;
    };
    tokio::join!(w.server.drain(async {}), answer);
    w.rtp.assert_empty().await;
}

#[tokio::test]
async fn the_dynamic_url_asks_for_a_single_channel_recording() {
    let flow = "flow: f\nstart: c\napplets:\n  c:\n    connect: { dynamic_url: \"http://WEBHOOK/route\" }\n    next: bye\n  bye:\n    hangup: {}\n";
    let Some(mut w) = world(Opts {
        flow: Some(flow),
        ..Opts::default()
    })
    .await
    else {
        return;
    };
    let bot_uri = format!("sip:{}", w.bot.addr);
    w.partner.answer(
        "route",
        200,
        &serde_json::json!({ "destination": { "uris": [bot_uri] }, "record": true, "recording_channels": "single" }).to_string(),
    );
    let (mut caller_rtp, bot_rtp) = (Rtp::new().await, Rtp::new().await);
    w.call("m10", &caller_rtp).await;
    let inv = World::answer(&mut w.bot, "bot1", &bot_rtp, "RTP/AVP", "").await;
    let ok = w.caller_answered().await;
    let sid = inv
        .header(&Name::parse("X-Callflow-CallSid"))
        .unwrap()
        .to_string();
    for i in 0..25 {
        caller_rtp
            .send(&tone(440.0, i), rtpengine_at(sdp_port(&ok.body)))
            .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    w.caller_bye(&ok).await;
    answer_bye(&mut w.bot).await;
    w.rtp.assert_empty().await;
    let path = w.rec.path().join("_operator").join(format!("{sid}.wav"));
    let wav = written(&path).await;
    assert_eq!(u16::from_le_bytes([wav[22], wav[23]]), 1, "single channel");
    let samples = samples(&wav);
    let f = frequency(&samples);
    assert!((400.0..480.0).contains(&f), "{f} Hz");
}

#[tokio::test]
async fn a_caller_that_never_acks_is_hung_up_and_leaves_nothing_in_rtpengine() {
    let Some(mut w) = world(Opts::default()).await else {
        return;
    };
    let (caller_rtp, bot_rtp) = (Rtp::new().await, Rtp::new().await);
    w.call("m11", &caller_rtp).await;
    World::answer(&mut w.bot, "bot1", &bot_rtp, "RTP/AVP", "").await;
    // The 200 is retransmitted and never ACKed: after 64·T1 both legs go.
    answer_bye(&mut w.bot).await;
    w.rtp.assert_empty().await;
}
