//! Channel and call-rate limits per trunk and per carrier: exact under
//! concurrency (atomic compare-and-swap for channels, a locked one-second window for
//! calls per second), and kept outside the routing table so that a reload does not
//! reset them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The key of trunk `sid`'s counters.
pub fn trunk_key(sid: &str) -> String {
    format!("trunk:{sid}")
}

/// The key of account `sid`'s counters.
pub fn account_key(sid: &str) -> String {
    format!("account:{sid}")
}

/// The key of carrier `name`'s counters.
pub fn carrier_key(name: &str) -> String {
    format!("carrier:{name}")
}

/// Counters of one trunk or carrier.
#[derive(Debug)]
struct Slot {
    active: AtomicU32,
    window: Mutex<(Instant, u32)>,
    /// The UTC day (days since the epoch) and calls started in it.
    day: Mutex<(u64, u32)>,
}

/// A call counted against a limit; dropping it frees the channel.
#[derive(Debug)]
pub struct Permit {
    slot: Arc<Slot>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.slot.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A limit was reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Too many simultaneous calls.
    #[error("{0}: all {1} channels are in use")]
    Channels(String, u32),
    /// Too many new calls this second.
    #[error("{0}: over {1} calls per second")]
    Rate(String, u32),
    /// Too many calls today (UTC).
    #[error("{0}: all {1} calls of the day are used")]
    Daily(String, u32),
}

impl LimitError {
    /// The Retry-After to send with the 503, in seconds.
    pub fn retry_after(&self) -> u32 {
        match self {
            LimitError::Channels(..) => 5,
            LimitError::Rate(..) => 1,
            LimitError::Daily(..) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                u32::try_from(86_400 - now % 86_400).unwrap_or(86_400)
            }
        }
    }
}

/// The counters of every trunk and carrier.
#[derive(Debug, Default)]
pub struct Limits {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    /// Calls refused because of a limit.
    pub refused: AtomicU64,
}

impl Limits {
    fn slot(&self, key: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots
            .entry(key.to_string())
            .or_insert_with(|| {
                Arc::new(Slot {
                    active: AtomicU32::new(0),
                    window: Mutex::new((Instant::now(), 0)),
                    day: Mutex::new((0, 0)),
                })
            })
            .clone()
    }

    /// Takes a channel of `key` (`trunk:<sid>` or `carrier:<name>`), within
    /// `max_channels` and `max_cps` when they are set.
    pub fn acquire(
        &self,
        key: &str,
        max_channels: Option<u32>,
        max_cps: Option<u32>,
    ) -> Result<Permit, LimitError> {
        let slot = self.slot(key);
        let taken = slot
            .active
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match max_channels {
                Some(max) if n >= max => None,
                _ => Some(n + 1),
            });
        if taken.is_err() {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(LimitError::Channels(key.into(), max_channels.unwrap_or(0)));
        }
        let permit = Permit { slot: slot.clone() };
        if let Some(cps) = max_cps {
            let mut w = slot.window.lock().unwrap_or_else(PoisonError::into_inner);
            if w.0.elapsed() >= Duration::from_secs(1) {
                *w = (Instant::now(), 0);
            }
            if w.1 >= cps {
                drop(w);
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Err(LimitError::Rate(key.into(), cps));
            }
            w.1 += 1;
        }
        Ok(permit)
    }

    /// Counts one call of today (UTC) against `key`'s `max` calls a day.
    pub fn count_daily(&self, key: &str, max: u32) -> Result<(), LimitError> {
        let slot = self.slot(key);
        let today = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 86_400);
        let mut day = slot.day.lock().unwrap_or_else(PoisonError::into_inner);
        if day.0 != today {
            *day = (today, 0);
        }
        if day.1 >= max {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(LimitError::Daily(key.into(), max));
        }
        day.1 += 1;
        Ok(())
    }

    /// Every key with its calls in progress (for metrics).
    pub fn snapshot(&self) -> Vec<(String, u32)> {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<(String, u32)> = slots
            .iter()
            .map(|(k, s)| (k.clone(), s.active.load(Ordering::Relaxed)))
            .collect();
        out.sort();
        out
    }

    /// Calls in progress on `key`.
    pub fn active(&self, key: &str) -> u32 {
        self.slot(key).active.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exactly_the_limit_under_concurrency() {
        let limits = Arc::new(Limits::default());
        let barrier = Arc::new(tokio::sync::Barrier::new(1000));
        let mut tasks = Vec::new();
        for _ in 0..1000 {
            let (limits, barrier) = (limits.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                let p = limits.acquire("trunk:t", Some(100), None);
                tokio::time::sleep(Duration::from_millis(50)).await;
                p.is_ok()
            }));
        }
        let mut granted = 0;
        for t in tasks {
            granted += usize::from(t.await.unwrap());
        }
        assert_eq!(granted, 100);
        assert_eq!(limits.refused.load(Ordering::Relaxed), 900);
        assert_eq!(limits.active("trunk:t"), 0, "permits released");
    }

    #[test]
    fn calls_per_second_window() {
        let limits = Limits::default();
        let ok: Vec<bool> = (0..15)
            .map(|_| limits.acquire("trunk:c", None, Some(10)).is_ok())
            .collect();
        assert_eq!(ok.iter().filter(|b| **b).count(), 10);
        assert_eq!(
            limits
                .acquire("trunk:c", None, Some(10))
                .unwrap_err()
                .retry_after(),
            1
        );
    }
}
