//! The shield in front of everything SIP: sources that flood or guess passwords are
//! blocked, and a blocked source's packets are dropped before they are parsed.
//!
//! - **Request rate** (Kamailio's pike is the model): more than `per_second` packets
//!   in one second from one source blocks it. Carriers' and trunks' addresses, and
//!   every address callflow sent a request to in the last five minutes (the far ends
//!   of its calls), are exempt: they carry the traffic.
//! - **Failed authentications**: more than `auth_failures` in a minute from one
//!   source blocks it; more than `auth_failures` in a minute for one user name marks
//!   the name as under attack, and then any source that fails for it is blocked at
//!   once (a distributed guesser is stopped; the trunk's own source, which does not
//!   fail, is not).
//! - A block lasts `block`, doubling each time the same source is blocked again, up
//!   to an hour. Each block is counted and logged once (at most one log line a
//!   second; the lines skipped are counted in the next).

use super::NetworkHasher;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The longest block.
pub const MAX_BLOCK: Duration = Duration::from_secs(3600);

/// Entries kept before the table is swept of sources with nothing to remember.
const SWEEP_AT: usize = 50_000;

/// The shield's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShieldConfig {
    /// Packets a second from one source before it is blocked.
    pub per_second: u32,
    /// Failed authentications a minute, per source and per user name.
    pub auth_failures: u32,
    /// The first block's length.
    pub block: Duration,
}

impl Default for ShieldConfig {
    fn default() -> Self {
        ShieldConfig {
            per_second: 200,
            auth_failures: 5,
            block: Duration::from_secs(60),
        }
    }
}

/// Why a source was blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockReason {
    /// Too many packets a second.
    Flood,
    /// Too many failed authentications.
    AuthFailures,
}

/// What the shield remembers of one source.
#[derive(Debug)]
struct Source {
    /// The start of the current one-second window, and packets in it.
    window: (Instant, u32),
    /// The start of the current one-minute window, and failures in it.
    failures: (Instant, u32),
    /// Until when it is blocked.
    blocked_until: Option<Instant>,
    /// How many times it has been blocked.
    strikes: u32,
}

impl Source {
    fn new(now: Instant) -> Source {
        Source {
            window: (now, 0),
            failures: (now, 0),
            blocked_until: None,
            strikes: 0,
        }
    }
}

/// Counters, read into the metrics.
#[derive(Debug, Default)]
pub struct ShieldStats {
    /// Packets dropped because their source was blocked.
    pub dropped: AtomicU64,
    /// Blocks for flooding.
    pub flood_blocks: AtomicU64,
    /// Blocks for failed authentications.
    pub auth_blocks: AtomicU64,
}

/// Decides whether a source is exempt from the request rate (a carrier, a trunk).
pub type Exempt = Arc<dyn Fn(IpAddr) -> bool + Send + Sync>;

/// How long an address callflow sent a request to counts as a peer, exempt from the
/// request rate (the far ends of its calls answer and send BYEs at its call rate).
pub const PEER_MEMORY: Duration = Duration::from_secs(300);

#[derive(Default)]
struct Tables {
    /// Addresses callflow sent requests to, and when it last did.
    peers: HashMap<IpAddr, Instant, NetworkHasher>,
    sources: HashMap<IpAddr, Source, NetworkHasher>,
    /// Per user name: the start of the minute, and failures in it.
    users: HashMap<String, (Instant, u32), NetworkHasher>,
    /// When the last block was logged, and blocks not logged since.
    last_log: Option<(Instant, u64)>,
}

/// The shield.
pub struct Shield {
    config: ShieldConfig,
    tables: Mutex<Tables>,
    exempt: Mutex<Option<Exempt>>,
    /// Counters.
    pub stats: ShieldStats,
}

impl std::fmt::Debug for Shield {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shield")
            .field("config", &self.config)
            .finish()
    }
}

impl Shield {
    /// A shield with `config`.
    pub fn new(config: ShieldConfig) -> Shield {
        Shield {
            config,
            tables: Mutex::new(Tables::default()),
            exempt: Mutex::new(None),
            stats: ShieldStats::default(),
        }
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets what is exempt from the request rate.
    pub fn set_exempt(&self, exempt: Exempt) {
        *self.exempt.lock().unwrap_or_else(PoisonError::into_inner) = Some(exempt);
    }

    /// Callflow sent a request to `peer` (a far end of a call, a carrier): its
    /// traffic is exempt from the request rate for [`PEER_MEMORY`].
    pub fn sent_to(&self, peer: IpAddr) {
        let now = Instant::now();
        let mut t = self.tables();
        if t.peers.len() > SWEEP_AT {
            t.peers
                .retain(|_, at| now.duration_since(*at) < PEER_MEMORY);
        }
        t.peers.insert(peer, now);
    }

    fn is_exempt(&self, source: IpAddr) -> bool {
        let exempt = self
            .exempt
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        exempt.is_some_and(|f| f(source))
    }

    /// Whether a packet from `source` may be read; counts it against the rate.
    pub fn admits(&self, source: IpAddr) -> bool {
        let now = Instant::now();
        {
            let mut t = self.tables();
            if t.sources.len() > SWEEP_AT {
                sweep(&mut t.sources, now);
            }
            let peer = t
                .peers
                .get(&source)
                .is_some_and(|at| now.duration_since(*at) < PEER_MEMORY);
            let s = t.sources.entry(source).or_insert_with(|| Source::new(now));
            if s.blocked_until.is_some_and(|until| now < until) {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            if peer {
                return true;
            }
            if now.duration_since(s.window.0) >= Duration::from_secs(1) {
                s.window = (now, 0);
            }
            s.window.1 += 1;
            if s.window.1 <= self.config.per_second {
                return true;
            }
        }
        // Over the rate: only now ask whether the source is exempt (a carrier or a
        // trunk's address), which costs more than the count.
        if self.is_exempt(source) {
            return true;
        }
        let mut t = self.tables();
        self.block(&mut t, source, now, BlockReason::Flood);
        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Whether `source` is blocked now.
    pub fn is_blocked(&self, source: IpAddr) -> bool {
        let now = Instant::now();
        self.tables()
            .sources
            .get(&source)
            .and_then(|s| s.blocked_until)
            .is_some_and(|until| now < until)
    }

    /// An authentication from `source` for `user` failed.
    pub fn auth_failed(&self, source: IpAddr, user: &str) {
        let now = Instant::now();
        let limit = self.config.auth_failures;
        let mut t = self.tables();
        let minute = Duration::from_secs(60);
        let u = t.users.entry(user.to_string()).or_insert((now, 0));
        if now.duration_since(u.0) >= minute {
            *u = (now, 0);
        }
        u.1 += 1;
        let user_attacked = u.1 > limit;
        if t.users.len() > SWEEP_AT {
            t.users
                .retain(|_, (at, _)| now.duration_since(*at) < minute);
        }
        let s = t.sources.entry(source).or_insert_with(|| Source::new(now));
        if now.duration_since(s.failures.0) >= minute {
            s.failures = (now, 0);
        }
        s.failures.1 += 1;
        if s.failures.1 > limit || user_attacked {
            self.block(&mut t, source, now, BlockReason::AuthFailures);
        }
    }

    /// An authentication from `source` succeeded: its failures are forgotten.
    pub fn auth_succeeded(&self, source: IpAddr) {
        if let Some(s) = self.tables().sources.get_mut(&source) {
            s.failures.1 = 0;
        }
    }

    fn block(&self, t: &mut Tables, source: IpAddr, now: Instant, why: BlockReason) {
        let Some(s) = t.sources.get_mut(&source) else {
            return;
        };
        s.strikes += 1;
        let factor = 2u32.saturating_pow(s.strikes.saturating_sub(1).min(16));
        let length = self.config.block.saturating_mul(factor).min(MAX_BLOCK);
        s.blocked_until = Some(now + length);
        s.failures.1 = 0;
        s.window = (now, 0);
        let counter = match why {
            BlockReason::Flood => &self.stats.flood_blocks,
            BlockReason::AuthFailures => &self.stats.auth_blocks,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let (logged_at, skipped) = t.last_log.unwrap_or((now - Duration::from_secs(2), 0));
        if now.duration_since(logged_at) >= Duration::from_secs(1) {
            tracing::warn!(%source, ?why, secs = length.as_secs(), also_blocked = skipped, "source blocked");
            t.last_log = Some((now, 0));
        } else {
            t.last_log = Some((logged_at, skipped + 1));
        }
    }
}

/// Forgets sources that are not blocked and have nothing counted in a current window.
fn sweep(sources: &mut HashMap<IpAddr, Source, NetworkHasher>, now: Instant) {
    sources.retain(|_, s| {
        s.blocked_until.is_some_and(|u| now < u)
            || s.strikes > 0
            || now.duration_since(s.window.0) < Duration::from_secs(1)
            || (s.failures.1 > 0 && now.duration_since(s.failures.0) < Duration::from_secs(60))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shield() -> Shield {
        Shield::new(ShieldConfig {
            per_second: 10,
            auth_failures: 3,
            block: Duration::from_millis(200),
        })
    }

    #[test]
    fn a_flood_is_blocked_and_an_exempt_source_is_not() {
        let s = shield();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        s.set_exempt(Arc::new(move |ip| ip == b));
        assert_eq!((0..20).filter(|_| s.admits(a)).count(), 10);
        assert!(s.is_blocked(a));
        assert_eq!((0..20).filter(|_| s.admits(b)).count(), 20);
        assert_eq!(s.stats.flood_blocks.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_peer_callflow_calls_is_exempt() {
        let s = shield();
        let far: IpAddr = "192.0.2.9".parse().unwrap();
        s.sent_to(far);
        assert_eq!((0..50).filter(|_| s.admits(far)).count(), 50);
    }

    #[test]
    fn guessing_blocks_the_source_with_growing_blocks() {
        let s = shield();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            s.auth_failed(a, "partner");
            assert!(!s.is_blocked(a));
        }
        s.auth_failed(a, "partner");
        assert!(s.is_blocked(a));
        assert!(!s.admits(a));
        std::thread::sleep(Duration::from_millis(250));
        assert!(!s.is_blocked(a), "the first block has ended");
        for _ in 0..4 {
            s.auth_failed(a, "other");
        }
        std::thread::sleep(Duration::from_millis(250));
        assert!(s.is_blocked(a), "the second block is twice as long");
    }

    #[test]
    fn a_user_under_attack_blocks_each_failing_source_at_once() {
        let s = shield();
        for n in 1..=4u8 {
            s.auth_failed(IpAddr::from([198, 51, 100, n]), "partner");
        }
        assert!(s.is_blocked(IpAddr::from([198, 51, 100, 4])));
        assert!(!s.is_blocked(IpAddr::from([198, 51, 100, 1])));
        s.auth_failed(IpAddr::from([198, 51, 100, 9]), "partner");
        assert!(s.is_blocked(IpAddr::from([198, 51, 100, 9])));
        assert!(
            !s.is_blocked(IpAddr::from([198, 51, 100, 10])),
            "a source that never failed"
        );
    }
}
