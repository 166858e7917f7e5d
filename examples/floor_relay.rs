//! The floor of issue 12's CPU comparison: what relaying a call's datagrams costs a
//! program that does nothing else. A thread blocks in `recv_from` on a UDP socket
//! and sends each datagram on (from SIPp's caller to SIPp's far end on
//! 127.0.0.3:25071, and anything from the far end back to the last caller), with no
//! parsing and no state; SIPp's `uac` calls through it at a fixed rate with zero
//! hold time, 12 datagrams per call. Prints the relay thread's CPU per call, from
//! `/proc/thread-self/schedstat` (nanoseconds). What callflow and Kamailio spend per
//! call above this is their own work; the rest is the kernel's and the machine's
//! (waking the receiver of each datagram, being switched back in).
//!
//! ```sh
//! cargo run --release --example floor_relay -- 500 6000   # rate (calls/s), calls
//! ```
//!
//! Needs `sipp` (Debian package sip-tester).

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

mod common;
use common::kamailio::{FAR, far_end};
use common::{arg, sipp_caller, sipp_counts};

/// This thread's time on a CPU so far, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Relays datagrams on `socket` until `stop`; returns the CPU it spent.
fn relay(socket: UdpSocket, far: SocketAddr, stop: Arc<AtomicBool>) -> u64 {
    let start = thread_cpu_ns();
    let mut caller: Option<SocketAddr> = None;
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue; // the read timeout, to look at `stop`
        };
        let to = if from == far {
            caller
        } else {
            caller = Some(from);
            Some(far)
        };
        if let Some(to) = to {
            let _ = socket.send_to(&buf[..n], to);
        }
    }
    thread_cpu_ns() - start
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (rate, calls) = (arg(1, 500), arg(2, 6000));
    let far: SocketAddr = FAR.parse()?;
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let addr = socket.local_addr()?;
    let _far_end = far_end()?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("relay".into())
            .spawn(move || relay(socket, far, stop))?
    };
    let out = sipp_caller(&["-sn", "uac"], &addr.to_string(), rate, calls)
        .args(["-d", "0"])
        .output()
        .await?;
    stop.store(true, Ordering::Relaxed);
    let cpu_ns = thread
        .join()
        .map_err(|_| anyhow::anyhow!("the relay thread panicked"))?;
    let (ok, failed) = sipp_counts(&out.stdout);
    println!(
        "relay: SIPp uac → relay → SIPp uas, {rate} calls/s × {calls}: {ok} ok, {failed} failed; relay CPU {:.2} s = {:.0} µs per call",
        cpu_ns as f64 / 1e9,
        cpu_ns as f64 / 1e3 / (ok.max(1) as f64)
    );
    Ok(())
}
