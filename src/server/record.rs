//! The end of a call: its record logged as one JSON line (`callflow::record`) and
//! written to the store, and the flow's status callback delivered in the background
//! (up to three attempts, the next after a timeout, a refused connection or a 5xx),
//! each attempt added to the stored record. Neither the store nor the callback can
//! delay or break the call: it is over.

use std::time::Duration;

use serde_json::json;

use super::State;
use crate::applets::unix_now;
use crate::flow::Flow;
use crate::lang::vars::Vars;
use crate::runtime::{CallRecord, CallbackAttempt, Http};
use crate::store::Store;
use crate::webhook::WebhookClient;

/// Attempts to deliver a status callback.
pub const CALLBACK_ATTEMPTS: usize = 3;

/// The wait before the second attempt; it doubles for the third.
pub const CALLBACK_BACKOFF: Duration = Duration::from_millis(500);

/// Logs the call record and counts the call.
pub fn log(record: &CallRecord) {
    crate::metrics::global()
        .calls
        .get_or_create(&crate::metrics::CallLabels {
            direction: record.direction.clone(),
            status: record.status.as_str().to_string(),
        })
        .inc();
    match serde_json::to_string(record) {
        Ok(json) => {
            tracing::info!(target: "callflow::record", sid = %record.call_sid, record = %json, "call ended")
        }
        Err(e) => tracing::warn!(error = %e, "call record not serialisable"),
    }
}

/// Logs and stores the call record, then delivers `flow`'s status callback (if it
/// has one) in the background.
pub async fn finish(state: &State, flow: Option<&Flow>, record: CallRecord) {
    log(&record);
    if let Some(store) = &state.store
        && let Err(e) = store.insert_call(&record).await
    {
        tracing::warn!(sid = %record.call_sid, error = %e, "call record not stored");
    }
    let url = flow
        .and_then(|f| f.status_callback.as_ref())
        .and_then(|t| t.render(&mut Vars::default().scope()).ok());
    if let Some(url) = url {
        let (http, store) = (state.http.clone(), state.store.clone());
        let timeout = state.settings.webhook_timeout;
        tokio::spawn(deliver(url, record, http, store, timeout));
    }
}

/// Delivers the status callback: up to [`CALLBACK_ATTEMPTS`] attempts, each recorded.
async fn deliver(
    url: String,
    record: CallRecord,
    http: WebhookClient,
    store: Option<Store>,
    timeout: Duration,
) {
    let body = status_callback(&record);
    let mut attempts = Vec::new();
    let mut wait = CALLBACK_BACKOFF;
    for n in 1..=CALLBACK_ATTEMPTS {
        let result = http.post_json(&url, &body, timeout).await;
        let retry = match &result {
            Ok(status) => *status >= 500,
            Err(_) => true,
        };
        attempts.push(CallbackAttempt {
            url: url.clone(),
            status: result.as_ref().ok().copied(),
            error: result.as_ref().err().map(ToString::to_string),
            at_unix: unix_now(),
        });
        if !retry {
            break;
        }
        tracing::info!(sid = %record.call_sid, %url, attempt = n, "status callback failed");
        if n < CALLBACK_ATTEMPTS {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    if let Some(store) = store
        && let Err(e) = store.set_callbacks(&record.call_sid, &attempts).await
    {
        tracing::warn!(sid = %record.call_sid, error = %e, "callback attempts not stored");
    }
}

/// The status callback body (docs/architecture.md §4).
pub fn status_callback(r: &CallRecord) -> serde_json::Value {
    let legs: Vec<serde_json::Value> = r
        .steps
        .iter()
        .flat_map(|s| &s.legs)
        .map(|l| json!({ "LegSid": l.leg_sid, "To": l.to, "Status": l.result, "OnCallDuration": l.duration_secs }))
        .collect();
    let conversation: u64 = r
        .steps
        .iter()
        .flat_map(|s| &s.legs)
        .map(|l| l.duration_secs)
        .sum();
    json!({
        "CallSid": r.call_sid,
        "Status": r.status,
        "Direction": r.direction,
        "From": r.from,
        "To": r.to,
        "DateCreated": r.created_unix,
        "StartTime": r.created_unix,
        "EndTime": unix_now(),
        "ConversationDuration": conversation,
        "CustomField": "",
        "RecordingUrl": serde_json::Value::Null,
        "Legs": legs,
        "FlowId": r.flow_id,
        "Applets": r.steps.iter().map(|s| s.applet.clone()).collect::<Vec<_>>(),
    })
}
