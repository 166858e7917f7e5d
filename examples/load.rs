//! Whole calls through the B2BUA at a fixed rate: SIPp caller → callflow → SIPp far
//! end, on loopback UDP. Prints the calls per second reached, failed calls, and
//! callflow's CPU seconds per 1,000 calls (this process's user+system time from
//! /proc; SIPp runs in its own processes and is not counted). As a baseline measured
//! in the same run it prints the SIPp far end's own CPU time for the same calls.
//!
//! ```sh
//! cargo run --release --example load -- 500 5000     # rate (calls/s), number of calls
//! ```
//!
//! Needs `sipp` (Debian package sip-tester).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use callflow::call::{SipStack, StackConfig};
use callflow::runtime::{LegOutcome, LegRequest};
use callflow::sip::transport::TransportConfig;
use callflow::sip::{Transport, Uri};

mod common;
use common::{cpu_seconds, cpu_seconds_of, free_port, sipp_caller, sipp_far_end};

/// On the runtime `callflow serve` builds from its default configuration.
fn main() -> anyhow::Result<()> {
    common::run_engine(measure)
}

async fn measure() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rate: u32 = args.first().and_then(|a| a.parse().ok()).unwrap_or(500);
    let calls: u32 = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(rate * 10);

    let config = TransportConfig {
        listen: vec!["udp://127.0.0.1:0".parse().map_err(anyhow::Error::msg)?],
        ..Default::default()
    };
    let far_port = free_port();
    let far_uri = format!("sip:bot@127.0.0.1:{far_port}");
    let answered = Arc::new(AtomicU64::new(0));
    let counted = answered.clone();
    let stack = SipStack::start(
        StackConfig::new(config),
        Arc::new(move |mut call| {
            let (far_uri, counted) = (far_uri.clone(), counted.clone());
            Box::pin(async move {
                if call.accept_offer().await.is_err() {
                    return;
                }
                let Ok(Uri::Sip(uri)) = Uri::parse(&far_uri) else {
                    return;
                };
                let leg = LegRequest {
                    uri,
                    headers: vec![],
                    ring_timeout: Duration::from_secs(10),
                    caller_id: None,
                    media: Default::default(),
                };
                if call.dial(leg).await == LegOutcome::Answered {
                    counted.fetch_add(1, Ordering::Relaxed);
                    call.wait(Duration::from_secs(60)).await;
                }
                call.hangup(480).await;
            })
        }),
    )
    .await?;
    let engine_addr = stack
        .transports
        .local_addr(Transport::Udp)
        .ok_or_else(|| anyhow::anyhow!("no UDP listener"))?;

    let mut far = sipp_far_end(&["-sn", "uas"], "127.0.0.1", far_port)?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let far_pid = far.id().map(|p| p.to_string()).unwrap_or_default();
    let (cpu0, far_cpu0) = (cpu_seconds(), cpu_seconds_of(&far_pid));
    let t0 = Instant::now();
    let out = sipp_caller(&["-sn", "uac"], &engine_addr.to_string(), rate, calls)
        .args(["-d", "0"])
        .output()
        .await?;
    let elapsed = t0.elapsed().as_secs_f64();
    // Let the last BYEs and their transactions settle before reading the CPU clock.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu = cpu_seconds() - cpu0;
    let far_cpu = cpu_seconds_of(&far_pid) - far_cpu0;
    let _ = far.kill().await;

    let (ok, failed) = common::sipp_counts(&out.stdout);
    let bridged = answered.load(Ordering::Relaxed);
    println!("rate asked          {rate} calls/s, {calls} calls");
    println!("elapsed             {elapsed:.2} s");
    println!("calls/s reached     {:.1}", ok as f64 / elapsed);
    println!("successful calls    {ok} (SIPp caller); bridged by callflow: {bridged}");
    println!("failed calls        {failed}");
    println!("callflow CPU        {cpu:.2} s");
    println!(
        "CPU per 1000 calls  {:.3} s ({:.0} µs per call)",
        cpu / (ok.max(1) as f64) * 1000.0,
        cpu / (ok.max(1) as f64) * 1e6
    );
    println!(
        "baseline: SIPp far end CPU {far_cpu:.2} s for the same calls (one leg, half the messages); callflow / SIPp uas = {:.2}",
        cpu / far_cpu.max(0.001)
    );
    drop(stack);
    Ok(())
}
