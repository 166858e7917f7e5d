//! The transactions' timers, all in one place: a heap of deadlines that one loop
//! sleeps on, in ticks, so that the timers of a whole second of calls fire in a
//! hundred wake-ups rather than one wake-up (and one task) per transaction.
//!
//! A transaction asks for its next deadline after every event; a deadline that is no
//! longer its next (a Timer A stopped by a 1xx, say) stays in the heap and is skipped
//! when it comes up (the transaction's `armed` deadline tells which is current).

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::Key;

/// The longest tick: timers fire up to this late (Kamailio's is 100 ms).
const MAX_TICK: Duration = Duration::from_millis(10);

/// A transaction's deadline.
#[derive(Debug)]
struct Due {
    /// When.
    at: Instant,
    /// Whose.
    key: Arc<Key>,
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

    /// Files `key`'s deadline `at`; wakes the loop only if it sleeps past `at`'s
    /// tick (a new INVITE's Trying timer is usually the earliest deadline, but its
    /// tick is often one the loop already wakes for).
    pub(crate) fn arm(&self, key: Arc<Key>, at: Instant) {
        let mut d = self.deadlines();
        let sooner = d.wake_at.is_none_or(|w| self.tick_after(at) < w);
        d.heap.push(Reverse(Due { at, key }));
        drop(d);
        if sooner {
            self.earlier.notify_one();
        }
    }

    /// `at` rounded up to the next tick.
    fn tick_after(&self, at: Instant) -> Instant {
        let since = at.saturating_duration_since(self.origin).as_nanos();
        let tick = self.tick.as_nanos().max(1);
        let rounded = since.div_ceil(tick) * tick;
        self.origin + Duration::from_nanos(u64::try_from(rounded).unwrap_or(u64::MAX))
    }

    /// Waits for the next tick with a deadline due, and returns every deadline due
    /// by then, with the time it is.
    pub(crate) async fn due(&self) -> (Instant, Vec<(Arc<Key>, Instant)>) {
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
                if let Some(Reverse(x)) = d.heap.pop() {
                    due.push((x.key, x.at));
                }
            }
            drop(d);
            if !due.is_empty() {
                return (now, due);
            }
        }
    }
}
