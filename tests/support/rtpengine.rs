//! A real rtpengine (Debian's `rtpengine-daemon`) for the media tests, started as
//! the README says (userspace only, pcap recordings), on its own ng port and RTP
//! port range; killed when dropped. And a tiny RTP endpoint: G.711 packets and tones.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use callflow::media::bencode::{Value, dict};
use tokio::net::UdpSocket;

/// A running rtpengine.
pub struct Rtpengine {
    child: Option<Child>,
    /// Its ng address.
    pub ng: SocketAddr,
    /// Where it writes pcaps.
    pub rec: tempfile::TempDir,
    ports: (u16, u16),
}

/// The next block of 100 RTP ports (each test binary runs alone; its tests share).
fn port_block() -> (u16, u16) {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let base = 20000 + (std::process::id() % 20) as u16 * 2000 + n * 100;
    (base, base + 99)
}

impl Rtpengine {
    /// Starts one; `None` (with a message) when it is not installed, unless `CI` is
    /// set: CI installs it (`.ci/run`), so there its absence is a failure.
    pub async fn start() -> Option<Rtpengine> {
        let installed = Command::new("rtpengine")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !installed {
            assert!(
                std::env::var_os("CI").is_none(),
                "rtpengine is not installed"
            );
            eprintln!(
                "rtpengine is not installed (apt-get install rtpengine-daemon): test skipped"
            );
            return None;
        }
        let ng_port = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap().port()
        };
        let mut r = Rtpengine {
            child: None,
            ng: SocketAddr::from(([127, 0, 0, 1], ng_port)),
            rec: tempfile::tempdir().unwrap(),
            ports: port_block(),
        };
        r.restart().await;
        Some(r)
    }

    /// Starts it again (on the same ng port) after [`Rtpengine::stop`].
    pub async fn restart(&mut self) {
        let child = Command::new("rtpengine")
            .args([
                "--config-file=none",
                "--foreground",
                "--log-stderr",
                "--log-level=4",
                "--table=-1",
                "--interface=127.0.0.1",
                &format!("--listen-ng={}", self.ng),
                &format!("--port-min={}", self.ports.0),
                &format!("--port-max={}", self.ports.1),
                "--delete-delay=0",
                "--num-threads=2",
                "--recording-method=pcap",
                &format!("--recording-dir={}", self.rec.path().display()),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rtpengine starts");
        self.child = Some(child);
        for _ in 0..100 {
            if self
                .command(dict([("command", Value::str("ping"))]))
                .await
                .is_some()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("rtpengine did not answer ping");
    }

    /// Kills it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends an ng command; its answer.
    pub async fn command(&self, cmd: Value) -> Option<Value> {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // rtpengine answers a cookie it has seen from its cache: each is new.
        static COOKIE: AtomicU16 = AtomicU16::new(0);
        let cookie = format!(
            "{:05}{} ",
            COOKIE.fetch_add(1, Ordering::Relaxed),
            std::process::id()
        );
        let mut d = cookie.clone().into_bytes();
        cmd.encode_into(&mut d);
        s.send_to(&d, self.ng).await.unwrap();
        let mut buf = vec![0u8; 65536];
        let (n, _) = tokio::time::timeout(Duration::from_millis(300), s.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        Value::decode(buf[..n].strip_prefix(cookie.as_bytes())?).ok()
    }

    /// The call-ids rtpengine holds.
    pub async fn calls(&self) -> Vec<String> {
        let answer = self
            .command(dict([("command", Value::str("list"))]))
            .await
            .expect("list answered");
        answer
            .get("calls")
            .map(|c| {
                c.items()
                    .iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits until rtpengine holds no call (fails after 3 s).
    pub async fn assert_empty(&self) {
        for _ in 0..60 {
            if self.calls().await.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("calls left in rtpengine: {:?}", self.calls().await);
    }
}

impl Drop for Rtpengine {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An RTP endpoint on loopback.
pub struct Rtp {
    pub sock: UdpSocket,
    pub port: u16,
    seq: u16,
    ts: u32,
    ssrc: u32,
}

impl Rtp {
    pub async fn new() -> Rtp {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = sock.local_addr().unwrap().port();
        Rtp {
            sock,
            port,
            seq: 1,
            ts: 0,
            ssrc: rand_u32(),
        }
    }

    /// An SDP (PCMA, PCMU, telephone-event) for this endpoint over `proto`.
    pub fn sdp(&self, proto: &str) -> String {
        format!(
            "v=0\r\no=test 7 7 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} {proto} 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n",
            self.port
        )
    }

    /// The same with an ICE candidate, which callflow must remove.
    pub fn sdp_with_ice(&self, proto: &str) -> String {
        format!(
            "{}a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuv\r\na=candidate:1 1 UDP 2130706431 127.0.0.1 {} typ host\r\n",
            self.sdp(proto),
            self.port
        )
    }

    /// One 20 ms PCMA packet with `payload`.
    pub async fn send(&mut self, payload: &[u8], to: SocketAddr) {
        let mut p = vec![0x80, 8];
        p.extend(self.seq.to_be_bytes());
        p.extend(self.ts.to_be_bytes());
        p.extend(self.ssrc.to_be_bytes());
        p.extend(payload);
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(payload.len() as u32);
        self.sock.send_to(&p, to).await.unwrap();
    }

    /// An RTP packet received within `ms` (RTCP and anything else skipped).
    pub async fn recv(&self, ms: u64) -> Option<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
        let mut buf = vec![0u8; 2048];
        loop {
            let (n, _) = tokio::time::timeout_at(deadline, self.sock.recv_from(&mut buf))
                .await
                .ok()?
                .ok()?;
            let rtp = n >= 12 && buf[0] >> 6 == 2 && !(200..=204).contains(&buf[1]);
            if rtp {
                return Some(buf[..n].to_vec());
            }
        }
    }

    /// Drops whatever has arrived.
    pub async fn drain(&self) {
        while self.recv(20).await.is_some() {}
    }
}

fn rand_u32() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        ^ std::process::id()
}

/// 20 ms of a `hz` tone, A-law encoded (packet `n` of the tone).
pub fn tone(hz: f64, n: usize) -> Vec<u8> {
    (0..160)
        .map(|i| {
            let t = (n * 160 + i) as f64 / 8000.0;
            alaw_encode((8000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16)
        })
        .collect()
}

/// Linear to A-law (ITU-T G.711).
pub fn alaw_encode(pcm: i16) -> u8 {
    let (sign, mut v) = if pcm >= 0 {
        (0x80u8, pcm as i32)
    } else {
        (0u8, -(pcm as i32) - 1)
    };
    v = v.min(32635);
    let byte = if v < 256 {
        (v >> 4) as u8
    } else {
        let seg = (16 - (v as u16).leading_zeros() as i32 - 8).clamp(1, 7);
        ((seg as u8) << 4) | ((v >> (seg + 3)) & 0x0f) as u8
    };
    (byte | sign) ^ 0x55
}

/// The m= port of an SDP body.
pub fn sdp_port(sdp: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(sdp);
    let m = text
        .lines()
        .find(|l| l.starts_with("m=audio"))
        .expect("m=audio");
    m.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Frequency of 16-bit samples at 8 kHz by zero crossings.
pub fn frequency(samples: &[i16]) -> f64 {
    let crossings = samples
        .windows(2)
        .filter(|w| (w[0] < 0) != (w[1] < 0))
        .count();
    crossings as f64 / 2.0 / (samples.len() as f64 / 8000.0)
}
