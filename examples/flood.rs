//! An INVITE flood from an unknown source (issue 13's reflection probe), against the
//! engine as `callflow serve` runs it, on loopback UDP. A socket on 127.0.0.5 (neither
//! a carrier nor a trunk's address) sends N distinct INVITEs and never ACKs; the
//! example counts what comes back for 5 s after the last, and the engine's resident
//! memory before and after. It runs three times: `sip.unknown_sources: drop`,
//! `reject`, and with a digest trunk (a stateless challenge each), the shield's rate
//! limit raised out of the way so that the gate alone is measured.
//!
//! ```sh
//! cargo run --release --example flood -- 20000 5000   # INVITEs per run, per second
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use callflow::config::Config;
use callflow::server::Server;
use callflow::sip::Transport;
use callflow::sip::transaction::Timers;

mod common;
use common::{arg, rss_mib};

fn invite(to: SocketAddr, from: SocketAddr, n: u32) -> Vec<u8> {
    format!(
        "INVITE sip:+919999999999@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKflood{n}\r\nMax-Forwards: 70\r\nFrom: <sip:+918047112233@{from}>;tag=f{n}\r\nTo: <sip:+919999999999@{to}>\r\nCall-ID: flood-{n}\r\nCSeq: 1 INVITE\r\nContact: <sip:x@{from}>\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

async fn run(
    label: &str,
    sip: &str,
    trunk: &str,
    count: u32,
    per_second: u32,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir(dir.path().join("flows"))?;
    let text = format!(
        "sip: {{ listen: [\"udp://127.0.0.1:0\"], options_interval: null, {sip}, shield: {{ requests_per_second: 1000000 }} }}\nflows: flows\ntrunks:\n  - sid: t\n    whitelisted_ips: [10.9.9.9/32]\n    numbers: [{{ number: \"+918047112233\", mode: pstn }}]\n    {trunk}\n"
    );
    let path = dir.path().join("callflow.yaml");
    std::fs::write(&path, &text)?;
    let config = Config::load(&path)?;
    let server = Server::start(&config, Timers::default()).await?;
    let engine = server
        .transports
        .local_addr(Transport::Udp)
        .ok_or_else(|| anyhow::anyhow!("no UDP"))?;
    let socket = tokio::net::UdpSocket::bind("127.0.0.5:0").await?;
    let from = socket.local_addr()?;
    let before = rss_mib("self");
    let (mut sent, mut got, mut answers) = (0u64, 0u64, 0u64);
    let started = Instant::now();
    let mut buf = vec![0u8; 65536];
    let gap = Duration::from_secs(1) / per_second.max(1);
    for n in 0..count {
        if n % 100 == 0 {
            tokio::time::sleep_until((started + gap * n).into()).await;
        }
        let m = invite(engine, from, n);
        sent += m.len() as u64;
        socket.send_to(&m, engine).await?;
        while let Ok((len, _)) = socket.try_recv_from(&mut buf) {
            got += len as u64;
            answers += 1;
        }
    }
    let rate = f64::from(count) / started.elapsed().as_secs_f64();
    let quiet = Instant::now() + Duration::from_secs(5);
    while let Ok(Ok((len, _))) =
        tokio::time::timeout_at(quiet.into(), socket.recv_from(&mut buf)).await
    {
        got += len as u64;
        answers += 1;
    }
    let after = rss_mib("self");
    println!(
        "{label:>8}: {count} INVITEs at {rate:.0}/s, {sent} B out; back: {answers} messages, {got} B ({:.2}× the bytes); transactions alive {}; RSS {before:.1} → {after:.1} MiB",
        got as f64 / sent as f64,
        server.engine.core.layer.alive(),
    );
    Ok(())
}

/// On the runtime `callflow serve` builds from its default configuration.
fn main() -> anyhow::Result<()> {
    common::run_engine(measure)
}

async fn measure() -> anyhow::Result<()> {
    let (count, rate) = (arg(1, 20_000), arg(2, 5_000));
    run("drop", "unknown_sources: drop", "", count, rate).await?;
    run("reject", "unknown_sources: reject", "", count, rate).await?;
    let digest = "credentials: { username: partner, password: s3cret }";
    run("digest", "unknown_sources: drop", digest, count, rate).await?;
    Ok(())
}
