//! A softphone for the demo (README, "Your first call"), built on callflow's own SIP
//! stack: it plays the PSTN caller (127.0.0.1:5070), the partner's bot
//! (127.0.0.1:5080) and an agent (127.0.0.1:5090) on loopback UDP.
//!
//! ```sh
//! cargo run --example softphone                    # one call to +918047112233
//! ```
//!
//! The caller calls the demo number; the bot answers, "talks" for two seconds and
//! hangs up; callflow asks the partner's webhook and connects the agent, re-INVITEing
//! the caller; after two seconds with the agent the caller hangs up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use callflow::sip::dialog::{Dialog, new_tag};
use callflow::sip::transaction::{
    ClientEvent, ServerTransaction, Timers, ToCore, TransactionLayer,
};
use callflow::sip::transport::{Target, TransportConfig, Transports};
use callflow::sip::{CSeq, Message, Method, Name, NameAddr, Transport, Uri};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn sdp(port: u16) -> Bytes {
    Bytes::from(format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    ))
}

/// One SIP endpoint on loopback.
struct Phone {
    name: &'static str,
    layer: Arc<TransactionLayer>,
    core: mpsc::Receiver<ToCore>,
    port: u16,
    started: Instant,
}

impl Phone {
    async fn bind(
        name: &'static str,
        port: u16,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Phone> {
        let config = TransportConfig {
            listen: vec![
                format!("udp://127.0.0.1:{port}")
                    .parse()
                    .map_err(anyhow::Error::msg)?,
            ],
            ..Default::default()
        };
        let (transports, incoming) = Transports::bind(config, shutdown.clone()).await?;
        let layer = TransactionLayer::new(transports, Timers::default(), None);
        let (tx, core) = mpsc::channel(64);
        tokio::spawn(layer.clone().run(incoming, tx));
        Ok(Phone {
            name,
            layer,
            core,
            port,
            started: Instant::now(),
        })
    }

    fn say(&self, what: &str) {
        println!(
            "{:6.2}s {:>6}: {what}",
            self.started.elapsed().as_secs_f64(),
            self.name
        );
    }

    fn contact(&self) -> String {
        format!("<sip:{}@127.0.0.1:{}>", self.name, self.port)
    }

    /// Answers an INVITE with 180 then 200 (with SDP); returns the UAS dialog.
    async fn answer(&self, st: &ServerTransaction) -> Option<Dialog> {
        let tag = new_tag();
        st.reply(180, Some(&tag)).await;
        let mut ok = st.response(200, Some(&tag));
        ok.push_header(Name::Contact, self.contact());
        ok.set_body("application/sdp", sdp(self.port + 10000));
        st.respond(&ok).await;
        Dialog::uas(&st.request, &tag).ok()
    }

    /// Sends an in-dialog request to the dialog's remote target and waits for its
    /// final response.
    async fn send_in_dialog(&self, dialog: &mut Dialog, method: Method) -> Option<u16> {
        let req = dialog.request(method);
        let target = target_of(dialog.next_hop())?;
        let mut ct = self.layer.send_request(req, target, None).await;
        while let Some(ev) = ct.events.recv().await {
            if let ClientEvent::Response(r) = ev
                && let Some(s) = r.status().filter(|s| *s >= 200)
            {
                return Some(s);
            }
        }
        None
    }
}

fn target_of(uri: &Uri) -> Option<Target> {
    let u = uri.as_sip()?;
    Some(Target {
        transport: Transport::Udp,
        addr: std::net::SocketAddr::new(u.host.ip()?, u.port.unwrap_or(5060)),
        server_name: None,
    })
}

/// The bot: answers, talks for two seconds, hangs up.
async fn bot(mut p: Phone) {
    while let Some(item) = p.core.recv().await {
        if let ToCore::Request(st) = item {
            match st.request.method() {
                Some(Method::Invite) => {
                    let x = st.request.header(&Name::parse("X-Caller")).unwrap_or("-");
                    p.say(&format!("INVITE from callflow (X-Caller: {x}); answering"));
                    let Some(mut dialog) = p.answer(&st).await else {
                        continue;
                    };
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    p.say("done talking; hanging up (BYE)");
                    let status = p.send_in_dialog(&mut dialog, Method::Bye).await;
                    p.say(&format!("BYE answered {status:?}"));
                }
                _ => st.reply(200, None).await,
            }
        }
    }
}

/// The agent: answers, and waits for the caller to hang up.
async fn agent(mut p: Phone) {
    while let Some(item) = p.core.recv().await {
        if let ToCore::Request(st) = item {
            match st.request.method() {
                Some(Method::Invite) => {
                    let how = if st.request.body.is_empty() {
                        "without SDP (re-targeting)"
                    } else {
                        "with SDP"
                    };
                    p.say(&format!("INVITE {how}; answering"));
                    p.answer(&st).await;
                }
                Some(Method::Bye) => {
                    p.say("BYE: the caller hung up");
                    st.reply(200, None).await;
                }
                _ => st.reply(200, None).await,
            }
        }
    }
}

/// The caller: calls the demo number, follows the re-INVITE to the agent, hangs up.
async fn caller(mut p: Phone, number: &str, engine: &str) -> anyhow::Result<()> {
    let uri = Uri::parse(&format!("sip:{number}@{engine}"))?;
    let mut invite = Message::request(Method::Invite, uri.clone());
    let mut from = NameAddr::parse(&format!("<sip:+919812345678@127.0.0.1:{}>", p.port))?;
    from.set_tag(&new_tag());
    invite.push_header(Name::MaxForwards, "70");
    invite.push_header(Name::From, from.to_string());
    invite.push_header(Name::To, format!("<{uri}>"));
    invite.push_header(Name::CallId, format!("demo-{}", new_tag()));
    invite.push_header(
        Name::CSeq,
        CSeq {
            seq: 1,
            method: Method::Invite,
        }
        .to_string(),
    );
    invite.push_header(Name::Contact, p.contact());
    invite.set_body("application/sdp", sdp(p.port + 10000));
    let target = target_of(&uri).ok_or_else(|| anyhow::anyhow!("bad engine address"))?;
    p.say(&format!("calling {number}"));
    let mut ct = p.layer.send_request(invite, target, None).await;
    let sent = ct.request.clone();
    let mut dialog = loop {
        match ct.events.recv().await {
            Some(ClientEvent::Response(r)) if r.status() == Some(200) => {
                p.say("answered (200 OK); sending ACK");
                let d = Dialog::uac(&sent, &r)?;
                let ack = d.ack(1);
                let t = target_of(d.next_hop()).ok_or_else(|| anyhow::anyhow!("no target"))?;
                p.layer.send_stateless(ack, &t, None).await;
                break d;
            }
            Some(ClientEvent::Response(r)) => {
                let s = r.status().unwrap_or(0);
                p.say(&format!("{s} {}", callflow::sip::message::reason_phrase(s)));
                if s >= 300 {
                    anyhow::bail!("call refused with {s}");
                }
            }
            other => anyhow::bail!("call failed: {other:?}"),
        }
    };
    drop(ct);
    // Wait for callflow to re-INVITE us towards the agent, or hang up on us.
    while let Some(item) = p.core.recv().await {
        match item {
            ToCore::Request(st) if st.request.method() == Some(&Method::Invite) => {
                p.say("re-INVITE: now talking to the agent");
                let mut ok = st.response(200, None);
                ok.push_header(Name::Contact, p.contact());
                ok.set_body("application/sdp", sdp(p.port + 10000));
                st.respond(&ok).await;
                dialog.refresh_target(&st.request);
                tokio::time::sleep(Duration::from_secs(2)).await;
                p.say("hanging up (BYE)");
                let status = p.send_in_dialog(&mut dialog, Method::Bye).await;
                p.say(&format!("BYE answered {status:?}; call over"));
                return Ok(());
            }
            ToCore::Request(st) if st.request.method() == Some(&Method::Bye) => {
                p.say("callflow hung up (BYE)");
                st.reply(200, None).await;
                return Ok(());
            }
            ToCore::Request(st) => st.reply(200, None).await,
            _ => {}
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = args
        .first()
        .cloned()
        .unwrap_or_else(|| "+918047112233".into());
    let engine = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:5060".into());
    let shutdown = CancellationToken::new();
    let b = Phone::bind("bot", 5080, &shutdown).await?;
    let a = Phone::bind("agent", 5090, &shutdown).await?;
    let c = Phone::bind("caller", 5070, &shutdown).await?;
    tokio::spawn(bot(b));
    tokio::spawn(agent(a));
    let result = caller(c, &number, &engine).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    shutdown.cancel();
    result
}
