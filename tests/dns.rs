//! RFC 3263 resolution against a real (tiny) DNS server on loopback: SRV records in
//! priority order, failover to the next target when one does not answer.

mod support;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use callflow::call::{SipStack, StackConfig};
use callflow::runtime::{LegOutcome, LegRequest};
use callflow::sip::resolve::Resolver;
use callflow::sip::transport::TransportConfig;
use callflow::sip::{Transport, Uri};
use hickory_resolver::proto::op::{Message, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, SRV};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use support::{Ua, answer, fast_timers, handler};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

type Zone = HashMap<(String, RecordType), Vec<RData>>;

/// Answers queries from `zone`; anything else gets an empty NXDOMAIN answer.
async fn dns_server(zone: Zone) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut resp = Message::response(query.metadata.id, query.metadata.op_code);
            resp.metadata.recursion_desired = query.metadata.recursion_desired;
            resp.metadata.recursion_available = true;
            resp.metadata.authoritative = true;
            for q in &query.queries {
                resp.add_query(q.clone());
                let key = (q.name().to_ascii().to_lowercase(), q.query_type());
                match zone.get(&key) {
                    Some(data) => {
                        for d in data {
                            resp.add_answer(Record::from_rdata(q.name().clone(), 60, d.clone()));
                        }
                    }
                    None => resp.metadata.response_code = ResponseCode::NXDomain,
                }
            }
            if let Ok(bytes) = resp.to_vec() {
                let _ = socket.send_to(&bytes, from).await;
            }
        }
    });
    addr
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

/// An engine resolving with the DNS server at `dns` (and TLS trust `tls`) whose calls
/// dial `uri`; reports each leg's outcome. Sends one call in and returns the channel.
async fn call_through(
    dns: SocketAddr,
    tls: Option<callflow::sip::transport::TlsConfig>,
    uri: &str,
    id: &str,
) -> (mpsc::UnboundedReceiver<LegOutcome>, SipStack) {
    let transport = TransportConfig {
        listen: vec!["udp://127.0.0.1:0".parse().unwrap()],
        tls,
        ..Default::default()
    };
    let config = StackConfig {
        timers: fast_timers(),
        resolver: Resolver::with_nameservers(&[dns]),
        ..StackConfig::new(transport)
    };
    let (report_tx, report) = mpsc::unbounded_channel();
    let uri = uri.to_string();
    let stack = SipStack::start(
        config,
        handler(move |mut call| {
            let (report, uri) = (report_tx.clone(), uri.clone());
            async move {
                let Ok(Uri::Sip(uri)) = Uri::parse(&uri) else {
                    return;
                };
                let leg = LegRequest {
                    uri,
                    headers: vec![],
                    ring_timeout: Duration::from_secs(5),
                    caller_id: None,
                    media: Default::default(),
                };
                let _ = report.send(call.dial(leg).await);
                call.hangup(480).await;
            }
        }),
    )
    .await
    .unwrap();
    let transports = stack.transports.clone();
    let caller = Ua::new(Transport::Udp, "caller", None).await;
    let to = transports.local_addr(Transport::Udp).unwrap();
    caller
        .send(&caller.invite(&format!("sip:+918047112233@{to}"), id), to)
        .await;
    // The caller's UA must outlive the call set-up.
    tokio::spawn(async move {
        let mut caller = caller;
        while caller.recv(30.0).await.is_some() {}
    });
    (report, stack)
}

#[tokio::test]
async fn srv_records_are_tried_in_priority_order_with_failover() {
    let mut bot = Ua::new(Transport::Udp, "bot", None).await;
    // Priority 10: a host that never answers; priority 20: the bot.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut zone: Zone = HashMap::new();
    zone.insert(
        ("_sip._udp.partner.test.".into(), RecordType::SRV),
        vec![
            RData::SRV(SRV::new(20, 0, bot.addr.port(), name("bot.partner.test."))),
            RData::SRV(SRV::new(
                10,
                0,
                silent.local_addr().unwrap().port(),
                name("down.partner.test."),
            )),
        ],
    );
    for host in ["bot.partner.test.", "down.partner.test."] {
        zone.insert(
            (host.into(), RecordType::A),
            vec![RData::A(A(Ipv4Addr::LOCALHOST))],
        );
    }
    let dns = dns_server(zone).await;
    let (mut report, shutdown) = call_through(dns, None, "sip:bot@partner.test", "srv").await;
    // The silent host gets the INVITE first (and its retransmissions); then the bot.
    let mut buf = [0u8; 2048];
    let got = tokio::time::timeout(Duration::from_secs(2), silent.recv_from(&mut buf)).await;
    assert!(got.is_ok(), "priority 10 is tried first");
    let (inv, from) = tokio::time::timeout(Duration::from_secs(10), bot.expect_request("INVITE"))
        .await
        .expect("failover to priority 20");
    bot.send(&bot.response(&inv, 200, "b", Some(&answer(41000))), from)
        .await;
    assert_eq!(report.recv().await, Some(LegOutcome::Answered));
    drop(shutdown);
}

#[tokio::test]
async fn tls_to_an_fqdn_destination_signed_by_a_test_ca() {
    let (leaf, ca) = support::ca_signed_cert("bot.partner.test");
    // The bot presents the CA-signed certificate for bot.partner.test.
    let mut bot = Ua::new(Transport::Tls, "bot", Some(&leaf)).await;
    let mut zone: Zone = HashMap::new();
    zone.insert(
        ("bot.partner.test.".into(), RecordType::A),
        vec![RData::A(A(Ipv4Addr::LOCALHOST))],
    );
    let dns = dns_server(zone).await;
    let tls = callflow::sip::transport::TlsConfig {
        cert: None,
        key: None,
        ca: Some(ca),
    };
    let uri = format!("sip:bot@bot.partner.test:{};transport=tls", bot.addr.port());
    let (mut report, shutdown) = call_through(dns, Some(tls), &uri, "tls-fqdn").await;
    // The handshake verified bot.partner.test against the CA: the INVITE arrives.
    let (inv, from) = bot.expect_request("INVITE").await;
    bot.send(&bot.response(&inv, 200, "b", Some(&answer(41000))), from)
        .await;
    assert_eq!(report.recv().await, Some(LegOutcome::Answered));
    drop(shutdown);
}
