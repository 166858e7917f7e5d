//! Toll-fraud limits, checked before a call goes on: a trunk's
//! `allowed_destinations` (the E.164 prefixes its calls may reach through the
//! carriers), its `max_call_duration`, and its account's caps on calls in progress
//! and calls a day. A call refused by one of them is counted
//! (`callflow_rejected_invites_total{reason}`), logged once, and stored as a record
//! whose `(refused)` step says why.

use std::time::Duration;

use super::{State, record};
use crate::call::Controller;
use crate::lang::vars::CallInfo;
use crate::routing::limits::{Permit, account_key};
use crate::routing::{Routing, Trunk};
use crate::runtime::{CallRecord, CallStatus, StepTrace};

/// A call refused by a toll-fraud limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The SIP status: 403, or 503 for a cap that frees up.
    pub status: u16,
    /// The metric's reason label.
    pub label: &'static str,
    /// Why, for the log and the record.
    pub why: String,
    /// Seconds until it may be tried again, when it may.
    pub retry_after: Option<u32>,
}

/// The account's channel, held while the call runs.
#[derive(Debug)]
pub struct Admitted {
    _channel: Option<Permit>,
}

/// Takes a call of `account` within its caps.
pub fn admit(routing: &Routing, account: Option<&str>) -> Result<Admitted, Refused> {
    let Some(account) = account else {
        return Ok(Admitted { _channel: None });
    };
    let caps = routing.account_limits(account);
    let key = account_key(account);
    let limits = routing.limits();
    let channel = match caps.max_concurrent_calls {
        Some(max) => Some(limits.acquire(&key, Some(max), None).map_err(|e| Refused {
            status: 503,
            label: "account_concurrent_calls",
            why: format!("account {account}: {e}"),
            retry_after: Some(e.retry_after()),
        })?),
        None => None,
    };
    if let Some(max) = caps.max_calls_per_day {
        limits.count_daily(&key, max).map_err(|e| Refused {
            status: 403,
            label: "account_calls_per_day",
            why: format!("account {account}: {e}"),
            retry_after: Some(e.retry_after()),
        })?;
    }
    Ok(Admitted { _channel: channel })
}

/// Whether `trunk`'s calls may reach `number` through the carriers.
pub fn destination(trunk: &Trunk, number: &str) -> Result<(), Refused> {
    if crate::lang::number::allowed_by(&trunk.allowed_destinations, number) {
        return Ok(());
    }
    Err(Refused {
        status: 403,
        label: "destination",
        why: format!(
            "{number} is not in trunk {}'s allowed_destinations",
            trunk.sid
        ),
        retry_after: None,
    })
}

/// Hangs the call up after `limit`, unless the guard is dropped first.
pub struct TimeLimit(tokio::task::JoinHandle<()>);

impl TimeLimit {
    /// Ends the call behind `controller` after `limit`.
    pub fn start(controller: Controller, limit: Duration) -> TimeLimit {
        TimeLimit(tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            tracing::info!(
                secs = limit.as_secs(),
                "call duration limit reached: hanging up"
            );
            controller.terminate().await;
        }))
    }
}

impl Drop for TimeLimit {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Counts, logs and stores a call refused by `refused`.
pub async fn refused(state: &State, info: &CallInfo, refused: &Refused) {
    crate::metrics::global().reject(refused.label);
    tracing::info!(sid = %info.sid, why = %refused.why, status = refused.status, "call refused by a limit");
    let mut record = CallRecord::new(info, "(refused)");
    record.status = CallStatus::Failed;
    let mut step = StepTrace::new("(refused)", "limit");
    step.outcome = refused.status.to_string();
    step.notes.push(refused.why.clone());
    record.steps.push(step);
    record::finish(state, None, record).await;
}
