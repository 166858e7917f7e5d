//! Parsing and serialising a typical INVITE and 200 OK, against rsip 0.4 doing the same
//! in the same run (the baseline).

use std::hint::black_box;

use callflow::sip::{Framing, Message};
use criterion::{Criterion, criterion_group, criterion_main};

const INVITE: &str = "INVITE sip:+918047112233@callflow.example;transport=udp SIP/2.0\r\n\
Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK74bf9;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Caller\" <sip:+919812345678@carrier.example>;tag=9fxced76sl\r\n\
To: <sip:+918047112233@callflow.example>\r\n\
Call-ID: 3848276298220188511@carrier.example\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:+919812345678@203.0.113.10:5060>\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY, UPDATE, INFO\r\n\
Supported: replaces, timer\r\n\
User-Agent: carrier-sbc/4.2\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 226\r\n\
\r\n\
v=0\r\n\
o=- 3848276298 3848276298 IN IP4 203.0.113.10\r\n\
s=-\r\n\
c=IN IP4 203.0.113.10\r\n\
t=0 0\r\n\
m=audio 16384 RTP/AVP 8 0 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n";

const OK: &str = "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK74bf9;rport=5060;received=203.0.113.10\r\n\
From: \"Caller\" <sip:+919812345678@carrier.example>;tag=9fxced76sl\r\n\
To: <sip:+918047112233@callflow.example>;tag=314159\r\n\
Call-ID: 3848276298220188511@carrier.example\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:callflow@198.51.100.1:5060>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 0\r\n\
\r\n";

fn bench(c: &mut Criterion) {
    assert_eq!(INVITE.split("\r\n\r\n").nth(1).map(str::len), Some(226));
    for (name, text) in [("invite", INVITE), ("ok", OK)] {
        let bytes = text.as_bytes();
        let mut ours = Message::parse(bytes, Framing::Datagram).expect("parse");
        ours.validate().expect("valid");
        let theirs = rsip::SipMessage::try_from(bytes).expect("rsip parse");
        let mut g = c.benchmark_group(format!("sip_{name}"));
        g.bench_function("baseline_rsip_parse", |b| {
            b.iter(|| rsip::SipMessage::try_from(black_box(bytes)))
        });
        g.bench_function("parse", |b| {
            b.iter(|| Message::parse(black_box(bytes), Framing::Datagram))
        });
        g.bench_function("parse_and_read_dialog_headers", |b| {
            b.iter(|| {
                let m = Message::parse(black_box(bytes), Framing::Datagram).expect("parse");
                (
                    m.top_via().is_ok(),
                    m.call_id().is_ok(),
                    m.cseq().is_ok(),
                    m.from_header().is_ok(),
                    m.to_header().is_ok(),
                )
            })
        });
        g.bench_function("baseline_rsip_serialise", |b| {
            b.iter(|| black_box(&theirs).to_string())
        });
        g.bench_function("serialise", |b| b.iter(|| black_box(&ours).to_bytes()));
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
