//! Helpers shared by the load examples.

#![allow(dead_code)]

use std::net::UdpSocket;

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
/// `calls` in all, at most 5,000 at once; add arguments and stdio, then run it.
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
            "5000",
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
