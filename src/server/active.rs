//! The calls in progress on this node, for the calls API: who they belong to, what
//! they are, and a handle that ends them. A call is listed from the moment it is
//! routed until its handler returns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Value, json};

use crate::call::Controller;

/// One call in progress.
#[derive(Debug, Clone)]
pub struct Active {
    /// The owning account, if any.
    pub account: Option<String>,
    /// Caller's number.
    pub from: String,
    /// Dialled number.
    pub to: String,
    /// `incoming`, `outbound-dial`, `outbound-api`.
    pub direction: String,
    /// Seconds since the epoch when it arrived.
    pub created: u64,
    /// `queued`, `ringing` (a call the API placed, before its first party answers)
    /// or `in-progress`.
    pub status: &'static str,
    /// Ends it.
    pub controller: Controller,
}

/// Every call in progress, by sid, hashed with foldhash rather than the standard
/// map's SipHash: the table is touched three times per call.
#[derive(Debug, Default)]
pub struct ActiveCalls {
    calls: Mutex<HashMap<String, Active, crate::sip::NetworkHasher>>,
}

/// Removes its call from the table when dropped (when the call's handler returns).
pub struct Listed {
    table: Arc<ActiveCalls>,
    sid: String,
}

impl Drop for Listed {
    fn drop(&mut self) {
        self.table.lock().remove(&self.sid);
    }
}

impl ActiveCalls {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, Active, crate::sip::NetworkHasher>> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lists call `sid` until the returned guard is dropped.
    pub fn list(self: &Arc<Self>, sid: &str, call: Active) -> Listed {
        self.lock().insert(sid.to_string(), call);
        Listed {
            table: self.clone(),
            sid: sid.to_string(),
        }
    }

    /// `account`'s calls in progress, as the calls API shows them.
    pub fn of(&self, account: &str) -> Vec<Value> {
        let mut out: Vec<(u64, Value)> = self
            .lock()
            .iter()
            .filter(|(_, c)| c.account.as_deref() == Some(account))
            .map(|(sid, c)| {
                let v = json!({
                    "call_sid": sid,
                    "from": c.from,
                    "to": c.to,
                    "direction": c.direction,
                    "status": c.status,
                    "created_unix": c.created,
                    "duration_secs": crate::applets::unix_now().saturating_sub(c.created),
                });
                (c.created, v)
            })
            .collect();
        out.sort_by_key(|c| std::cmp::Reverse(c.0));
        out.into_iter().map(|(_, v)| v).collect()
    }

    /// Sets call `sid`'s status.
    pub fn set_status(&self, sid: &str, status: &'static str) {
        if let Some(c) = self.lock().get_mut(sid) {
            c.status = status;
        }
    }

    /// Every call in progress's handle.
    pub fn all(&self) -> Vec<Controller> {
        self.lock().values().map(|c| c.controller.clone()).collect()
    }

    /// `account`'s call `sid`'s handle, if it is in progress.
    pub fn controller(&self, account: &str, sid: &str) -> Option<Controller> {
        self.lock()
            .get(sid)
            .filter(|c| c.account.as_deref() == Some(account))
            .map(|c| c.controller.clone())
    }
}
