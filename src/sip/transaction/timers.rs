//! RFC 3261's timer values (§17, Table 4). T1, T2 and T4 are settable (tests shorten
//! them); every lettered timer derives from them.

use std::time::Duration;

/// The base timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate: 500 ms.
    pub t1: Duration,
    /// Longest retransmit interval for non-INVITE requests and INVITE responses: 4 s.
    pub t2: Duration,
    /// Longest time a message stays in the network: 5 s.
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    /// 64·T1: Timers B, F, H, J, L and M.
    pub fn t1x64(&self) -> Duration {
        self.t1 * 64
    }

    /// Timer D: wait for response retransmissions, 64·T1 (32 s with the default T1)
    /// on UDP, 0 on a reliable transport.
    pub fn d(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.t1x64()
        }
    }

    /// The Trying timer: how long an INVITE server transaction waits for its user's
    /// first response before it sends 100 Trying itself. §17.2.1 allows none if the
    /// user answers within 200 ms; half of that leaves room for a late wake-up, and
    /// a fifth of T1 keeps the 100 ahead of a peer's first retransmission (Timer A)
    /// when T1 is set lower for a fast network (or a test).
    pub fn trying(&self) -> Duration {
        (self.t1 / 5).min(Duration::from_millis(100))
    }

    /// Timers I and K: T4 on UDP, 0 on a reliable transport.
    pub fn t4_unless_reliable(&self, reliable: bool) -> Duration {
        if reliable { Duration::ZERO } else { self.t4 }
    }
}
