//! `POST /v1/Accounts/{account_sid}/Calls/connect`: the calls API's outbound calls,
//! form-encoded as Exotel's. Click-to-call: `From` is called first and, once it
//! answers, `To`; connect-to-flow: `From` is called and, once it answers, the flow
//! `Url` names runs with it as the caller. This file reads and checks the request;
//! the engine ([`super::Live::connect`]) checks what needs the routing (the caller
//! id's trunk, the parties' trunks, the limits) and places the call.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use super::calls::{call_fields, exception, flow_of};
use super::spec::{Auth, Body, Endpoint, Route};
use super::{Api, ApiError};
use crate::lang::number::{is_e164, normalise};

/// The longest `TimeLimit`, in seconds (Exotel's: four hours).
pub const MAX_TIME_LIMIT: u64 = 14_400;

/// The ring time of each party when `TimeOut` is not given, in seconds.
pub const DEFAULT_TIME_OUT: u64 = 30;

/// The longest `CustomField`, in bytes.
pub const MAX_CUSTOM_FIELD: usize = 1024;

/// A party of an API call, as the request names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Party {
    /// An E.164 number, reached through the carriers.
    Number(String),
    /// `sip:<trunk_sid>` or a SIP URI of one of the account's trunks.
    Sip(String),
}

impl Party {
    /// As the record and the callbacks show it.
    pub fn as_str(&self) -> &str {
        match self {
            Party::Number(s) | Party::Sip(s) => s,
        }
    }
}

/// What happens once the first party answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Then {
    /// Click-to-call: call this party and bridge the two.
    Call(Party),
    /// Connect-to-flow: run this flow (its id) with the first party as the caller.
    Flow(String),
}

/// When the status callback is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackEvent {
    /// When the first party answers.
    Answered,
    /// When the call ends.
    Terminal,
}

/// How the status callback's body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackContent {
    /// `application/json`.
    Json,
    /// `multipart/form-data` (Exotel's default).
    Multipart,
}

/// A checked `Calls/connect` request.
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    /// Who is called first (the customer).
    pub from: Party,
    /// What happens once they answer.
    pub then: Then,
    /// The account's number both parties see as the caller.
    pub caller_id: String,
    /// The longest the call may last once the first party answered.
    pub time_limit: Option<Duration>,
    /// How long each party may ring.
    pub time_out: Duration,
    /// Whether the call is to be recorded.
    pub record: bool,
    /// `single` or `dual`, when recording.
    pub recording_channels: Option<String>,
    /// Reaches every webhook of the call and its status callbacks.
    pub custom_field: String,
    /// Where the status callbacks go.
    pub status_callback: Option<String>,
    /// Which status callbacks are sent.
    pub events: Vec<CallbackEvent>,
    /// How they are encoded.
    pub content: CallbackContent,
}

/// The endpoint (with Exotel's `.json` suffix too).
pub fn routes() -> Vec<Route> {
    const FIELDS: &[(&str, &str, bool)] = &[
        ("From", "string", true),
        ("To", "string", false),
        ("Url", "string", false),
        ("CallerId", "string", true),
        ("TimeLimit", "integer", false),
        ("TimeOut", "integer", false),
        ("Record", "boolean", false),
        ("RecordingChannels", "string", false),
        ("CustomField", "string", false),
        ("StatusCallback", "string", false),
        ("StatusCallbackEvents[]", "string", false),
        ("StatusCallbackContentType", "string", false),
    ];
    let ep = |path| Endpoint {
        method: "post",
        path,
        summary: "Place a call: From first, then To (click-to-call) or the flow Url names (connect-to-flow)",
        auth: Auth::Account,
        body: Body::Form(FIELDS),
    };
    vec![
        (ep("/v1/Accounts/{account}/Calls/connect"), post(connect)),
        (
            ep("/v1/Accounts/{account}/Calls/connect.json"),
            post(connect),
        ),
    ]
}

async fn connect(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(account): Path<String>,
    body: Bytes,
) -> Response {
    let result = async {
        api.account(&headers, &account).await?;
        let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
        let req = parse(&form)?;
        if let Then::Flow(id) = &req.then
            && !api.live.has_flow(&account, id)
        {
            return Err(ApiError::invalid(
                "Url",
                &format!("names no flow of this account ('{id}')"),
            ));
        }
        api.live.connect(&account, req).await
    }
    .await;
    match result {
        Ok(call) => axum::Json(json!({ "Call": call_fields(&account, &call) })).into_response(),
        Err(e) => exception(&e),
    }
}

/// Reads and checks the form.
pub fn parse(form: &[(String, String)]) -> Result<ConnectRequest, ApiError> {
    let get = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    };
    let from = party(
        "From",
        get("From").ok_or_else(|| ApiError::missing("From"))?,
    )?;
    let then = match (get("To"), get("Url")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "Url",
                "and 'To' exclude each other: give one",
            ));
        }
        (Some(to), None) => Then::Call(party("To", to)?),
        (None, Some(url)) => Then::Flow(
            flow_of(url)
                .ok_or_else(|| ApiError::invalid("Url", "names no flow (…/flows/{flow_id})"))?
                .to_string(),
        ),
        (None, None) => return Err(ApiError::missing("To")),
    };
    let caller_id = normalise(get("CallerId").ok_or_else(|| ApiError::missing("CallerId"))?);
    if !is_e164(&caller_id) {
        return Err(ApiError::invalid("CallerId", "is not an E.164 number"));
    }
    let time_limit = seconds(get("TimeLimit"), "TimeLimit", MAX_TIME_LIMIT)?;
    let time_out =
        seconds(get("TimeOut"), "TimeOut", 300)?.unwrap_or(Duration::from_secs(DEFAULT_TIME_OUT));
    let record = match get("Record") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::invalid("Record", "is true or false")),
    };
    let recording_channels = match get("RecordingChannels") {
        None => None,
        Some(c @ ("single" | "dual")) => Some(c.to_string()),
        Some(_) => return Err(ApiError::invalid("RecordingChannels", "is single or dual")),
    };
    let custom_field = get("CustomField").unwrap_or("").to_string();
    if custom_field.len() > MAX_CUSTOM_FIELD {
        return Err(ApiError::invalid(
            "CustomField",
            &format!("is longer than {MAX_CUSTOM_FIELD} bytes"),
        ));
    }
    let status_callback = get("StatusCallback").map(callback_url).transpose()?;
    Ok(ConnectRequest {
        from,
        then,
        caller_id,
        time_limit,
        time_out,
        record,
        recording_channels,
        custom_field,
        status_callback,
        events: events(form)?,
        content: match get("StatusCallbackContentType") {
            None | Some("multipart/form-data") => CallbackContent::Multipart,
            Some("application/json") => CallbackContent::Json,
            Some(_) => {
                return Err(ApiError::invalid(
                    "StatusCallbackContentType",
                    "is multipart/form-data or application/json",
                ));
            }
        },
    })
}

/// A party: an E.164 number (separators allowed) or a `sip:` URI.
fn party(field: &str, value: &str) -> Result<Party, ApiError> {
    if value.len() > 256 || value.chars().any(char::is_control) {
        return Err(ApiError::invalid(field, "is not a number or a SIP URI"));
    }
    if value.to_ascii_lowercase().starts_with("sip:") {
        return crate::applets::connect::params::parse_target(value)
            .map(|_| Party::Sip(value.to_string()))
            .map_err(|e| ApiError::invalid(field, &e));
    }
    let n = normalise(value);
    if is_e164(&n) {
        Ok(Party::Number(n))
    } else {
        Err(ApiError::invalid(
            field,
            "is neither an E.164 number (+918047112233) nor sip:<trunk_sid>",
        ))
    }
}

/// Whole seconds from 1 to `max`.
fn seconds(v: Option<&str>, field: &str, max: u64) -> Result<Option<Duration>, ApiError> {
    v.map(|s| {
        s.parse::<u64>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .map(Duration::from_secs)
            .ok_or_else(|| ApiError::invalid(field, &format!("is whole seconds from 1 to {max}")))
    })
    .transpose()
}

/// An http(s) URL.
fn callback_url(s: &str) -> Result<String, ApiError> {
    match url::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(s.to_string()),
        _ => Err(ApiError::invalid("StatusCallback", "is not an http(s) URL")),
    }
}

/// `StatusCallbackEvents[]` (or `[0]`, `[1]`, …): `answered`, `terminal`; terminal
/// when none is given.
fn events(form: &[(String, String)]) -> Result<Vec<CallbackEvent>, ApiError> {
    let mut out = Vec::new();
    for (_, v) in form
        .iter()
        .filter(|(k, _)| k.starts_with("StatusCallbackEvents"))
    {
        let e = match v.trim() {
            "answered" => CallbackEvent::Answered,
            "terminal" => CallbackEvent::Terminal,
            _ => {
                return Err(ApiError::invalid(
                    "StatusCallbackEvents",
                    "takes answered and terminal",
                ));
            }
        };
        if !out.contains(&e) {
            out.push(e);
        }
    }
    if out.is_empty() {
        out.push(CallbackEvent::Terminal);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn click_to_call_and_connect_to_flow_are_read() {
        let r = parse(&form(&[
            ("From", "+91 98450 12345"),
            ("To", "sip:TRbot"),
            ("CallerId", "+918047112233"),
            ("TimeLimit", "600"),
            ("StatusCallbackEvents[0]", "answered"),
            ("StatusCallbackEvents[1]", "terminal"),
            ("StatusCallbackContentType", "application/json"),
        ]))
        .unwrap();
        assert_eq!(r.from, Party::Number("+919845012345".into()));
        assert_eq!(r.then, Then::Call(Party::Sip("sip:TRbot".into())));
        assert_eq!(r.time_limit, Some(Duration::from_secs(600)));
        assert_eq!(r.time_out, Duration::from_secs(DEFAULT_TIME_OUT));
        assert_eq!(
            r.events,
            vec![CallbackEvent::Answered, CallbackEvent::Terminal]
        );
        assert_eq!(r.content, CallbackContent::Json);
        let r = parse(&form(&[
            ("From", "+919845012345"),
            ("Url", "http://my.exotel.com/AC1/exoml/start_voice/support"),
            ("CallerId", "+918047112233"),
        ]))
        .unwrap();
        assert_eq!(r.then, Then::Flow("support".into()));
        assert_eq!(r.events, vec![CallbackEvent::Terminal]);
        assert_eq!(r.content, CallbackContent::Multipart);
    }

    #[test]
    fn bad_requests_say_which_field() {
        let base = [("From", "+919845012345"), ("CallerId", "+918047112233")];
        let err = |extra: &[(&str, &str)]| {
            let mut f = form(&base);
            f.extend(form(extra));
            parse(&f).unwrap_err().description
        };
        assert!(err(&[]).contains("'To'"));
        assert!(err(&[("To", "+91"),]).contains("'To'"));
        assert!(err(&[("To", "+919845012346"), ("Url", "x/flows/a")]).contains("exclude"));
        assert!(err(&[("To", "+919845012346"), ("TimeLimit", "0")]).contains("TimeLimit"));
        assert!(
            err(&[("To", "+919845012346"), ("StatusCallback", "ftp://x")])
                .contains("StatusCallback")
        );
        assert!(err(&[("To", "sip:a b@c")]).contains("'To'"));
        assert!(
            err(&[
                ("To", "+919845012346"),
                ("StatusCallbackEvents[]", "ringing")
            ])
            .contains("answered")
        );
    }
}
