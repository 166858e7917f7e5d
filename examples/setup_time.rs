//! The call-setup time callflow adds: INVITE in from the caller → INVITE out to the
//! partner, with the flow's dynamic URL answered by a local HTTP server in between.
//! Prints p50 and p99 over N sequential calls, and as the baseline measured in the same
//! run, the time of the same two hops without callflow: one loopback UDP datagram plus
//! one GET of the same URL on a pooled client.
//!
//! ```sh
//! cargo run --release --example setup_time -- 2000
//! ```

use std::time::Instant;

use callflow::config::Config;
use callflow::server::Server;
use callflow::sip::transaction::Timers;
use tokio::net::UdpSocket;

mod common;
use common::{invite, percentile, probe_setup};

/// On the runtime `callflow serve` builds from its default configuration.
fn main() -> anyhow::Result<()> {
    common::run_engine(measure)
}

async fn measure() -> anyhow::Result<()> {
    let calls: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    // The partner: a dynamic URL answering with the bot's trunk.
    let app = axum::Router::new().route(
        "/route",
        axum::routing::get(|| async { r#"{"destination":{"trunk":"trunk_bot"}}"# }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let http = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    let bot = UdpSocket::bind("127.0.0.1:0").await?;
    let caller = UdpSocket::bind("127.0.0.1:0").await?;
    let dir = tempfile::tempdir()?;
    std::fs::create_dir(dir.path().join("flows"))?;
    std::fs::write(
        dir.path().join("flows/f.yaml"),
        format!(
            "flow: f\nstart: c\napplets:\n  c:\n    connect: {{ dynamic_url: \"http://{http}/route\" }}\n    next: bye\n  bye:\n    hangup: {{}}\n"
        ),
    )?;
    let cfg = format!(
        "sip: {{ listen: [\"udp://127.0.0.1:0\"], options_interval: null }}\nflows: flows\ncarriers:\n  - {{ name: p, uri: \"sip:127.0.0.1:9\", addresses: [127.0.0.1/32] }}\ntrunks:\n  - sid: trunk_bot\n    destinations: [\"sip:{}\"]\n    numbers: [{{ number: \"+918047112233\", mode: flow, flow: f }}]\n",
        bot.local_addr()?
    );
    let path = dir.path().join("callflow.yaml");
    std::fs::write(&path, cfg)?;
    let server = Server::start(&Config::load(&path)?, Timers::default()).await?;
    let engine = server
        .transports
        .local_addr(callflow::sip::Transport::Udp)
        .ok_or_else(|| anyhow::anyhow!("no UDP listener"))?;
    let caller_addr = caller.local_addr()?;
    let mut setup = probe_setup(&caller, &bot, engine, calls).await?;
    let mut buf = vec![0u8; 65536];
    // Baseline: the same hops without callflow.
    let client = reqwest::Client::new();
    let url = format!("http://{http}/route");
    let mut base = Vec::with_capacity(calls as usize);
    for n in 0..calls {
        let msg = invite(n, caller_addr, bot.local_addr()?);
        let t0 = Instant::now();
        caller.send_to(msg.as_bytes(), bot.local_addr()?).await?;
        bot.recv_from(&mut buf).await?;
        client.get(&url).send().await?.bytes().await?;
        base.push(t0.elapsed());
    }
    setup.sort();
    base.sort();
    let (p50, p99) = (percentile(&setup, 0.5), percentile(&setup, 0.99));
    let (b50, b99) = (percentile(&base, 0.5), percentile(&base, 0.99));
    println!("calls                  {calls}");
    println!(
        "setup via callflow     p50 {:>8.1} µs   p99 {:>8.1} µs",
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
    println!(
        "baseline (UDP + GET)   p50 {:>8.1} µs   p99 {:>8.1} µs",
        b50.as_secs_f64() * 1e6,
        b99.as_secs_f64() * 1e6
    );
    println!(
        "callflow adds          p50 {:>8.1} µs   ({:.2}× the baseline)",
        (p50.as_secs_f64() - b50.as_secs_f64()) * 1e6,
        p50.as_secs_f64() / b50.as_secs_f64()
    );
    drop(server);
    Ok(())
}
