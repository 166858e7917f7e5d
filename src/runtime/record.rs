//! The call record: what a call did, applet by applet, logged (and later stored) when
//! it ends.

use serde::Serialize;

/// One webhook request, for the trace.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookTrace {
    /// The URL (without the query).
    pub url: String,
    /// The HTTP status, if any came.
    pub status: Option<u16>,
    /// How long it took.
    pub latency_ms: u64,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// One far leg, for the trace.
#[derive(Debug, Clone, Serialize)]
pub struct LegTrace {
    /// The leg's sid.
    pub leg_sid: String,
    /// Whom it dialled.
    pub to: String,
    /// `answered`, `busy`, `no-answer`, `failed: …`, or the final SIP status.
    pub result: String,
    /// Seconds bridged.
    pub duration_secs: u64,
}

/// One applet run, for the trace.
#[derive(Debug, Clone, Serialize)]
pub struct StepTrace {
    /// The applet's id.
    pub applet: String,
    /// Its kind.
    pub kind: &'static str,
    /// The outcome it yielded (`-` when the call ended inside it).
    pub outcome: String,
    /// Milliseconds from the call's start.
    pub started_ms: u64,
    /// How long it ran.
    pub duration_ms: u64,
    /// Webhooks it called.
    pub webhooks: Vec<WebhookTrace>,
    /// Legs it placed.
    pub legs: Vec<LegTrace>,
    /// Why it took the outcome it took, where that is not obvious.
    pub notes: Vec<String>,
}

impl StepTrace {
    /// An empty trace for applet `applet` of kind `kind`.
    pub fn new(applet: &str, kind: &'static str) -> StepTrace {
        StepTrace {
            applet: applet.to_string(),
            kind,
            outcome: String::new(),
            started_ms: 0,
            duration_ms: 0,
            webhooks: Vec::new(),
            legs: Vec::new(),
            notes: Vec::new(),
        }
    }
}

/// How a call ended, as the status callback and the record say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallStatus {
    /// The flow ran to its end.
    Completed,
    /// The call could not be carried.
    Failed,
    /// The far end was busy.
    Busy,
    /// Nobody answered.
    NoAnswer,
    /// The caller hung up before being answered.
    Canceled,
}

impl CallStatus {
    /// As the status callback says it.
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Completed => "completed",
            CallStatus::Failed => "failed",
            CallStatus::Busy => "busy",
            CallStatus::NoAnswer => "no-answer",
            CallStatus::Canceled => "canceled",
        }
    }
}

/// The record of a call, logged when it ends.
#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    /// The call's sid.
    pub call_sid: String,
    /// The account the call belongs to (its trunk's), if any.
    pub account_sid: Option<String>,
    /// The flow's id.
    pub flow_id: String,
    /// Caller's number.
    pub from: String,
    /// Dialled number.
    pub to: String,
    /// Direction.
    pub direction: String,
    /// The calls API's `CustomField` (empty for other calls).
    pub custom_field: String,
    /// How the call ended.
    pub status: CallStatus,
    /// Seconds since the epoch when the call arrived.
    pub created_unix: u64,
    /// Seconds the call lasted.
    pub duration_secs: u64,
    /// Whether the flow asked for a recording (kept for the media side).
    pub record: bool,
    /// `single` or `dual`, when recording.
    pub recording_channels: Option<String>,
    /// Where the recording is, once written.
    pub recording_url: Option<String>,
    /// Why a recording asked for was not written.
    pub recording_error: Option<String>,
    /// The applets, in order.
    pub steps: Vec<StepTrace>,
    /// Each status callback attempt: (HTTP status or 0, error), in order.
    pub callbacks: Vec<CallbackAttempt>,
}

impl CallRecord {
    /// The record of a call with `info`, running flow `flow_id`, started now: no
    /// steps yet, `completed` until it is known otherwise.
    pub fn new(info: &crate::lang::vars::CallInfo, flow_id: &str) -> CallRecord {
        CallRecord {
            call_sid: info.sid.clone(),
            account_sid: info.account.clone(),
            flow_id: flow_id.to_string(),
            from: info.from.clone(),
            to: info.to.clone(),
            direction: info.direction.clone(),
            custom_field: info.custom_field.clone(),
            status: CallStatus::Completed,
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            duration_secs: 0,
            record: false,
            recording_channels: None,
            recording_url: None,
            recording_error: None,
            steps: Vec::new(),
            callbacks: Vec::new(),
        }
    }
}

/// One attempt to deliver the status callback.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct CallbackAttempt {
    /// The URL.
    pub url: String,
    /// The HTTP status, when one came.
    pub status: Option<u16>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// Seconds since the epoch when it was made.
    pub at_unix: u64,
}
