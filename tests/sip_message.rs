//! The SIP message layer against RFC 3261's syntax, and against each gap of rsip 0.4
//! listed in docs/architecture.md §5.

use callflow::sip::message::{MAX_HEADERS, frame};
use callflow::sip::{Framing, Host, Message, Method, Name, ParseError, Transport, Uri};

const INVITE: &str = "INVITE sip:+918047112233@callflow.example;transport=udp SIP/2.0\r\n\
Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK74bf9;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Caller, Esq.\" <sip:+919812345678@carrier.example>;tag=9fxced76sl\r\n\
To: <sip:+918047112233@callflow.example>\r\n\
Call-ID: 3848276298220188511@carrier.example\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:+919812345678@203.0.113.10:5060>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

fn parse(s: &str) -> Result<Message, ParseError> {
    Message::parse(s.as_bytes(), Framing::Datagram)
}

#[test]
fn typical_invite() {
    let mut m = parse(INVITE).unwrap();
    m.validate().unwrap();
    assert_eq!(m.method(), Some(&Method::Invite));
    assert_eq!(m.call_id().unwrap(), "3848276298220188511@carrier.example");
    assert_eq!(m.cseq().unwrap().seq, 314159);
    let via = m.top_via().unwrap();
    assert_eq!(via.transport, Transport::Udp);
    assert_eq!(via.branch(), Some("z9hG4bK74bf9"));
    let from = m.from_header().unwrap();
    assert_eq!(
        from.display.as_deref(),
        Some("Caller, Esq."),
        "display name unquoted"
    );
    assert_eq!(from.tag(), Some("9fxced76sl"));
    assert_eq!(m.to_header().unwrap().tag(), None);
    assert_eq!(m.max_forwards().unwrap(), Some(70));
    assert_eq!(&m.body[..], b"v=0\n");
}

#[test]
fn serialise_then_parse_is_identity() {
    let m = parse(INVITE).unwrap();
    let again = Message::parse(&m.to_bytes(), Framing::Stream).unwrap();
    assert_eq!(again, m);
}

#[test]
fn compact_header_names() {
    let mut m = parse(
        "BYE sip:a@b SIP/2.0\r\nv: SIP/2.0/TCP h;branch=z9hG4bK1\r\nf: <sip:x@y>;tag=1\r\nt: <sip:a@b>;tag=2\r\ni: abc\r\nCSeq: 2 BYE\r\nl: 0\r\n\r\n",
    )
    .unwrap();
    m.validate().unwrap();
    assert_eq!(m.call_id().unwrap(), "abc");
    assert_eq!(m.top_via().unwrap().transport, Transport::Tcp);
}

#[test]
fn folded_header_lines() {
    let m = parse(
        "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nSubject: I know you're there,\r\n   pick up the phone\r\n\tand talk to me!\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n",
    )
    .unwrap();
    assert_eq!(
        m.header(&Name::Subject),
        Some("I know you're there, pick up the phone and talk to me!")
    );
}

#[test]
fn white_space_before_the_colon() {
    let mut m = parse(
        "OPTIONS sip:a@b SIP/2.0\r\nVia : SIP/2.0/UDP h;branch=z9hG4bK1\r\nMax-Forwards  : 70\r\nFrom\t: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n",
    )
    .unwrap();
    m.validate().unwrap();
    assert_eq!(m.max_forwards().unwrap(), Some(70));
}

#[test]
fn extension_methods() {
    let mut m = parse(
        "FROBNICATE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 FROBNICATE\r\n\r\n",
    )
    .unwrap();
    m.validate().unwrap();
    assert_eq!(m.method(), Some(&Method::Other("FROBNICATE".into())));
}

#[test]
fn tel_and_ipv6_uris() {
    let mut m = parse(
        "INVITE tel:+918047112233 SIP/2.0\r\nVia: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1\r\nFrom: <sip:x@[2001:db8::2]>;tag=1\r\nTo: <tel:+918047112233>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n",
    )
    .unwrap();
    m.validate().unwrap();
    assert_eq!(m.request_uri().unwrap().user(), Some("+918047112233"));
    assert!(matches!(m.top_via().unwrap().host, Host::Ipv6(_)));
    assert_eq!(m.top_via().unwrap().port, Some(5060));
    let Uri::Sip(from) = m.from_header().unwrap().uri.clone() else {
        panic!()
    };
    assert!(matches!(from.host, Host::Ipv6(_)));
}

#[test]
fn content_length_is_checked_against_the_body() {
    let with = |cl: &str| INVITE.replace("Content-Length: 4", cl);
    assert!(matches!(
        parse(&with("Content-Length: 40")),
        Err(ParseError::ContentLength(_))
    ));
    assert!(matches!(
        parse(&with("Content-Length: -1")),
        Err(ParseError::ContentLength(_))
    ));
    assert!(matches!(
        parse(&with("Content-Length: 99999999999999999999999")),
        Err(ParseError::ContentLength(_))
    ));
    assert!(matches!(
        parse(&with("Content-Length: 4\r\nContent-Length: 5")),
        Err(ParseError::ContentLength(_))
    ));
    // A datagram with bytes past Content-Length: they are not part of the message.
    let m = parse(&with("Content-Length: 2")).unwrap();
    assert_eq!(&m.body[..], b"v=");
    // No Content-Length in a datagram: the body is the rest.
    let m = parse(&with("X-Nothing: here")).unwrap();
    assert_eq!(&m.body[..], b"v=0\n");
    // On a stream it is required.
    assert!(Message::parse(with("X-Nothing: here").as_bytes(), Framing::Stream).is_err());
}

#[test]
fn stream_framing() {
    let two = format!("{INVITE}{INVITE}");
    let first = frame(two.as_bytes()).unwrap().unwrap();
    assert_eq!(first, INVITE.len());
    assert_eq!(frame(&two.as_bytes()[..10]).unwrap(), None);
    assert_eq!(frame(&INVITE.as_bytes()[..INVITE.len() - 1]).unwrap(), None);
    assert!(frame(INVITE.replace("Content-Length: 4\r\n", "").as_bytes()).is_err());
}

#[test]
fn malformed_messages_are_errors_not_panics() {
    let vias = "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n".repeat(5000);
    let cases: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\r\n\r\n".to_vec(),
        INVITE.as_bytes()[..40].to_vec(),
        b"INVITE sip:a@b SIP/2.0\r\nVia \xff\xfe: x\r\n\r\n".to_vec(),
        format!(
            "INVITE sip:a@b SIP/2.0\r\nX-Big: {}\r\n\r\n",
            "a".repeat(70_000)
        )
        .into_bytes(),
        format!("INVITE sip:a@b SIP/2.0\r\n{vias}\r\n").into_bytes(),
        b"INVITE sip:a@b SIP/3.0\r\n\r\n".to_vec(),
        b"SIP/2.0 99 Odd\r\n\r\n".to_vec(),
        b"INVITE  sip:a@b SIP/2.0\r\n\r\n".to_vec(),
        b"INVITE 1http:a SIP/2.0\r\n\r\n".to_vec(),
        b"INVITE sip:a@b SIP/2.0\r\n: novalue\r\n\r\n".to_vec(),
        b"INVITE sip:a@b SIP/2.0\r\n folded-first\r\n\r\n".to_vec(),
    ];
    for c in cases {
        assert!(
            Message::parse(&c, Framing::Datagram).is_err(),
            "{:?}",
            String::from_utf8_lossy(&c)
        );
    }
    const { assert!(MAX_HEADERS < 5000) };
}

#[test]
fn missing_required_headers_fail_validation() {
    for drop in ["Call-ID", "CSeq", "Via", "From", "To"] {
        let text: String = INVITE
            .split_inclusive("\r\n")
            .filter(|l| !l.starts_with(&format!("{drop}:")))
            .collect();
        let mut m = parse(&text).unwrap();
        assert!(m.validate().is_err(), "without {drop}");
    }
    let mut m = parse(&INVITE.replace("CSeq: 314159 INVITE", "CSeq: 314159 BYE")).unwrap();
    assert!(m.validate().is_err(), "CSeq method must match");
}

#[test]
fn response_to_copies_the_dialog_headers() {
    let req = parse(INVITE).unwrap();
    let mut resp = Message::response_to(&req, 180);
    let mut to = resp.to_header().unwrap().clone();
    assert_eq!(to.tag(), None);
    to.set_tag("abc");
    resp.set_header(Name::To, to.to_string());
    assert_eq!(
        resp.to_header().unwrap().tag(),
        Some("abc"),
        "To read again after a change"
    );
    let text = String::from_utf8(resp.to_bytes().to_vec()).unwrap();
    assert!(text.starts_with("SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK74bf9;rport\r\n"), "{text}");
    assert!(text.contains("To: <sip:+918047112233@callflow.example>;tag=abc\r\n"));
    assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
}

/// Each typed header is parsed once and kept; every way of changing a header drops
/// what was kept of it, so a reader never sees a stale value.
#[test]
fn typed_headers_follow_every_change() {
    let mut m = parse(INVITE).unwrap();
    assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bK74bf9"));
    assert_eq!(m.cseq().unwrap().seq, 314159);
    m.set_to_tag("t1").unwrap();
    assert_eq!(m.to_header().unwrap().tag(), Some("t1"));
    assert!(m.header(&Name::To).unwrap().ends_with(";tag=t1"));
    m.prepend_header(Name::Via, "SIP/2.0/TCP 192.0.2.1;branch=z9hG4bKnew");
    assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bKnew"));
    m.remove_header(&Name::Via);
    assert!(m.top_via().is_err());
    m.push_header(Name::Via, "SIP/2.0/UDP 192.0.2.2;branch=z9hG4bKpushed");
    assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bKpushed"));
    for h in m.headers_mut() {
        if h.name == Name::CSeq {
            h.value = "7 INVITE".into();
        }
        if h.name == Name::From {
            h.value = "<sip:other@example.com>;tag=f2".into();
        }
    }
    assert_eq!(m.cseq().unwrap().seq, 7);
    assert_eq!(m.from_header().unwrap().tag(), Some("f2"));
    let mut via = m.top_via().unwrap().clone();
    via.set_param("received", Some("198.51.100.9".into()));
    m.replace_top_via(via);
    assert_eq!(
        m.top_via().unwrap().param("received"),
        Some(Some("198.51.100.9"))
    );
    let again = Message::parse(&m.to_bytes(), Framing::Datagram).unwrap();
    assert_eq!(again, m);
    assert_eq!(again.top_via().unwrap(), m.top_via().unwrap());
    m.forget();
    assert!(m.cseq().is_err() && m.from_header().is_err());
}

#[test]
fn serialiser_never_writes_a_line_break_inside_a_value() {
    let mut m = parse(INVITE).unwrap();
    m.push_header(Name::parse("X-Evil"), "a\r\nVia: SIP/2.0/UDP evil");
    let again = Message::parse(&m.to_bytes(), Framing::Stream).unwrap();
    assert_eq!(again.vias().unwrap().len(), 1);
}

/// A UAS's tag goes after the request's To as the request wrote it (RFC 3261
/// §8.2.6.2); a To that already had a tag has it replaced, not doubled.
#[test]
fn to_tag_follows_the_to_as_written() {
    let mut m = parse(&INVITE.replace(
        "To: <sip:+918047112233@callflow.example>",
        "To: \"Sales\" <sip:+918047112233@callflow.example;user=phone>;x=1",
    ))
    .unwrap();
    m.set_to_tag("t1").unwrap();
    assert_eq!(
        m.header(&Name::To),
        Some("\"Sales\" <sip:+918047112233@callflow.example;user=phone>;x=1;tag=t1")
    );
    m.set_to_tag("t2").unwrap();
    let to = m.to_header().unwrap();
    assert_eq!((to.tag(), to.param("x")), (Some("t2"), Some(Some("1"))));
    assert_eq!(m.header(&Name::To).unwrap().matches("tag=").count(), 1);
}
