//! Hostile bytes never panic the SIP parser, whatever it accepts survives a round
//! trip through the serialiser unchanged, and the answer to what it refuses reads back.

use callflow::sip::message::frame;
use callflow::sip::{Framing, Message};
use proptest::prelude::*;

const INVITE: &str = "INVITE sip:+918047112233@callflow.example SIP/2.0\r\n\
Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK74bf9;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Caller\" <sip:+919812345678@carrier.example>;tag=9fxced76sl\r\n\
To: <sip:+918047112233@callflow.example>\r\n\
Call-ID: 3848276298220188511@carrier.example\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:+919812345678@[2001:db8::1]:5060>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let _ = frame(bytes);
    for framing in [Framing::Datagram, Framing::Stream] {
        if let Err(e) = Message::parse(bytes, framing)
            && let Some(answer) = Message::answer_unparsable(bytes, &e)
        {
            // What is refused with an answer gets one that reads back.
            prop_assert!(matches!(answer.status(), Some(400 | 505)));
            let again = Message::parse(&answer.to_bytes(), Framing::Stream);
            prop_assert_eq!(again.as_ref(), Ok(&answer));
        }
        if let Ok(mut m) = Message::parse(bytes, framing) {
            let _ = m.validate();
            let _ = (
                m.vias(),
                m.contacts(),
                m.routes(),
                m.record_routes(),
                m.from_header(),
            );
            let again = Message::parse(&m.to_bytes(), Framing::Stream);
            prop_assert_eq!(again.as_ref(), Ok(&m));
        }
    }
    Ok(())
}

proptest! {
    // PROPTEST_CASES raises the count for a longer hunt.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(3000),
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        check(&bytes)?;
    }

    #[test]
    fn mangled_invite(
        edits in prop::collection::vec((any::<usize>(), 0usize..8, prop::collection::vec(
            prop::sample::select(b"\r\n :;,<>\"[]@=\\\t\x00\xffvVaA0129-+".to_vec()), 0..4)), 1..6)
    ) {
        let mut bytes = INVITE.as_bytes().to_vec();
        for (at, del, ins) in edits {
            let at = at % (bytes.len() + 1);
            let end = (at + del).min(bytes.len());
            bytes.splice(at..end, ins);
        }
        check(&bytes)?;
    }
}

proptest! {
    // The long hunt (scripts/long-proptests.sh; BENCHMARKS.md has its last run):
    // LONG_PROPTEST_CASES cases of each, 200,000 by default.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("LONG_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000),
        ..ProptestConfig::default()
    })]

    #[test]
    #[ignore = "long: run by scripts/long-proptests.sh"]
    fn long_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        check(&bytes)?;
    }

    #[test]
    #[ignore = "long: run by scripts/long-proptests.sh"]
    fn long_mangled_invite(
        edits in prop::collection::vec((any::<usize>(), 0usize..12, prop::collection::vec(
            prop::sample::select(b"\r\n :;,<>\"[]@=\\\t\x00\xffvVaA0129-+%".to_vec()), 0..6)), 1..12)
    ) {
        let mut bytes = INVITE.as_bytes().to_vec();
        for (at, del, ins) in edits {
            let at = at % (bytes.len() + 1);
            let end = (at + del).min(bytes.len());
            bytes.splice(at..end, ins);
        }
        check(&bytes)?;
    }
}
