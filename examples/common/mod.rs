//! Helpers shared by the load examples.

#![allow(dead_code)]

pub mod kamailio;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// CPU time (user + system) of a process, in seconds, from /proc/PID/stat.
pub fn cpu_seconds_of(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    let hz = 100.0; // USER_HZ on Linux
    (ticks(11) + ticks(12)) / hz
}

/// The CPU time of this process's engine threads (the runtime's, named
/// `callflow-worker`: [`run_engine`], and the logger's, `callflow-log`, which writes
/// the lines it gathered), leaving out what the example's other threads spend (a
/// probe, the main thread that waits for the engine's).
pub fn engine_cpu_seconds() -> f64 {
    engine_tasks().map(|t| cpu_seconds_of(&t)).sum()
}

/// The context switches of this process's engine threads so far (as
/// [`engine_cpu_seconds`] counts their CPU): see [`switches_of`].
pub fn engine_switches() -> Switches {
    engine_tasks().map(|t| switches_of(&t)).sum()
}

/// The engine threads' `/proc` names (`self/task/TID`).
fn engine_tasks() -> impl Iterator<Item = String> {
    tasks_of("self").filter(|t| {
        std::fs::read_to_string(format!("/proc/{t}/comm"))
            .is_ok_and(|c| matches!(c.trim(), "callflow-worker" | "callflow-log"))
    })
}

/// Context switches: each a wake-up that cost a switch back in, and a cache left
/// to whatever ran in between.
#[derive(Clone, Copy, Default, Debug, PartialEq)]
pub struct Switches {
    /// The task went to sleep (waiting for a datagram, a timer, a lock).
    pub slept: u64,
    /// The task was preempted while it could still run (typically by a process a
    /// datagram it sent had just woken).
    pub preempted: u64,
}

impl Switches {
    /// The counts over `calls` calls, as the examples print them.
    pub fn per_call(&self, calls: u64) -> String {
        let n = calls.max(1) as f64;
        format!(
            "per call, {:.1} sleeps and {:.1} preemptions",
            self.slept as f64 / n,
            self.preempted as f64 / n
        )
    }
}

impl std::ops::Sub for Switches {
    type Output = Switches;
    fn sub(self, o: Switches) -> Switches {
        Switches {
            slept: self.slept.saturating_sub(o.slept),
            preempted: self.preempted.saturating_sub(o.preempted),
        }
    }
}

impl std::iter::Sum for Switches {
    fn sum<I: Iterator<Item = Switches>>(iter: I) -> Switches {
        iter.fold(Switches::default(), |a, b| Switches {
            slept: a.slept + b.slept,
            preempted: a.preempted + b.preempted,
        })
    }
}

/// The context switches of every thread of process `pid` so far (`/proc/PID/status`
/// counts only its first thread's).
pub fn process_switches(pid: &str) -> Switches {
    tasks_of(pid).map(|t| switches_of(&t)).sum()
}

/// The `/proc` names (`PID/task/TID`) of process `pid`'s threads; none for a process
/// that is gone.
fn tasks_of(pid: &str) -> impl Iterator<Item = String> {
    let pid = pid.to_owned();
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .map(move |t| format!("{pid}/task/{}", t.file_name().to_string_lossy()))
}

/// A task's context switches so far (`voluntary_ctxt_switches` and
/// `nonvoluntary_ctxt_switches` of /proc/TASK/status: a single-threaded process's
/// pid, or `self/task/TID`); zero for a task that is gone.
pub fn switches_of(task: &str) -> Switches {
    let status = std::fs::read_to_string(format!("/proc/{task}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    Switches {
        slept: field("voluntary_ctxt_switches:"),
        preempted: field("nonvoluntary_ctxt_switches:"),
    }
}

/// This process's CPU time.
pub fn cpu_seconds() -> f64 {
    cpu_seconds_of("self")
}

pub fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap_or(15060)
}

/// Successful and failed calls from SIPp's final screen (cumulative column).
pub fn sipp_counts(stdout: &[u8]) -> (u64, u64) {
    let screen = String::from_utf8_lossy(stdout);
    let count = |label: &str| -> u64 {
        screen
            .lines()
            .rev()
            .filter(|l| l.contains(label))
            .find_map(|l| l.split('|').nth(2).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0)
    };
    (count("Successful call"), count("Failed call"))
}

/// SIPp as a far end: `scenario` (`["-sn", "uas"]` or `["-sf", path]`) listening on
/// `ip:port` until it is killed (or dropped).
pub fn sipp_far_end(
    scenario: &[&str],
    ip: &str,
    port: u16,
) -> std::io::Result<tokio::process::Child> {
    tokio::process::Command::new("sipp")
        .args(scenario)
        .args(["-i", ip, "-p", &port.to_string()])
        .args(["-nostdin", "-cp", &free_port().to_string()])
        .args(["-max_socket", "2000"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
}

/// SIPp's caller: `scenario` calling +918047112233 at `target`, `rate` calls a second,
/// `calls` in all, at most 20,000 at once; add arguments and stdio, then run it.
pub fn sipp_caller(
    scenario: &[&str],
    target: &str,
    rate: u32,
    calls: u32,
) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("sipp");
    c.args(scenario)
        .args(["-i", "127.0.0.1", "-p", &free_port().to_string()])
        .args(["-s", "+918047112233", target])
        .args([
            "-r",
            &rate.to_string(),
            "-m",
            &calls.to_string(),
            "-l",
            "20000",
        ])
        .args([
            "-nostdin",
            "-cp",
            &free_port().to_string(),
            "-timeout",
            "600s",
        ])
        .stdin(std::process::Stdio::null());
    c
}

/// Prints the median of per-round ratios (with their range) when there are several
/// rounds: `what` names the ratio, `target` is issue 12's.
pub fn print_median(ratios: &mut [f64], what: &str, target: f64) {
    if ratios.len() < 2 {
        return;
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "median ratio over {} rounds: {what} = {:.2}× (min {:.2}, max {:.2}; target ≤ {target})",
        ratios.len(),
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );
}

/// The value at fraction `p` of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A caller's INVITE (PCMA at port 4000) for call `n` to +918047112233.
pub fn invite(n: u32, caller: SocketAddr, engine: SocketAddr) -> String {
    invite_to("+918047112233", &format!("setup-{n}"), caller, engine)
}

/// An INVITE to `number` through `engine` with Call-ID `call_id`.
pub fn invite_to(number: &str, call_id: &str, caller: SocketAddr, engine: SocketAddr) -> String {
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n";
    format!(
        "INVITE sip:{number}@{engine} SIP/2.0\r\nVia: SIP/2.0/UDP {caller};branch=z9hG4bK{call_id};rport\r\nMax-Forwards: 70\r\nFrom: <sip:+919812345678@{caller}>;tag=c{call_id}\r\nTo: <sip:{number}@{engine}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:c@{caller}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// Answers the bot's INVITE with 486 (the call ends at once) and ACKs are ignored.
pub fn busy_for(invite: &str) -> String {
    let mut out = String::from("SIP/2.0 486 Busy Here\r\n");
    for line in invite.split("\r\n").skip(1) {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("via:")
            || lower.starts_with("from:")
            || lower.starts_with("call-id:")
            || lower.starts_with("cseq:")
        {
            out.push_str(line);
            out.push_str("\r\n");
        } else if lower.starts_with("to:") {
            out.push_str(line);
            out.push_str(";tag=bot\r\n");
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

/// The caller's ACK for the final non-2xx `response` to its `invite` (RFC 3261
/// §17.1.1.3: the INVITE's Request-URI, Via, From, Call-ID and CSeq number, the
/// response's To). Without it callflow's server transaction would resend its final
/// response for 32 s (Timer G until Timer H), work a real caller does not cause.
pub fn ack_for(invite: &str, response: &str) -> String {
    let request_uri = invite.split(' ').nth(1).unwrap_or("");
    let header = |text: &str, name: &str| {
        text.split("\r\n")
            .find(|l| l.len() > name.len() && l[..name.len()].eq_ignore_ascii_case(name))
            .unwrap_or("")
            .to_string()
    };
    let cseq = header(invite, "cseq:").replace("INVITE", "ACK");
    format!(
        "ACK {request_uri} SIP/2.0\r\n{}\r\nMax-Forwards: 70\r\n{}\r\n{}\r\n{}\r\n{cseq}\r\nContent-Length: 0\r\n\r\n",
        header(invite, "via:"),
        header(invite, "from:"),
        header(response, "to:"),
        header(invite, "call-id:"),
    )
}

/// `calls` sequential calls from `caller` through `engine` to `bot`, each refused by
/// the bot with 486: the time from the caller's INVITE to the bot's, per call.
pub async fn probe_setup(
    caller: &tokio::net::UdpSocket,
    bot: &tokio::net::UdpSocket,
    engine: SocketAddr,
    calls: u32,
) -> std::io::Result<Vec<Duration>> {
    let caller_addr = caller.local_addr()?;
    let mut buf = vec![0u8; 65536];
    let mut setup = Vec::with_capacity(calls as usize);
    for n in 0..calls {
        let msg = invite(n, caller_addr, engine);
        let t0 = Instant::now();
        caller.send_to(msg.as_bytes(), engine).await?;
        let (len, from) = loop {
            let (len, from) = bot.recv_from(&mut buf).await?;
            if buf[..len].starts_with(b"INVITE") {
                break (len, from);
            }
        };
        setup.push(t0.elapsed());
        let text = String::from_utf8_lossy(&buf[..len]).to_string();
        bot.send_to(busy_for(&text).as_bytes(), from).await?;
        // Drain the caller's responses (100, then the final one, acknowledged) before
        // the next call.
        loop {
            let (len, _) = caller.recv_from(&mut buf).await?;
            if buf[..len].starts_with(b"SIP/2.0 ") && !buf[..len].starts_with(b"SIP/2.0 1") {
                let ack = ack_for(&msg, &String::from_utf8_lossy(&buf[..len]));
                caller.send_to(ack.as_bytes(), engine).await?;
                break;
            }
        }
    }
    Ok(setup)
}

/// Command-line argument `i` as a number, or `default`.
pub fn arg(i: usize, default: u32) -> u32 {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// Resident memory now (VmRSS) of process `pid` (or `self`), in MiB.
pub fn rss_mib(pid: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// `callflow serve` as an operator runs it, in this process: +918047112233 a `pstn`
/// number routed to `destination`, carriers from 127.0.0.1, and `extra` (more
/// `callflow.yaml` lines, such as `media:`). Keep the directory while it runs.
pub async fn pstn_server(
    extra: &str,
    destination: &str,
) -> anyhow::Result<(callflow::server::Server, tempfile::TempDir)> {
    pstn_server_probed(extra, destination, None).await
}

/// [`pstn_server`], and with `probe`, a second `pstn` number, [`PROBE_NUMBER`],
/// routed there.
pub async fn pstn_server_probed(
    extra: &str,
    destination: &str,
    probe: Option<SocketAddr>,
) -> anyhow::Result<(callflow::server::Server, tempfile::TempDir)> {
    let conf = tempfile::tempdir()?;
    std::fs::create_dir(conf.path().join("flows"))?;
    let mut text = format!(
        "sip: {{ listen: [\"udp://127.0.0.1:0\"], options_interval: null }}\nflows: flows\n{extra}carriers:\n  - {{ name: pstn, uri: \"sip:127.0.0.1:9\", addresses: [127.0.0.1/32] }}\ntrunks:\n  - sid: bench\n    destinations: [\"sip:{destination}\"]\n    numbers: [{{ number: \"+918047112233\", mode: pstn }}]\n"
    );
    if let Some(probe) = probe {
        text.push_str(&format!(
            "  - sid: probe\n    destinations: [\"sip:{probe}\"]\n    numbers: [{{ number: \"{PROBE_NUMBER}\", mode: pstn }}]\n"
        ));
    }
    let path = conf.path().join("callflow.yaml");
    std::fs::write(&path, text)?;
    let config = callflow::config::Config::load(&path)?;
    let server =
        callflow::server::Server::start(&config, callflow::sip::transaction::Timers::default())
            .await?;
    Ok((server, conf))
}

/// Runs `main` on the runtime `callflow serve` runs the engine on, as its default
/// configuration builds it (`workers: 1`: tokio's current-thread scheduler, whose
/// tasks run on the thread that drives it), so that what an example measures is
/// what `serve` does. That thread is one of the example's own, named
/// `callflow-worker` as a multi-thread runtime's workers are, so that
/// [`engine_cpu_seconds`] finds it; the example's own work on it (starting SIPp,
/// waiting for it) is not per call. The engine logs as `serve` does too
/// (`RUST_LOG`, else `info`), into [`ENGINE_LOG`] in the temporary directory
/// instead of the terminal: writing its lines is part of a call's cost.
pub fn run_engine<F, Fut>(main: F) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let log = std::fs::File::create(std::env::temp_dir().join(ENGINE_LOG))?;
    let held = callflow::server::init_logging(log);
    let runtime = callflow::server::runtime(&callflow::config::Config::default())?;
    let ran = std::thread::Builder::new()
        .name("callflow-worker".into())
        .spawn(move || runtime.block_on(main()))?
        .join()
        .map_err(|_| anyhow::anyhow!("the engine's thread panicked"));
    held.flush();
    ran?
}

/// Where [`run_engine`]'s engine logs, in the temporary directory.
pub const ENGINE_LOG: &str = "callflow-example-engine.log";

/// The number [`pstn_server_probed`] routes to its probe.
pub const PROBE_NUMBER: &str = "+918047112299";

/// Setup times measured while a load runs: what [`probe_under_load`] returns.
pub struct Probed {
    /// Caller's INVITE sent → callflow's INVITE arrived in the probe's bot socket (the
    /// kernel's receive timestamp), per call.
    pub through: Vec<Duration>,
    /// The same calls timed until the probe's thread read the INVITE: `through` plus
    /// the probe thread's own wake-up, which is not callflow's.
    pub through_read: Vec<Duration>,
    /// The baseline, measured in turn with each call: one datagram sent straight
    /// from the caller's socket to the bot's (its arrival timestamp, as `through`).
    pub direct: Vec<Duration>,
    /// When each call in `through` was sent, from the probe's start (to see whether
    /// slow setups cluster).
    pub sent_at: Vec<Duration>,
    /// A second reference, measured in turn too: one datagram through a relay thread
    /// of this process that sleeps in `recv` and passes it on to the bot, the least
    /// any program woken by a packet adds on this machine under the same load (the
    /// wake-up and the wait for a core that the engine's INVITE pays too).
    pub relayed: Vec<Duration>,
}

/// From a thread of its own (blocking sockets: the engine's thread is not shared),
/// every 20 ms until `stop`: one call from a caller socket through `engine` to
/// [`PROBE_NUMBER`], whose INVITE arrives at `bot` and is refused with 486, and one
/// datagram from the caller's socket straight to `bot`.
pub fn probe_under_load(
    engine: SocketAddr,
    bot: std::net::UdpSocket,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<Probed>> {
    let caller = std::net::UdpSocket::bind("127.0.0.1:0")?;
    caller.set_read_timeout(Some(Duration::from_secs(2)))?;
    bot.set_read_timeout(Some(Duration::from_secs(2)))?;
    nix::sys::socket::setsockopt(&bot, nix::sys::socket::sockopt::ReceiveTimestampns, &true)
        .map_err(std::io::Error::from)?;
    let relay = relay_to(bot.local_addr()?, stop.clone())?;
    Ok(std::thread::spawn(move || {
        let mut probed = Probed {
            through: Vec::new(),
            through_read: Vec::new(),
            direct: Vec::new(),
            sent_at: Vec::new(),
            relayed: Vec::new(),
        };
        let start = Instant::now();
        let mut n = 0u32;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            n += 1;
            let at = start.elapsed();
            if let Some((t, read)) = probe_call(&caller, &bot, engine, n) {
                probed.through.push(t);
                probed.through_read.push(read);
                probed.sent_at.push(at);
            }
            if let Some(t) = probe_datagram(&caller, &bot, bot.local_addr().ok()) {
                probed.direct.push(t);
            }
            if let Some(t) = probe_datagram(&caller, &bot, Some(relay)) {
                probed.relayed.push(t);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        probed
    }))
}

/// One probe call: the setup time until callflow's INVITE arrived and until the
/// probe read it, or `None` if something did not arrive.
fn probe_call(
    caller: &std::net::UdpSocket,
    bot: &std::net::UdpSocket,
    engine: SocketAddr,
    n: u32,
) -> Option<(Duration, Duration)> {
    let mut buf = vec![0u8; 65536];
    let msg = invite_to(
        PROBE_NUMBER,
        &format!("probe-{n}"),
        caller.local_addr().ok()?,
        engine,
    );
    let (t0, sent) = (Instant::now(), std::time::SystemTime::now());
    caller.send_to(msg.as_bytes(), engine).ok()?;
    let (len, from, arrived) = loop {
        let (len, from, arrived) = recv_stamped(bot, &mut buf)?;
        if buf[..len].starts_with(b"INVITE") {
            break (len, from, arrived);
        }
    };
    let setup = (arrived.duration_since(sent).ok()?, t0.elapsed());
    let text = String::from_utf8_lossy(&buf[..len]).to_string();
    bot.send_to(busy_for(&text).as_bytes(), from).ok()?;
    loop {
        let (len, _) = caller.recv_from(&mut buf).ok()?;
        if buf[..len].starts_with(b"SIP/2.0 ") && !buf[..len].starts_with(b"SIP/2.0 1") {
            let ack = ack_for(&msg, &String::from_utf8_lossy(&buf[..len]));
            caller.send_to(ack.as_bytes(), engine).ok()?;
            return Some(setup);
        }
    }
}

/// A thread that passes every datagram it gets on to `to`, until `stop`; its address.
fn relay_to(
    to: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<SocketAddr> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let addr = socket.local_addr()?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok((len, _)) = socket.recv_from(&mut buf) {
                let _ = socket.send_to(&buf[..len], to);
            }
        }
    });
    Ok(addr)
}

/// One datagram from the caller's socket to `via` (the bot's socket, or a relay to
/// it), timed until the bot has it.
fn probe_datagram(
    caller: &std::net::UdpSocket,
    bot: &std::net::UdpSocket,
    via: Option<SocketAddr>,
) -> Option<Duration> {
    let mut buf = [0u8; 64];
    let sent = std::time::SystemTime::now();
    caller.send_to(b"probe", via?).ok()?;
    loop {
        let (len, _, arrived) = recv_stamped(bot, &mut buf)?;
        if &buf[..len] == b"probe" {
            return arrived.duration_since(sent).ok();
        }
    }
}

/// One datagram from `socket` (with `SO_TIMESTAMPNS` on): its length, its source,
/// and when the kernel received it, so that the reader's own wake-up is not timed.
fn recv_stamped(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> Option<(usize, SocketAddr, std::time::SystemTime)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrIn, recvmsg};
    use std::os::fd::AsRawFd;
    let mut space = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrIn>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .ok()?;
    let from = SocketAddr::from(std::net::SocketAddrV4::from(msg.address?));
    let stamp = msg.cmsgs().ok()?.find_map(|c| match c {
        ControlMessageOwned::ScmTimestampns(t) => Some(t),
        _ => None,
    })?;
    let at = std::time::UNIX_EPOCH + Duration::new(stamp.tv_sec() as u64, stamp.tv_nsec() as u32);
    Some((msg.bytes, from, at))
}
