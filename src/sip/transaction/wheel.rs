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

/// The deadlines of every transaction.
#[derive(Debug)]
pub(crate) struct Wheel {
    /// Earliest first.
    heap: Mutex<BinaryHeap<Reverse<Due>>>,
    /// Wakes the loop when a deadline earlier than every other arrives.
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
            heap: Mutex::new(BinaryHeap::new()),
            earlier: Notify::new(),
            tick: (t1 / 8).clamp(Duration::from_millis(1), MAX_TICK),
            origin: Instant::now(),
        }
    }

    fn heap(&self) -> std::sync::MutexGuard<'_, BinaryHeap<Reverse<Due>>> {
        self.heap.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Files `key`'s deadline `at`.
    pub(crate) fn arm(&self, key: Arc<Key>, at: Instant) {
        let mut heap = self.heap();
        let first = heap.peek().is_none_or(|Reverse(d)| at < d.at);
        heap.push(Reverse(Due { at, key }));
        drop(heap);
        if first {
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
            let next = self.heap().peek().map(|Reverse(d)| d.at);
            match next {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(self.tick_after(at)) => {}
                        _ = earlier => continue,
                    }
                }
                None => {
                    earlier.await;
                    continue;
                }
            }
            let now = Instant::now();
            let mut heap = self.heap();
            let mut due = Vec::new();
            while heap.peek().is_some_and(|Reverse(d)| d.at <= now) {
                if let Some(Reverse(d)) = heap.pop() {
                    due.push((d.key, d.at));
                }
            }
            drop(heap);
            if !due.is_empty() {
                return (now, due);
            }
        }
    }
}
