//! Admitting a new call: taking its channels (503 with Retry-After when a limit is
//! reached) and gathering the facts the flow runtime reads.

use crate::call::Call;
use std::sync::Arc;

use crate::lang::vars::{CallHeaders, CallInfo, HeaderList};
use crate::routing::limits::{Limits, Permit};
use crate::sip::Message;
use crate::sip::Name;

/// Takes a channel of `key`, or refuses the caller with 503 and Retry-After.
pub async fn take(
    call: &mut Call,
    limits: &Limits,
    key: &str,
    channels: Option<u32>,
    cps: Option<u32>,
) -> Option<Permit> {
    match limits.acquire(key, channels, cps) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::info!(sid = %call.sid, limit = %e, "over a limit: 503");
            crate::metrics::global().reject("limit");
            let retry = vec![(Name::RetryAfter, e.retry_after().to_string())];
            call.reject(503, None, retry).await;
            None
        }
    }
}

/// The user part of the caller's From.
pub fn caller_number(call: &Call) -> String {
    call.request()
        .from_header()
        .ok()
        .and_then(|f| f.uri.user().map(str::to_string))
        .unwrap_or_default()
}

/// The facts of a call the flow runtime reads: its sid, the caller's number, the
/// number `to`, the direction, the partner's trunk, the owning account and the
/// INVITE's headers.
pub fn call_info(
    call: &Call,
    to: String,
    direction: &str,
    trunk: Option<String>,
    account: Option<String>,
) -> CallInfo {
    let req = call.request();
    CallInfo {
        sid: call.sid.clone(),
        from: caller_number(call),
        to,
        direction: direction.into(),
        custom_field: String::new(),
        trunk,
        account,
        headers: match call.shared_request() {
            Some(request) => CallHeaders(Arc::new(RequestHeaders(request))),
            None => CallHeaders(Arc::new(
                req.headers()
                    .iter()
                    .filter(|h| h.name != Name::Via)
                    .map(|h| (h.name.as_str().to_string(), h.value.to_string()))
                    .collect::<Vec<_>>(),
            )),
        },
    }
}

/// The caller's INVITE, read as `call.headers` (its Vias left out).
#[derive(Debug)]
struct RequestHeaders(Arc<Message>);

impl HeaderList for RequestHeaders {
    fn each(&self, f: &mut dyn FnMut(&str, &str)) {
        for h in self.0.headers().iter().filter(|h| h.name != Name::Via) {
            f(h.name.as_str(), &h.value);
        }
    }
}

/// Lists the call in `state`'s calls in progress until the guard is dropped.
pub fn listed(state: &super::State, call: &Call, info: &CallInfo) -> super::active::Listed {
    state.active.list(
        &call.sid,
        super::active::Active {
            account: info.account.clone(),
            from: info.from.clone(),
            to: info.to.clone(),
            direction: info.direction.clone(),
            created: crate::applets::unix_now(),
            status: "in-progress",
            controller: call.controller(),
        },
    )
}
