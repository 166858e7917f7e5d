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
