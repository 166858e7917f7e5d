//! Kamailio as the baseline of the load examples: a stateful (tm) proxy with
//! `bench/kamailio-proxy.cfg` (Debian package `kamailio`) relaying SIPp's plain calls
//! to a SIPp far end on [`FAR`].

use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::{cpu_seconds_of, sipp_caller, sipp_counts, sipp_far_end};

/// Where SIPp's far end listens (as the Kamailio configuration has it).
pub const FAR: &str = "127.0.0.3:25071";
/// Where Kamailio listens.
pub const KAMAILIO: &str = "127.0.0.1:25065";

/// SIPp's built-in `uas` on [`FAR`], until it is killed (or dropped).
pub fn far_end() -> std::io::Result<Child> {
    sipp_far_end(&["-sn", "uas"], "127.0.0.3", 25071)
}

/// A running Kamailio and the far end it relays to.
pub struct Kamailio {
    /// Kamailio's main process (its children are found under it).
    main: Child,
    /// Its process id.
    pid: u32,
    /// SIPp's far end.
    far: Child,
    /// Holds the configuration file.
    _dir: tempfile::TempDir,
}

impl Kamailio {
    /// Starts Kamailio and the far end; `None`, after saying so, when Kamailio is not
    /// installed.
    pub async fn start() -> anyhow::Result<Option<Kamailio>> {
        if std::process::Command::new("kamailio")
            .arg("-v")
            .output()
            .is_err()
        {
            println!(" kamailio: not installed (apt-get install kamailio); skipped");
            return Ok(None);
        }
        let dir = tempfile::tempdir()?;
        let cfg = dir.path().join("kamailio.cfg");
        std::fs::write(&cfg, include_str!("../../bench/kamailio-proxy.cfg"))?;
        let main = Command::new("kamailio")
            // 256 MB of shared memory: with the package's default 64 MB, tm runs out
            // of it at 500 calls/s (`could not allocate shared memory`), drops
            // requests and logs each, and SIPp retransmits (BENCHMARKS.md, session 11).
            .args(["-f", &cfg.display().to_string(), "-DD", "-E", "-m", "256"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let pid = main
            .id()
            .ok_or_else(|| anyhow::anyhow!("kamailio did not start"))?;
        let far = far_end()?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        if tree(pid).len() < 2 {
            anyhow::bail!("kamailio did not start (is {KAMAILIO} taken by a stray one?)");
        }
        Ok(Some(Kamailio {
            main,
            pid,
            far,
            _dir: dir,
        }))
    }

    /// Kamailio's processes, main first.
    pub fn processes(&self) -> Vec<String> {
        tree(self.pid)
    }

    /// The CPU time of all its processes, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        self.processes().iter().map(|p| cpu_seconds_of(p)).sum()
    }

    /// Stops it, its children and the far end.
    pub async fn stop(mut self) {
        let _ = self.far.kill().await;
        // Its children outlive the main process unless told too.
        let _ = std::process::Command::new("kill")
            .args(self.processes().iter().rev())
            .status();
        let _ = self.main.kill().await;
    }
}

/// Kamailio's CPU per plain call (SIPp's built-in `uac` → Kamailio → `uas`, zero hold
/// time) at `rate` calls/s × `calls`: (successful, failed, CPU seconds, its
/// processes' context switches), or `None` when Kamailio is not installed.
pub async fn plain_calls(
    rate: u32,
    calls: u32,
) -> anyhow::Result<Option<(u64, u64, f64, super::Switches)>> {
    let Some(kamailio) = Kamailio::start().await? else {
        return Ok(None);
    };
    let switches = |k: &Kamailio| -> super::Switches {
        k.processes().iter().map(|p| super::switches_of(p)).sum()
    };
    let switches0 = switches(&kamailio);
    let before = kamailio.cpu_seconds();
    let out = sipp_caller(&["-sn", "uac"], KAMAILIO, rate, calls)
        .args(["-d", "0"])
        .output()
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu = kamailio.cpu_seconds() - before;
    let switches = switches(&kamailio) - switches0;
    kamailio.stop().await;
    let (ok, failed) = sipp_counts(&out.stdout);
    Ok(Some((ok, failed, cpu, switches)))
}

/// `pid` and every process below it.
pub fn tree(pid: u32) -> Vec<String> {
    let mut out = vec![pid.to_string()];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i].clone();
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                let stat =
                    std::fs::read_to_string(format!("/proc/{name}/stat")).unwrap_or_default();
                let ppid = stat
                    .rsplit_once(')')
                    .and_then(|(_, r)| r.split_whitespace().nth(1))
                    .unwrap_or("");
                if ppid == parent && !out.contains(&name) {
                    out.push(name);
                }
            }
        }
        i += 1;
    }
    out
}
