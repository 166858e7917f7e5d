//! The B2BUA end to end over real sockets: a caller, a bot and an agent (the test UA)
//! against the engine, on UDP, TCP and TLS.

mod support;

use std::time::Duration;

use callflow::runtime::{LegEnd, LegOutcome, LegRequest};
use callflow::sip::{Message, Method, Name, Transport, Uri};
use support::{TestCert, TestEngine, Ua, answer, handler, test_cert};
use tokio::sync::mpsc;

/// A handler that bridges the caller to each URI in turn: the next one when the far
/// end hangs up, the REFER target when it transfers. Reports every leg result.
fn bridge(uris: Vec<String>, report: mpsc::UnboundedSender<String>) -> callflow::call::CallHandler {
    handler(move |mut call| {
        let (uris, report) = (uris.clone(), report.clone());
        async move {
            if call.accept_offer().await.is_err() {
                return;
            }
            let mut queue: std::collections::VecDeque<String> = uris.into();
            while let Some(uri) = queue.pop_front() {
                let Ok(Uri::Sip(sip)) = Uri::parse(&uri) else {
                    return;
                };
                let outcome = call
                    .dial(LegRequest {
                        uri: sip,
                        headers: vec![("X-Callflow-CallSid".into(), call.sid.clone())],
                        ring_timeout: Duration::from_millis(1500),
                        caller_id: None,
                        media: Default::default(),
                    })
                    .await;
                let _ = report.send(format!("{outcome:?}"));
                match outcome {
                    LegOutcome::Answered => {}
                    LegOutcome::Rejected(s) => return call.hangup(s).await,
                    LegOutcome::NoAnswer => return call.hangup(480).await,
                    LegOutcome::Failed(_) => return call.hangup(503).await,
                    LegOutcome::CallerGone => return,
                }
                let end = call.wait(Duration::from_secs(60)).await;
                let _ = report.send(format!("{end:?}"));
                match end {
                    LegEnd::FarHangup => continue,
                    LegEnd::Transfer { refer_to, .. } => queue.push_front(refer_to),
                    LegEnd::CallerHangup
                    | LegEnd::MaxDuration
                    | LegEnd::Redirected
                    | LegEnd::MediaTimeout(_) => return,
                }
            }
            call.hangup(480).await;
        }
    })
}

fn uri_of(ua: &Ua) -> String {
    let t = match ua.transport {
        Transport::Udp => String::new(),
        t => format!(";transport={}", t.as_str().to_ascii_lowercase()),
    };
    format!("sip:{}@{}{t}", ua.user, ua.addr)
}

struct Setup {
    engine: TestEngine,
    caller: Ua,
    far: Vec<Ua>,
    report: mpsc::UnboundedReceiver<String>,
    _cert: Option<TestCert>,
}

async fn setup(transport: Transport, far_users: &[&str]) -> Setup {
    let cert = (transport == Transport::Tls).then(test_cert);
    let mut far = Vec::new();
    for u in far_users {
        far.push(Ua::new(transport, u, cert.as_ref()).await);
    }
    let (tx, report) = mpsc::unbounded_channel();
    let engine =
        TestEngine::start(bridge(far.iter().map(uri_of).collect(), tx), cert.as_ref()).await;
    let caller = Ua::new(transport, "caller", cert.as_ref()).await;
    Setup {
        engine,
        caller,
        far,
        report,
        _cert: cert,
    }
}

/// The caller sends INVITE; returns it.
async fn call_in(s: &mut Setup, call_id: &str) -> Message {
    let to = s.engine.addr(s.caller.transport);
    let invite = s.caller.invite(&format!("sip:+918047112233@{to}"), call_id);
    s.caller.send(&invite, to).await;
    invite
}

/// The far end `i` answers the INVITE it gets (180, then 200 with SDP); the caller
/// gets 180 and 200 and ACKs. Returns (INVITE at the far end, 200 at the caller).
async fn answer_at(s: &mut Setup, i: usize) -> (Message, Message) {
    let (inv, from) = s.far[i].expect_request("INVITE").await;
    let body = String::from_utf8_lossy(&inv.body).to_string();
    assert!(
        body.contains("PCMA") && !body.contains("opus"),
        "offer filtered: {body}"
    );
    assert!(inv.header(&Name::parse("X-Callflow-CallSid")).is_some());
    let ringing = s.far[i].response(&inv, 180, "far1", None);
    s.far[i].send(&ringing, from).await;
    let r = s.caller.expect_response().await;
    assert_eq!(r.status(), Some(180));
    // RFC 3581: the engine filled in the rport our Via asked for.
    // (Over TCP and TLS the port is the connection's source port instead.)
    if s.caller.transport == Transport::Udp {
        let via = r.top_via().unwrap();
        assert_eq!(
            via.param("rport"),
            Some(Some(s.caller.addr.port().to_string().as_str()))
        );
    }
    let ok = s.far[i].response(&inv, 200, "far1", Some(&answer(41000)));
    s.far[i].send(&ok, from).await;
    let ok_at_caller = s.caller.expect_final("INVITE").await;
    assert_eq!(ok_at_caller.status(), Some(200));
    assert!(String::from_utf8_lossy(&ok_at_caller.body).contains("m=audio 41000"));
    let ack = s
        .caller
        .in_dialog("ACK", &ok_at_caller, true, "", 1, "ack1");
    s.caller.send(&ack, Ua::contact_addr(&ok_at_caller)).await;
    let (far_ack, _) = s.far[i].expect_request("ACK").await;
    assert_eq!(far_ack.cseq().unwrap().seq, 1);
    (inv, ok_at_caller)
}

async fn caller_hangs_up(s: &mut Setup, ok: &Message, far: usize, cseq: u32) {
    let bye = s.caller.in_dialog("BYE", ok, true, "", cseq, "bye1");
    s.caller.send(&bye, Ua::contact_addr(ok)).await;
    let (far_bye, from) = s.far[far].expect_request("BYE").await;
    let r = s.far[far].response(&far_bye, 200, "far1", None);
    s.far[far].send(&r, from).await;
    assert_eq!(s.caller.expect_final("BYE").await.status(), Some(200));
}

async fn all_routes_gone(s: &Setup) {
    for _ in 0..100 {
        if s.engine.engine.active_routes() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("routes left: {}", s.engine.engine.active_routes());
}

async fn basic_call(transport: Transport) {
    let mut s = setup(transport, &["bot"]).await;
    call_in(&mut s, "basic").await;
    let (_, ok) = answer_at(&mut s, 0).await;
    caller_hangs_up(&mut s, &ok, 0, 2).await;
    assert_eq!(s.report.recv().await.unwrap(), "Answered");
    assert_eq!(s.report.recv().await.unwrap(), "CallerHangup");
    all_routes_gone(&s).await;
}

#[tokio::test]
async fn basic_call_over_udp() {
    basic_call(Transport::Udp).await;
}

#[tokio::test]
async fn basic_call_over_tcp() {
    basic_call(Transport::Tcp).await;
}

#[tokio::test]
async fn basic_call_over_tls() {
    basic_call(Transport::Tls).await;
}

/// A second 2xx to the far leg's INVITE from another branch (a fork downstream,
/// another To tag) is ACKed and hung up (RFC 3261 §13.2.2.4); the call stays on
/// the branch that answered first.
#[tokio::test]
async fn a_forked_second_answer_is_acked_and_hung_up() {
    let mut s = setup(Transport::Udp, &["bot"]).await;
    call_in(&mut s, "forked").await;
    let (inv, ok) = answer_at(&mut s, 0).await;
    assert_eq!(s.report.recv().await.unwrap(), "Answered");
    let to = s.engine.addr(Transport::Udp);
    let other = s.far[0].response(&inv, 200, "far2", Some(&answer(41002)));
    s.far[0].send(&other, to).await;
    let tag_of = |m: &Message| m.to_header().unwrap().tag().map(str::to_string);
    let (ack, _) = s.far[0].expect_request("ACK").await;
    assert_eq!(tag_of(&ack).as_deref(), Some("far2"));
    let (bye, from) = s.far[0].expect_request("BYE").await;
    assert_eq!(tag_of(&bye).as_deref(), Some("far2"));
    s.far[0]
        .send(&s.far[0].response(&bye, 200, "far2", None), from)
        .await;
    // The first branch's call goes on, and ends as usual.
    caller_hangs_up(&mut s, &ok, 0, 2).await;
    assert_eq!(s.report.recv().await.unwrap(), "CallerHangup");
}

/// A SIP-I carrier's INVITE (RFC 5621: SDP and ISUP in one `multipart/mixed`
/// body) is answered like any other: the far end gets the SDP alone, filtered, as
/// `application/sdp`, and the call connects.
#[tokio::test]
async fn a_multipart_offer_reaches_the_far_end_as_its_sdp() {
    let mut s = setup(Transport::Udp, &["bot"]).await;
    let to = s.engine.addr(Transport::Udp);
    let mut invite = s.caller.invite(&format!("sip:+918047112233@{to}"), "sip-i");
    let sdp = invite.body.clone();
    let mut body = b"--unique-boundary-1\r\nContent-Type: application/sdp\r\n\r\n".to_vec();
    body.extend_from_slice(&sdp);
    body.extend_from_slice(
        b"\r\n--unique-boundary-1\r\nContent-Type: application/ISUP;version=itu-t92+\r\n\
          Content-Disposition: signal;handling=optional\r\n\r\n\x01\x00\x49\x00\x00\x03\x02\x00\x07\r\n\
          --unique-boundary-1--\r\n",
    );
    invite.set_body(
        "multipart/mixed;boundary=unique-boundary-1",
        bytes::Bytes::from(body),
    );
    s.caller.send(&invite, to).await;
    let (inv, _) = answer_at(&mut s, 0).await;
    assert_eq!(inv.content_type(), Some("application/sdp"));
    assert!(inv.body.starts_with(b"v=0"), "{:?}", inv.body);
    assert!(!inv.body.windows(4).any(|w| w == b"ISUP"));
    assert_eq!(s.report.recv().await.unwrap(), "Answered");
}

#[tokio::test]
async fn caller_cancels_while_ringing() {
    let mut s = setup(Transport::Udp, &["bot"]).await;
    let invite = call_in(&mut s, "cancel").await;
    let (inv, from) = s.far[0].expect_request("INVITE").await;
    s.far[0]
        .send(&s.far[0].response(&inv, 180, "far1", None), from)
        .await;
    assert_eq!(s.caller.expect_response().await.status(), Some(180));
    let mut cancel = invite.clone();
    cancel.start = callflow::sip::StartLine::Request {
        method: Method::Cancel,
        uri: invite.request_uri().unwrap().clone(),
    };
    cancel.set_header(Name::CSeq, "1 CANCEL");
    cancel.body = Default::default();
    cancel.remove_header(&Name::ContentType);
    let to = s.engine.addr(Transport::Udp);
    s.caller.send(&cancel, to).await;
    // The far end sees CANCEL, answers 200 and 487.
    let (far_cancel, from) = s.far[0].expect_request("CANCEL").await;
    s.far[0]
        .send(&s.far[0].response(&far_cancel, 200, "far1", None), from)
        .await;
    s.far[0]
        .send(&s.far[0].response(&inv, 487, "far1", None), from)
        .await;
    s.far[0].expect_request("ACK").await;
    // The caller gets 200 for its CANCEL and 487 for its INVITE.
    let mut statuses = vec![];
    while statuses.len() < 2 {
        let r = s.caller.expect_response().await;
        let key = (r.status().unwrap(), r.cseq().unwrap().method.to_string());
        if !statuses.contains(&key) && key.0 >= 200 {
            statuses.push(key);
        }
    }
    statuses.sort();
    assert_eq!(
        statuses,
        vec![(200, "CANCEL".into()), (487, "INVITE".into())]
    );
    assert_eq!(s.report.recv().await.unwrap(), "CallerGone");
    all_routes_gone(&s).await;
}

async fn far_rejects(status: u16) {
    let mut s = setup(Transport::Udp, &["bot"]).await;
    call_in(&mut s, &format!("reject{status}")).await;
    let (inv, from) = s.far[0].expect_request("INVITE").await;
    s.far[0]
        .send(&s.far[0].response(&inv, status, "far1", None), from)
        .await;
    s.far[0].expect_request("ACK").await;
    let r = s.caller.expect_final("INVITE").await;
    assert_eq!(r.status(), Some(status));
    assert_eq!(
        s.report.recv().await.unwrap(),
        format!("Rejected({status})")
    );
}

#[tokio::test]
async fn far_end_busy_486() {
    far_rejects(486).await;
}

#[tokio::test]
async fn far_end_declines_603() {
    far_rejects(603).await;
}

#[tokio::test]
async fn far_bye_keeps_caller_then_second_leg_is_retargeted() {
    let mut s = setup(Transport::Udp, &["bot", "agent"]).await;
    call_in(&mut s, "retarget").await;
    let (bot_inv, _) = answer_at(&mut s, 0).await;
    let bot_from = s.engine.addr(Transport::Udp);
    // The bot hangs up; the caller stays.
    let bye = s.far[0].in_dialog("BYE", &bot_inv, false, "far1", 10, "botbye");
    s.far[0].send(&bye, bot_from).await;
    assert_eq!(s.far[0].expect_final("BYE").await.status(), Some(200));
    assert_eq!(s.report.recv().await.unwrap(), "Answered");
    assert_eq!(s.report.recv().await.unwrap(), "FarHangup");
    // RFC 3725: the agent is invited without SDP and offers.
    let (agent_inv, agent_from) = s.far[1].expect_request("INVITE").await;
    assert!(
        agent_inv.body.is_empty(),
        "the new leg is invited without SDP"
    );
    let ok = s.far[1].response(&agent_inv, 200, "agent1", Some(&answer(42000)));
    s.far[1].send(&ok, agent_from).await;
    // The caller is re-INVITEd with the agent's offer and answers.
    let (reinvite, engine_from) = s.caller.expect_request("INVITE").await;
    assert!(String::from_utf8_lossy(&reinvite.body).contains("m=audio 42000"));
    let caller_answer = s.caller.response(&reinvite, 200, "x", Some(&answer(40000)));
    s.caller.send(&caller_answer, engine_from).await;
    s.caller.expect_request("ACK").await;
    // The agent's ACK carries the caller's answer.
    let (agent_ack, _) = s.far[1].expect_request("ACK").await;
    assert!(String::from_utf8_lossy(&agent_ack.body).contains("m=audio 40000"));
    assert_eq!(s.report.recv().await.unwrap(), "Answered");
    // The agent did not see that ACK (say) and sends its 200 again: the same ACK,
    // answer and all, goes again.
    s.far[1].send(&ok, agent_from).await;
    let (again, _) = s.far[1].expect_request("ACK").await;
    assert_eq!(again.cseq().unwrap().seq, agent_ack.cseq().unwrap().seq);
    assert_eq!(again.body, agent_ack.body);
    // The caller hangs up (its dialog's To tag is the engine's, From its own).
    let (_, ok_caller) = (0, reinvite_dialog_view(&reinvite));
    let bye = s.caller.in_dialog("BYE", &ok_caller, true, "", 3, "cbye");
    s.caller.send(&bye, engine_from).await;
    let (agent_bye, from) = s.far[1].expect_request("BYE").await;
    s.far[1]
        .send(&s.far[1].response(&agent_bye, 200, "agent1", None), from)
        .await;
    assert_eq!(s.caller.expect_final("BYE").await.status(), Some(200));
    all_routes_gone(&s).await;
}

/// The caller's view of its dialog from a re-INVITE the engine sent it: From (ours)
/// is the request's To, To (the engine's) is its From, the target its Contact.
fn reinvite_dialog_view(reinvite: &Message) -> Message {
    let mut m = reinvite.clone();
    let (from, to) = (
        reinvite.header(&Name::To).unwrap().to_string(),
        reinvite.header(&Name::From).unwrap().to_string(),
    );
    m.set_header(Name::From, from);
    m.set_header(Name::To, to);
    m
}

#[tokio::test]
async fn refer_from_the_bot_hands_the_caller_to_the_agent() {
    let mut s = setup(Transport::Udp, &["bot", "agent"]).await;
    // Only the bot is dialled first; the agent comes from the REFER.
    let agent_uri = uri_of(&s.far[1]);
    let (tx, report) = mpsc::unbounded_channel();
    s.engine = TestEngine::start(bridge(vec![uri_of(&s.far[0])], tx), None).await;
    s.report = report;
    call_in(&mut s, "refer").await;
    let (bot_inv, _) = answer_at(&mut s, 0).await;
    let bot_from = s.engine.addr(Transport::Udp);
    let mut refer = s.far[0].in_dialog("REFER", &bot_inv, false, "far1", 11, "refer1");
    refer.push_header(Name::ReferTo, format!("<{agent_uri}>"));
    refer.push_header(Name::parse("X-Reason"), "talk-to-human");
    s.far[0].send(&refer, bot_from).await;
    assert_eq!(s.far[0].expect_final("REFER").await.status(), Some(202));
    for frag in ["SIP/2.0 100 Trying", "SIP/2.0 200 OK"] {
        let (notify, from) = s.far[0].expect_request("NOTIFY").await;
        assert_eq!(notify.header(&Name::Event), Some("refer"));
        assert!(String::from_utf8_lossy(&notify.body).starts_with(frag));
        s.far[0]
            .send(&s.far[0].response(&notify, 200, "far1", None), from)
            .await;
    }
    let (bye, from) = s.far[0].expect_request("BYE").await;
    s.far[0]
        .send(&s.far[0].response(&bye, 200, "far1", None), from)
        .await;
    assert_eq!(s.report.recv().await.unwrap(), "Answered");
    let transfer = s.report.recv().await.unwrap();
    assert!(
        transfer.contains("Transfer") && transfer.contains("talk-to-human"),
        "{transfer}"
    );
    let (agent_inv, _) = s.far[1].expect_request("INVITE").await;
    assert!(agent_inv.body.is_empty());
}

#[tokio::test]
async fn udp_loss_is_recovered_by_retransmission() {
    let mut s = setup(Transport::Udp, &["bot"]).await;
    // The bot loses the first INVITE (Timer A resends it); the caller loses the first
    // 200 (the engine resends its 2xx until the ACK).
    s.far[0]
        .drop_next
        .lock()
        .unwrap()
        .push("INVITE sip:".into());
    s.caller
        .drop_next
        .lock()
        .unwrap()
        .push("SIP/2.0 200".into());
    call_in(&mut s, "loss").await;
    let (_, ok) = answer_at(&mut s, 0).await;
    caller_hangs_up(&mut s, &ok, 0, 2).await;
    assert!(s.far[0].drop_next.lock().unwrap().is_empty());
    assert!(s.caller.drop_next.lock().unwrap().is_empty());
}

#[tokio::test]
async fn options_and_unknown_requests_outside_dialogs() {
    let mut s = setup(Transport::Udp, &["bot"]).await;
    let to = s.engine.addr(Transport::Udp);
    let me = s.caller.addr;
    let base = |method: &str, branch: &str| {
        format!(
            "{method} sip:callflow@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK{branch}\r\nMax-Forwards: 70\r\nFrom: <sip:p@x>;tag=1\r\nTo: <sip:callflow@{to}>\r\nCall-ID: {branch}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n",
            me
        )
    };
    for (method, status) in [
        ("OPTIONS", 200),
        ("FROBNICATE", 501),
        ("BYE", 481),
        ("REGISTER", 405),
    ] {
        s.caller.send_raw(base(method, method).as_bytes(), to).await;
        let r = s.caller.expect_final(method).await;
        assert_eq!(r.status(), Some(status), "{method}");
        // RFC 3261 §8.2.6.2: a final response outside a dialog carries a To tag.
        assert!(r.to_header().unwrap().tag().is_some(), "{method}: To tag");
        if method == "OPTIONS" {
            assert!(r.header(&Name::Allow).unwrap().contains("REFER"));
        }
    }
    // A Request-URI in a scheme callflow does not route: 416.
    let urn = base("INVITE", "urn416").replace(
        &format!("INVITE sip:callflow@{to} "),
        "INVITE urn:service:sos ",
    );
    s.caller.send_raw(urn.as_bytes(), to).await;
    let r = s.caller.expect_final("INVITE").await;
    assert_eq!(r.status(), Some(416));
    assert!(r.to_header().unwrap().tag().is_some());
    // An INVITE that may not be forwarded again (a loop): 483 Too Many Hops.
    let spent = base("INVITE", "mf0").replace("Max-Forwards: 70\r\n", "Max-Forwards: 0\r\n");
    s.caller.send_raw(spent.as_bytes(), to).await;
    let r = s.caller.expect_final("INVITE").await;
    assert_eq!(r.status(), Some(483));
    assert!(r.to_header().unwrap().tag().is_some());
    // An INVITE that requires an extension callflow lacks: 420 naming it.
    let with_require = base("INVITE", "req100rel").replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nRequire: 100rel\r\n",
    );
    s.caller.send_raw(with_require.as_bytes(), to).await;
    let r = s.caller.expect_final("INVITE").await;
    assert_eq!(r.status(), Some(420));
    assert!(r.to_header().unwrap().tag().is_some());
    assert_eq!(r.header(&Name::parse("Unsupported")), Some("100rel"));
}

#[tokio::test]
async fn early_media_183_is_relayed_with_filtered_sdp() {
    let mut s = setup(Transport::Udp, &["bot"]).await;
    call_in(&mut s, "early").await;
    let (inv, from) = s.far[0].expect_request("INVITE").await;
    let early = answer(43000).replace(
        "m=audio 43000 RTP/AVP 8 101",
        "m=audio 43000 RTP/AVP 9 8 101",
    ) + "a=rtpmap:9 G722/8000\r\n";
    s.far[0]
        .send(&s.far[0].response(&inv, 183, "far1", Some(&early)), from)
        .await;
    let r = s.caller.expect_response().await;
    assert_eq!(r.status(), Some(183));
    let body = String::from_utf8_lossy(&r.body);
    assert!(
        body.contains("m=audio 43000 RTP/AVP 8 101") && !body.contains("G722"),
        "{body}"
    );
}

#[tokio::test]
async fn offer_with_no_usable_codec_gets_488() {
    let mut s = setup(Transport::Udp, &["bot"]).await;
    let to = s.engine.addr(Transport::Udp);
    let mut invite = s
        .caller
        .invite(&format!("sip:+918047112233@{to}"), "opus-only");
    let opus = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 96\r\na=rtpmap:96 opus/48000/2\r\n";
    invite.set_body("application/sdp", bytes::Bytes::from(opus));
    s.caller.send(&invite, to).await;
    assert_eq!(s.caller.expect_final("INVITE").await.status(), Some(488));
    assert!(s.far[0].recv(0.3).await.is_none(), "no far leg is placed");
}

#[tokio::test]
async fn info_and_update_in_dialog_are_relayed() {
    let mut s = setup(Transport::Udp, &["bot"]).await;
    call_in(&mut s, "info").await;
    let (_, ok) = answer_at(&mut s, 0).await;
    for (i, method) in ["INFO", "UPDATE"].iter().enumerate() {
        let req = s
            .caller
            .in_dialog(method, &ok, true, "", 5 + i as u32, &format!("r{i}"));
        s.caller.send(&req, Ua::contact_addr(&ok)).await;
        let (got, from) = s.far[0].expect_request(method).await;
        s.far[0]
            .send(&s.far[0].response(&got, 200, "far1", None), from)
            .await;
        assert_eq!(
            s.caller.expect_final(method).await.status(),
            Some(200),
            "{method}"
        );
    }
    // A BYE with a CSeq below the last one is out of order: 500 (RFC 3261 §12.2.2).
    let stale = s.caller.in_dialog("BYE", &ok, true, "", 2, "stale");
    s.caller.send(&stale, Ua::contact_addr(&ok)).await;
    assert_eq!(s.caller.expect_final("BYE").await.status(), Some(500));
    caller_hangs_up(&mut s, &ok, 0, 7).await;
}

#[tokio::test]
async fn retransmitted_2xx_from_the_far_end_is_acknowledged_again() {
    let mut s = setup(Transport::Udp, &["bot"]).await;
    call_in(&mut s, "stray").await;
    let (inv, ok) = answer_at(&mut s, 0).await;
    // An INFO relayed to the bot first moves the far dialog's CSeq on.
    let info = s.caller.in_dialog("INFO", &ok, true, "", 2, "info");
    s.caller.send(&info, Ua::contact_addr(&ok)).await;
    let (got, from) = s.far[0].expect_request("INFO").await;
    assert_eq!(got.cseq().unwrap().seq, 2);
    s.far[0]
        .send(&s.far[0].response(&got, 200, "far1", None), from)
        .await;
    assert_eq!(s.caller.expect_final("INFO").await.status(), Some(200));
    // The bot did not see our ACK (say) and sends its 200 again: RFC 6026 says the
    // UAC core acknowledges each retransmission, with the INVITE's CSeq number
    // (RFC 3261 §13.2.2.4), whatever the dialog has sent since.
    let again = s.far[0].response(&inv, 200, "far1", Some(&answer(41000)));
    s.far[0].send(&again, s.engine.addr(Transport::Udp)).await;
    let (ack, _) = s.far[0].expect_request("ACK").await;
    assert_eq!(ack.cseq().unwrap().seq, 1);
}
