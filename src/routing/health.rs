//! Which destinations and carriers answer: OPTIONS pings mark them up or down, and
//! routing tries the ones that are up (docs/architecture.md §5). Kept outside the routing table,
//! so a reload does not forget what the pings found.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use crate::sip::SipUri;

/// Destinations and carriers found down by the last ping.
#[derive(Debug, Default)]
pub struct Health {
    down: Mutex<HashSet<String>>,
}

/// The key of a URI: without its user part (destinations get one per call).
pub fn key(uri: &SipUri) -> String {
    let mut u = uri.clone();
    u.user = None;
    u.to_string()
}

impl Health {
    /// Whether `uri` answered its last ping (or has not been pinged yet).
    pub fn is_up(&self, uri: &SipUri) -> bool {
        let down = self.down.lock().unwrap_or_else(PoisonError::into_inner);
        // Nothing down (the usual case): no key to make on a call's path.
        down.is_empty() || !down.contains(&key(uri))
    }

    /// Records a ping's result; true when that changed the state.
    pub fn mark(&self, uri: &SipUri, up: bool) -> bool {
        let mut down = self.down.lock().unwrap_or_else(PoisonError::into_inner);
        if up {
            down.remove(&key(uri))
        } else {
            down.insert(key(uri))
        }
    }

    /// The items that are up, in order; all of them when none is (trying beats
    /// failing on a ping's word alone).
    pub fn usable<T>(&self, items: Vec<T>, uri: impl Fn(&T) -> &SipUri) -> Vec<T> {
        let (up, down): (Vec<T>, Vec<T>) = items.into_iter().partition(|i| self.is_up(uri(i)));
        if up.is_empty() { down } else { up }
    }
}
