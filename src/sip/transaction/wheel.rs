//! The transactions' timers, all in one place: queues of deadlines that one loop
//! sleeps on, in ticks, so that the timers of a whole second of calls fire in a
//! hundred wake-ups rather than one wake-up (and one task) per transaction.
//!
//! A transaction files its next deadline after every event that changes it. A
//! deadline that is no longer its next (a Timer A stopped by a 2xx, say) stays
//! queued until it reaches the front of its queue, and is dropped there: the key the
//! transaction shares with the wheel ([`Filed`]) tells which deadline is current, so
//! a stale one costs a look at that key alone, not a look-up of a transaction whose
//! memory has long gone cold. The loop sleeps until the first current deadline, not
//! until a stale one: most deadlines go stale within milliseconds (a call's
//! transactions are answered long before their timers), and sleeping on them woke
//! the loop every tick while calls came and for 64·T1 after they stopped.
//!
//! The timers of RFC 3261 run for a few lengths (T1 and its doublings, T2, T4,
//! 64·T1), so deadlines are queued by how far ahead they were filed: each queue is
//! then in deadline order by construction (give or take a tick), filing is a push at
//! its back and firing a pop at its front. Unlike a heap's, those touch memory in
//! order, which matters where memory left alone for a second costs microseconds to
//! come back to (BENCHMARKS.md, session 12).

use std::collections::VecDeque;
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

/// The deadlines filed the same number of ticks ahead, in the order they were
/// filed, which is their order (within a tick).
#[derive(Debug)]
struct Queue {
    /// How far ahead, in ticks.
    ahead: u64,
    /// Oldest first.
    due: VecDeque<Due>,
}

/// The deadlines, and when the loop sleeping on them wakes next.
#[derive(Debug, Default)]
struct Deadlines {
    /// One queue per distance ahead that has deadlines (a handful: the RFC's timer
    /// lengths).
    queues: Vec<Queue>,
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
        let ahead = self.ticks(at.saturating_duration_since(Instant::now()));
        let due = Due {
            at,
            filed: filed.clone(),
        };
        let mut d = self.deadlines();
        let sooner = d.wake_at.is_none_or(|w| self.tick_after(at) < w);
        match d.queues.iter_mut().find(|q| q.ahead == ahead) {
            Some(q) => q.due.push_back(due),
            None => d.queues.push(Queue {
                ahead,
                due: VecDeque::from([due]),
            }),
        }
        drop(d);
        if sooner {
            self.earlier.notify_one();
        }
    }

    /// Leaves `filed` without a deadline: the one queued is skipped.
    pub(crate) fn disarm(&self, filed: &Filed) {
        filed.armed.store(0, MemoryOrder::Relaxed);
    }

    /// `d` in ticks, rounded up.
    fn ticks(&self, d: Duration) -> u64 {
        let ticks = d.as_nanos().div_ceil(self.tick.as_nanos().max(1));
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }

    /// `at` rounded up to the next tick.
    fn tick_after(&self, at: Instant) -> Instant {
        let ticks = self.ticks(at.saturating_duration_since(self.origin));
        let nanos = u64::try_from(self.tick.as_nanos()).unwrap_or(u64::MAX);
        self.origin + Duration::from_nanos(ticks.saturating_mul(nanos))
    }

    /// The first deadline of `q` that is still current, the stale ones before it
    /// dropped: the loop sleeps until a deadline that will fire, not until one that
    /// went stale (a Timer A stopped by the response a millisecond after it was
    /// filed), so it does not wake every tick for nothing while calls come and go,
    /// nor for 32 s after they stopped coming (Timers B and F).
    fn first_current(&self, q: &mut Queue) -> Option<Instant> {
        while let Some(x) = q.due.front() {
            if x.filed.armed.load(MemoryOrder::Relaxed) == self.stamp(x.at) {
                return Some(x.at);
            }
            q.due.pop_front();
        }
        None
    }

    /// Waits for the next tick with a deadline due, and returns the transactions
    /// whose current deadline is due by then (disarmed: each files its next one),
    /// with the time it is. Stale deadlines are dropped on the way.
    pub(crate) async fn due(&self) -> (Instant, Vec<Arc<Filed>>) {
        loop {
            let earlier = self.earlier.notified();
            let wake = {
                let mut d = self.deadlines();
                let first = d
                    .queues
                    .iter_mut()
                    .filter_map(|q| self.first_current(q))
                    .min();
                d.queues.retain(|q| !q.due.is_empty());
                d.wake_at = first.map(|at| self.tick_after(at));
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
            for q in &mut d.queues {
                while let Some(x) = q.due.pop_front_if(|x| x.at <= now) {
                    if x.filed.armed.load(MemoryOrder::Relaxed) == self.stamp(x.at) {
                        self.disarm(&x.filed);
                        due.push(x.filed);
                    }
                }
            }
            // A deadline filed at an odd distance (Timer B's rest after a 1xx) makes
            // a queue of its own; it goes when it empties.
            d.queues.retain(|q| !q.due.is_empty());
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
        let held = |w: &Wheel| {
            w.deadlines()
                .queues
                .iter()
                .map(|q| q.due.len())
                .sum::<usize>()
        };
        assert_eq!(held(&wheel), 4, "a deadline filed twice is held once");
        let mut fired = Vec::new();
        while fired.len() < 2 {
            let (at, due) = wheel.due().await;
            fired.extend(due.iter().map(|f| (f.key.branch.to_string(), at - now)));
        }
        assert_eq!(fired[0].0, "b");
        assert_eq!(fired[1].0, "a");
        assert!(fired[1].1 >= Duration::from_millis(300), "{fired:?}");
        assert_eq!(held(&wheel), 0);
        assert!(wheel.deadlines().queues.is_empty(), "empty queues go");
        // Fired, each is disarmed until it files its next deadline.
        assert_eq!(moved.armed.load(MemoryOrder::Relaxed), 0);
    }

    /// The loop sleeps until the first deadline that is current: stale ones ahead of
    /// it are dropped, not slept until, and with none current it waits for one.
    #[tokio::test]
    async fn the_loop_does_not_wake_for_stale_deadlines() {
        let wheel = Arc::new(Wheel::new(Duration::from_millis(8)));
        let now = Instant::now();
        let (stopped, ended, live) = (filed("a"), filed("b"), filed("c"));
        wheel.arm(&stopped, now + Duration::from_millis(50));
        wheel.arm(&stopped, now + Duration::from_secs(30));
        wheel.arm(&ended, now + Duration::from_millis(60));
        wheel.disarm(&ended);
        wheel.arm(&live, now + Duration::from_millis(400));
        wheel.disarm(&stopped);
        let looping = tokio::spawn({
            let wheel = wheel.clone();
            async move { wheel.due().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let wake_at = wheel.deadlines().wake_at;
        assert_eq!(
            wake_at,
            Some(wheel.tick_after(now + Duration::from_millis(400)))
        );
        let held: usize = wheel.deadlines().queues.iter().map(|q| q.due.len()).sum();
        assert_eq!(
            held, 1,
            "the stale deadlines ahead of the live one are gone"
        );
        // Gone stale while the loop sleeps on it: the loop wakes at its tick, finds
        // nothing due, and then waits for a new deadline instead of ticking on.
        wheel.disarm(&live);
        tokio::time::sleep_until(now + Duration::from_millis(450)).await;
        assert!(!looping.is_finished(), "nothing was due");
        assert_eq!(wheel.deadlines().wake_at, None);
        assert!(wheel.deadlines().queues.is_empty());
        looping.abort();
    }
}
