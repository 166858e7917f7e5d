//! The end of a call: its record logged as one JSON line (`callflow::record`) and
//! written to the store, and the flow's status callback delivered in the background
//! (up to three attempts, the next after a timeout, a refused connection or a 5xx),
//! each attempt added to the stored record. Neither the store nor the callback can
//! delay or break the call: it is over.

use std::time::Duration;

use serde_json::json;

use super::State;
use crate::api::calls::datetime;
use crate::api::connect::CallbackContent;
use crate::applets::unix_now;
use crate::flow::Flow;
use crate::lang::vars::Vars;
use crate::runtime::{CallRecord, CallbackAttempt};
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
    if !tracing::enabled!(target: "callflow::record", tracing::Level::INFO) {
        return; // nobody reads the line: not worth serialising
    }
    let json = record.to_json();
    tracing::info!(target: "callflow::record", sid = %record.call_sid, record = %json, "call ended");
}

/// Where a call's status callbacks go and how they are encoded.
#[derive(Debug, Clone)]
pub struct StatusCallback {
    /// The URL.
    pub url: String,
    /// JSON, or Exotel's multipart form.
    pub content: CallbackContent,
    /// Whether an account gave the URL (its flow, or the calls API): it goes through
    /// the client that may refuse private addresses.
    pub from_account: bool,
}

impl StatusCallback {
    /// The client this callback goes through.
    pub fn client<'a>(&self, state: &'a State) -> &'a WebhookClient {
        if self.from_account {
            &state.account_http
        } else {
            &state.http
        }
    }
}

impl StatusCallback {
    /// The status callback a flow names (JSON), if it names one.
    pub fn of_flow(flow: Option<&Flow>) -> Option<StatusCallback> {
        let url = Vars::default()
            .renderer()
            .render(flow?.status_callback.as_ref()?)
            .ok()?;
        Some(StatusCallback {
            url,
            content: CallbackContent::Json,
            from_account: flow?.is_accounts(),
        })
    }
}

/// Logs and stores the call record, then delivers its terminal status `callback`
/// (if it has one) in the background.
pub async fn finish(state: &State, callback: Option<StatusCallback>, record: CallRecord) {
    log(&record);
    if let Some(store) = &state.store
        && let Err(e) = store.insert_call(&record).await
    {
        tracing::warn!(sid = %record.call_sid, error = %e, "call record not stored");
    }
    if let Some(callback) = callback {
        let (http, store) = (callback.client(state).clone(), state.store.clone());
        let timeout = state.settings.webhook_timeout;
        tokio::spawn(async move {
            let body = status_callback(&record, "terminal");
            let mut attempts = record.callbacks.clone();
            attempts.extend(deliver(&callback, &body, &http, timeout).await);
            if let Some(store) = store
                && let Err(e) = store.set_callbacks(&record.call_sid, &attempts).await
            {
                tracing::warn!(sid = %record.call_sid, error = %e, "callback attempts not stored");
            }
        });
    }
}

/// Delivers one status callback `body`: up to [`CALLBACK_ATTEMPTS`] attempts, the
/// next after a timeout, a refused connection or a 5xx; gives every attempt.
pub async fn deliver(
    callback: &StatusCallback,
    body: &serde_json::Value,
    http: &WebhookClient,
    timeout: Duration,
) -> Vec<CallbackAttempt> {
    let (content_type, bytes) = encode(body, callback.content);
    let url = &callback.url;
    let mut attempts = Vec::new();
    let mut wait = CALLBACK_BACKOFF;
    for n in 1..=CALLBACK_ATTEMPTS {
        let result = http.post(url, &content_type, bytes.clone(), timeout).await;
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
        tracing::info!(%url, attempt = n, "status callback failed");
        if n < CALLBACK_ATTEMPTS {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    attempts
}

/// The body as JSON, or as `multipart/form-data` with one part per field (`Legs`
/// flattened as `Legs[0][Status]`, …).
pub fn encode(body: &serde_json::Value, content: CallbackContent) -> (String, Vec<u8>) {
    match content {
        CallbackContent::Json => ("application/json".into(), body.to_string().into_bytes()),
        CallbackContent::Multipart => {
            let boundary = format!("callflow{:032x}", rand::random::<u128>());
            let mut out = Vec::new();
            for (name, value) in flatten("", body) {
                out.extend_from_slice(
                    format!(
                        "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                    )
                    .as_bytes(),
                );
            }
            out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
            (format!("multipart/form-data; boundary={boundary}"), out)
        }
    }
}

/// A JSON value as form fields: objects and arrays by `name[key]`, null as empty.
fn flatten(prefix: &str, v: &serde_json::Value) -> Vec<(String, String)> {
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}[{k}]")
        }
    };
    match v {
        serde_json::Value::Object(m) => m.iter().flat_map(|(k, v)| flatten(&key(k), v)).collect(),
        serde_json::Value::Array(a) => a
            .iter()
            .enumerate()
            .flat_map(|(i, v)| flatten(&key(&i.to_string()), v))
            .collect(),
        serde_json::Value::Null => vec![(prefix.to_string(), String::new())],
        serde_json::Value::String(s) => vec![(prefix.to_string(), s.clone())],
        other => vec![(prefix.to_string(), other.to_string())],
    }
}

/// The status callback body for `event` (`answered`, `terminal`; docs/architecture.md
/// §4): Exotel's fields, times as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn status_callback(r: &CallRecord, event: &str) -> serde_json::Value {
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
    let time = |unix: u64| datetime(i64::try_from(unix).unwrap_or(i64::MAX));
    let now = time(unix_now());
    let (status, end) = match event {
        "terminal" => (r.status.as_str(), now.clone()),
        _ => ("in-progress", String::new()),
    };
    json!({
        "EventType": event,
        "CallSid": r.call_sid,
        "Status": status,
        "Direction": r.direction,
        "From": r.from,
        "To": r.to,
        "DateCreated": time(r.created_unix),
        "DateUpdated": now,
        "StartTime": time(r.created_unix),
        "EndTime": end,
        "ConversationDuration": conversation,
        "CustomField": r.custom_field,
        "RecordingUrl": r.recording_url,
        "Legs": legs,
        "FlowId": r.flow_id,
        "Applets": r.steps.iter().map(|s| s.applet.clone()).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_has_one_part_per_field() {
        let body =
            json!({ "CallSid": "CA1", "RecordingUrl": null, "Legs": [{ "Status": "busy" }] });
        let (ct, bytes) = encode(&body, CallbackContent::Multipart);
        let boundary = ct.strip_prefix("multipart/form-data; boundary=").unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("name=\"CallSid\"\r\n\r\nCA1\r\n"), "{text}");
        assert!(
            text.contains("name=\"Legs[0][Status]\"\r\n\r\nbusy\r\n"),
            "{text}"
        );
        assert!(text.contains("name=\"RecordingUrl\"\r\n\r\n\r\n"), "{text}");
        assert!(text.ends_with(&format!("--{boundary}--\r\n")));
    }
}
