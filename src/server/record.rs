//! The end of a call: its record logged as one JSON line (`callflow::record`), and
//! the flow's status callback POSTed.

use serde_json::json;

use crate::applets::unix_now;
use crate::flow::Flow;
use crate::lang::vars::Vars;
use crate::runtime::{CallRecord, Http, Settings};

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

/// Logs the call record and sends the flow's status callback.
pub async fn finish(flow: &Flow, record: &CallRecord, http: &dyn Http, settings: &Settings) {
    log(record);
    let Some(url) = &flow.status_callback else {
        return;
    };
    let Ok(url) = url.render(&mut Vars::default().scope()) else {
        return;
    };
    let body = status_callback(record);
    if let Err(e) = http.post_json(&url, &body, settings.webhook_timeout).await {
        tracing::info!(sid = %record.call_sid, %url, error = %e, "status callback failed");
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
