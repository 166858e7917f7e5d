//! The transactions' timers, all in one place: a heap of deadlines that one loop
//! sleeps on, in ticks, so that the timers of a whole second of calls fire in a
//! hundred wake-ups rather than one wake-up (and one task) per transaction.
//!
//! A transaction files its next deadline after every event that changes it. A
//! deadline that is no longer its next (a Timer A stopped by a 2xx, say) stays in the
//! heap and is skipped when it comes up: the key the transaction shares with the
//! wheel ([`Filed`]) tells which deadline is current, so a stale one costs a look at
//! that key alone, not a look-up of a transaction whose memory has long gone cold.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering as MemoryOrder};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::Key;

/// The longest tick: timers fire up to this late (Kamailio's is 100 ms).
const MAX_TICK: Duration = Duration::from_millis(10);

/// A live transaction's key, shared by the table (which finds the transaction by
/// it) and the wheel (which holds its deadline), with the one deadline that is
/// current.
#[derive(Debug)]
pub(crate) struct Filed {
    /// The key.
    pub(crate) key: Key,
    /// The deadline filed last, as [`Wheel::stamp`] writes it; 0: none.
    armed: AtomicU64,
}

impl Filed {
    /// `key`, with no deadline filed yet.
    pub(crate) fn new(key: Key) -> Arc<Filed> {
        Arc::new(Filed {
            key,
            armed: AtomicU64::new(0),
        })
    }
}

/// [`Filed`] as the table's key: hashed and compared by its [`Key`], so the table
/// is searched with a `&Key`.
#[derive(Debug, Clone)]
pub(crate) struct TableKey(pub(crate) Arc<Filed>);

impl Hash for TableKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.key.hash(state);
    }
}

impl PartialEq for TableKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.key == other.0.key
    }
}

impl Eq for TableKey {}

impl std::borrow::Borrow<Key> for TableKey {
    fn borrow(&self) -> &Key {
        &self.0.key
    }
}

/// A transaction's deadline.
#[derive(Debug)]
struct Due {
    /// When.
    at: Instant,
    /// Whose.
    filed: Arc<Filed>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    fn cmp(&self, other: &Self) -> Ordering {
        self.at.cmp(&other.at)
    }
}

/// The deadlines, and when the loop sleeping on them wakes next.
#[derive(Debug, Default)]
struct Deadlines {
    /// Earliest first.
    heap: BinaryHeap<Reverse<Due>>,
    /// The tick the loop sleeps until (`None`: it waits for a first deadline). A
    /// deadline filed for that tick or later needs no wake-up.
    wake_at: Option<Instant>,
}

/// The deadlines of every transaction.
#[derive(Debug)]
pub(crate) struct Wheel {
    /// The deadlines and the loop's next wake-up.
    deadlines: Mutex<Deadlines>,
    /// Wakes the loop when a deadline falls before the tick it sleeps until.
    earlier: Notify,
    /// The granularity: an eighth of T1, at most [`MAX_TICK`].
    tick: Duration,
    /// Where ticks are counted from.
    origin: Instant,
}

impl Wheel {
    /// A wheel whose ticks suit `t1`.
    pub(crate) fn new(t1: Duration) -> Wheel {
        Wheel {
            deadlines: Mutex::new(Deadlines::default()),
            earlier: Notify::new(),
            tick: (t1 / 8).clamp(Duration::from_millis(1), MAX_TICK),
            origin: Instant::now(),
        }
    }

    fn deadlines(&self) -> std::sync::MutexGuard<'_, Deadlines> {
        self.deadlines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// `at` as [`Filed::armed`] holds it: nanoseconds from the origin, plus one.
    fn stamp(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(since).unwrap_or(u64::MAX - 1) + 1
    }

    /// Makes `at` the deadline of `filed`, the one that will fire (nothing to do
    /// when it already is). Wakes the loop only if it sleeps past `at`'s tick (a new
    /// INVITE's Trying timer is usually the earliest deadline, but its tick is often
    /// one the loop already wakes for).
    pub(crate) fn arm(&self, filed: &Arc<Filed>, at: Instant) {
        let stamp = self.stamp(at);
        if filed.armed.swap(stamp, MemoryOrder::Relaxed) == stamp {
            return;
        }
        let mut d = self.deadlines();
        let sooner = d.wake_at.is_none_or(|w| self.tick_after(at) < w);
        d.heap.push(Reverse(Due {
            at,
            filed: filed.clone(),
        }));
        drop(d);
        if sooner {
            self.earlier.notify_one();
        }
    }

    /// Leaves `filed` without a deadline: the one in the heap is skipped.
    pub(crate) fn disarm(&self, filed: &Filed) {
        filed.armed.store(0, MemoryOrder::Relaxed);
    }

    /// `at` rounded up to the next tick.
    fn tick_after(&self, at: Instant) -> Instant {
        let since = at.saturating_duration_since(self.origin).as_nanos();
        let tick = self.tick.as_nanos().max(1);
        let rounded = since.div_ceil(tick) * tick;
        self.origin + Duration::from_nanos(u64::try_from(rounded).unwrap_or(u64::MAX))
    }

    /// Waits for the next tick with a deadline due, and returns the transactions
    /// whose current deadline is due by then (disarmed: each files its next one),
    /// with the time it is. Stale deadlines are dropped on the way.
    pub(crate) async fn due(&self) -> (Instant, Vec<Arc<Filed>>) {
        loop {
            let earlier = self.earlier.notified();
            let wake = {
                let mut d = self.deadlines();
                d.wake_at = d.heap.peek().map(|Reverse(due)| self.tick_after(due.at));
                d.wake_at
            };
            match wake {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = earlier => continue,
                    }
                }
                None => {
                    earlier.await;
                    continue;
                }
            }
            let now = Instant::now();
            let mut d = self.deadlines();
            let mut due = Vec::new();
            while d.heap.peek().is_some_and(|Reverse(x)| x.at <= now) {
                if let Some(Reverse(x)) = d.heap.pop()
                    && x.filed.armed.load(MemoryOrder::Relaxed) == self.stamp(x.at)
                {
                    self.disarm(&x.filed);
                    due.push(x.filed);
                }
            }
            drop(d);
            if !due.is_empty() {
                return (now, due);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::method::Method;

    fn filed(branch: &str) -> Arc<Filed> {
        Filed::new(Key {
            branch: branch.into(),
            method: Method::Invite,
            sent_by: Default::default(),
        })
    }

    /// Only a transaction's current deadline fires: one moved later leaves its old
    /// deadline stale, one filed twice fires once, and a disarmed one never.
    #[tokio::test]
    async fn only_the_current_deadline_fires() {
        let wheel = Wheel::new(Duration::from_millis(8));
        let now = Instant::now();
        let (moved, twice, disarmed) = (filed("a"), filed("b"), filed("c"));
        wheel.arm(&moved, now + Duration::from_millis(100));
        wheel.arm(&moved, now + Duration::from_millis(300));
        wheel.arm(&twice, now + Duration::from_millis(200));
        wheel.arm(&twice, now + Duration::from_millis(200));
        wheel.arm(&disarmed, now + Duration::from_millis(150));
        wheel.disarm(&disarmed);
        assert_eq!(
            wheel.deadlines().heap.len(),
            4,
            "a deadline filed twice is held once"
        );
        let mut fired = Vec::new();
        while fired.len() < 2 {
            let (at, due) = wheel.due().await;
            fired.extend(due.iter().map(|f| (f.key.branch.to_string(), at - now)));
        }
        assert_eq!(fired[0].0, "b");
        assert_eq!(fired[1].0, "a");
        assert!(fired[1].1 >= Duration::from_millis(300), "{fired:?}");
        assert!(wheel.deadlines().heap.is_empty());
        // Fired, each is disarmed until it files its next deadline.
        assert_eq!(moved.armed.load(MemoryOrder::Relaxed), 0);
    }
}
