//! Media anchored in rtpengine against SDP pass-through (issue 11's measure), on the
//! same SIPp load with RTP flowing: SIPp's caller (`examples/scenarios/uac_rtp.xml`)
//! plays a second of G.711 A-law after each answer and SIPp's far end echoes it
//! (`-rtp_echo`), so RTP flows both ways on both legs. callflow runs in this process
//! as `serve` builds it (a `pstn` number routed to a trunk), first with `media: none`,
//! then with `media: { rtpengine }` beside an rtpengine this example starts (as
//! README's Media section says). For each: calls, failures, callflow's CPU per call
//! and rtpengine's; then the call setup time callflow adds (INVITE in → INVITE out,
//! p50 and p99 over sequential calls, as `examples/setup_time` measures it) in both
//! modes. (SIPp's own response times have a 1 ms resolution: too coarse here.)
//!
//! ```sh
//! cargo run --release --example vs_media -- 200 2000    # rate (calls/s), calls
//! ```
//!
//! Needs `sipp` (sip-tester) and `rtpengine` (rtpengine-daemon).

use std::process::Stdio;
use std::time::{Duration, Instant};

use callflow::server::Server;
use tokio::process::Command;

mod common;
use common::{
    arg, cpu_seconds_of, percentile, probe_setup, pstn_server, sipp_caller, sipp_counts,
    sipp_far_end,
};

/// Where SIPp's far end listens.
const FAR: &str = "127.0.0.3:25071";
/// rtpengine's ng address.
const NG: &str = "127.0.0.1:22223";

/// What one run measured.
struct Run {
    ok: u64,
    failed: u64,
    callflow_cpu: f64,
    rtpengine_cpu: f64,
}

impl Run {
    fn print(&self, name: &str) {
        let per = |cpu: f64| cpu / self.ok.max(1) as f64 * 1e6;
        println!(
            "{name:>10}: {} ok, {} failed, callflow CPU {:.0} µs per call, rtpengine CPU {:.0} µs per call",
            self.ok,
            self.failed,
            per(self.callflow_cpu),
            per(self.rtpengine_cpu)
        );
    }
}

/// The first second of SIPp's own G.711 A-law pcap, as `dir/pcap/g711a.pcap`.
fn one_second_pcap(dir: &std::path::Path) -> anyhow::Result<()> {
    let b = std::fs::read("/usr/share/sip-tester/g711a.pcap")?;
    let (mut pos, mut first) = (24, None);
    while let Some(h) = b.get(pos..pos + 16) {
        let at = f64::from(u32::from_le_bytes([h[0], h[1], h[2], h[3]]))
            + f64::from(u32::from_le_bytes([h[4], h[5], h[6], h[7]])) / 1e6;
        if at - *first.get_or_insert(at) > 1.0 {
            break;
        }
        pos += 16 + u32::from_le_bytes([h[8], h[9], h[10], h[11]]) as usize;
    }
    std::fs::create_dir_all(dir.join("pcap"))?;
    std::fs::write(dir.join("pcap/g711a.pcap"), &b[..pos.min(b.len())])?;
    Ok(())
}

/// callflow on `media` (or none) with +918047112233 routed to `destination`.
async fn server(media: bool, destination: &str) -> anyhow::Result<(Server, tempfile::TempDir)> {
    let media_line = if media {
        format!("media: {{ rtpengine: [\"udp://{NG}\"] }}\n")
    } else {
        "media: none\n".to_string()
    };
    pstn_server(&media_line, destination).await
}

/// The setup time callflow adds over `calls` sequential calls: (p50, p99) in µs.
async fn probe(media: bool, calls: u32) -> anyhow::Result<(f64, f64)> {
    let bot = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let caller = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let (server, _conf) = server(media, &bot.local_addr()?.to_string()).await?;
    let engine = server
        .transports
        .local_addr(callflow::sip::Transport::Udp)
        .ok_or_else(|| anyhow::anyhow!("no UDP listener"))?;
    let mut setup = probe_setup(&caller, &bot, engine, calls).await?;
    setup.sort();
    let us = |p: f64| percentile(&setup, p).as_secs_f64() * 1e6;
    Ok((us(0.5), us(0.99)))
}

async fn run(
    media: bool,
    rate: u32,
    calls: u32,
    rtpengine_pid: &str,
    dir: &std::path::Path,
) -> anyhow::Result<Run> {
    let (server, _conf) = server(media, FAR).await?;
    let addr = server
        .transports
        .local_addr(callflow::sip::Transport::Udp)
        .ok_or_else(|| anyhow::anyhow!("no UDP listener"))?;
    let mut far = sipp_far_end(
        &["-sn", "uas", "-rtp_echo", "-mi", "127.0.0.3"],
        "127.0.0.3",
        25071,
    )?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (cf0, rt0) = (cpu_seconds_of("self"), cpu_seconds_of(rtpengine_pid));
    let t0 = Instant::now();
    let scenario = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/scenarios/uac_rtp.xml"
    );
    let out = sipp_caller(
        &["-sf", scenario, "-mi", "127.0.0.1"],
        &addr.to_string(),
        rate,
        calls,
    )
    .current_dir(dir)
    .output()
    .await?;
    let _elapsed = t0.elapsed();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (cf1, rt1) = (cpu_seconds_of("self"), cpu_seconds_of(rtpengine_pid));
    let _ = far.kill().await;
    let (ok, failed) = sipp_counts(&out.stdout);
    Ok(Run {
        ok,
        failed,
        callflow_cpu: cf1 - cf0,
        rtpengine_cpu: if media { rt1 - rt0 } else { 0.0 },
    })
}

/// On the runtime `callflow serve` builds from its default configuration.
fn main() -> anyhow::Result<()> {
    common::run_engine(measure)
}

async fn measure() -> anyhow::Result<()> {
    let (rate, calls) = (arg(1, 200), arg(2, 2000));
    let dir = tempfile::tempdir()?;
    one_second_pcap(dir.path())?;
    let mut rtpengine = Command::new("rtpengine")
        .args([
            "--config-file=none",
            "--foreground",
            "--log-stderr",
            "--log-level=3",
            "--table=-1",
        ])
        .args(["--interface=127.0.0.1", &format!("--listen-ng={NG}")])
        .args([
            "--port-min=30000",
            "--port-max=50000",
            "--delete-delay=0",
            "--num-threads=2",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| anyhow::anyhow!("rtpengine (apt-get install rtpengine-daemon): {e}"))?;
    let pid = rtpengine.id().map(|p| p.to_string()).unwrap_or_default();
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "SIPp uac (1 s of PCMA, echoed back) → callflow → SIPp uas, {rate} calls/s × {calls} calls"
    );
    let none = run(false, rate, calls, &pid, dir.path()).await?;
    none.print("media none");
    let anchored = run(true, rate, calls, &pid, dir.path()).await?;
    anchored.print("rtpengine");
    let per = |cpu: f64, r: &Run| cpu / r.ok.max(1) as f64;
    println!(
        "     ratio: callflow CPU per call with rtpengine = {:.2}× with media none",
        per(anchored.callflow_cpu, &anchored) / per(none.callflow_cpu, &none).max(1e-9),
    );
    let n = 1000;
    let (n50, n99) = probe(false, n).await?;
    let (r50, r99) = probe(true, n).await?;
    println!("setup added by callflow over {n} sequential calls (INVITE in → INVITE out):");
    println!("media none   p50 {n50:>7.1} µs   p99 {n99:>7.1} µs");
    println!(
        "rtpengine    p50 {r50:>7.1} µs   p99 {r99:>7.1} µs   ({:.2}× and {:.2}×)",
        r50 / n50,
        r99 / n99
    );
    let _ = rtpengine.kill().await;
    Ok(())
}
