//! `/v1/Accounts/{account_sid}/Calls…`: call records in Exotel's v1 shapes. A call's
//! record (applets, webhooks, legs, status callback attempts) is under `Trace`; lists
//! are newest first, filtered by `DateCreated`, `Status`, `From`, `To` and `Direction`,
//! and paged with a cursor (`Before`) that stays put while new calls arrive. Errors
//! answer as Exotel's v1 does: `{"RestException": {"Status", "Message"}}`.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::spec::{Auth, Body, Endpoint, Route};
use super::{Api, ApiError};
use crate::store::calls::{CallFilter, Cursor};

/// The largest page.
pub const MAX_PAGE: i64 = 100;

/// The call endpoints and their handlers.
pub fn routes() -> Vec<Route> {
    let ep = |path, summary| Endpoint {
        method: "get",
        path,
        summary,
        auth: Auth::Account,
        body: Body::Empty,
    };
    vec![
        (
            ep(
                "/v1/Accounts/{account}/Calls",
                "Calls, newest first (PageSize, Before, DateCreated, Status, From, To, Direction)",
            ),
            get(list),
        ),
        (
            ep(
                "/v1/Accounts/{account}/Calls.json",
                "The same list, Exotel's .json form",
            ),
            get(list),
        ),
        (
            ep(
                "/v1/Accounts/{account}/Calls/{call}",
                "One call with its trace (a .json suffix is allowed)",
            ),
            get(one),
        ),
        (
            ep(
                "/v1/Accounts/{account}/Recordings/{file}",
                "A call's recording, {CallSid}.wav (16-bit PCM, 8 kHz; dual: caller left)",
            ),
            get(recording),
        ),
        (
            Endpoint {
                method: "post",
                body: Body::Form(&[("Status", "string", false), ("Url", "string", false)]),
                ..ep(
                    "/v1/Accounts/{account}/Calls/{call}",
                    "Control a call in progress: Status=completed hangs it up; Url moves it into a flow",
                )
            },
            post(control),
        ),
    ]
}

/// Exotel's v1 error (with Retry-After on a 429).
pub fn exception(e: &ApiError) -> Response {
    let body = json!({ "RestException": { "Status": e.status.as_u16(), "Code": e.code, "Message": e.description } });
    let mut r = (e.status, axum::Json(body)).into_response();
    super::envelope::with_retry_after(&mut r, e);
    r
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) for seconds since the epoch.
pub fn datetime(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// The year, month (1-12) and day (1-31) of `days` since 1970-01-01 (Howard
/// Hinnant's civil-from-days, proleptic Gregorian).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Seconds since the epoch for `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DD` (UTC).
pub fn parse_datetime(s: &str) -> Option<i64> {
    let (date, time) = s.trim().split_once(' ').unwrap_or((s.trim(), "00:00:00"));
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (
        t.next()??,
        t.next().unwrap_or(Some(0))?,
        t.next().unwrap_or(Some(0))?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days-from-civil, the inverse of `datetime`.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Exotel's call fields for a stored record, with the record as `Trace`.
pub fn call_fields(account: &str, r: &Value) -> Value {
    let created = r["created_unix"].as_i64().unwrap_or(0);
    let duration = r["duration_secs"].as_i64().unwrap_or(0);
    let sid = r["call_sid"].as_str().unwrap_or("");
    json!({
        "Sid": sid,
        "ParentCallSid": null,
        "DateCreated": datetime(created),
        "DateUpdated": datetime(created + duration),
        "AccountSid": account,
        "To": r["to"],
        "From": r["from"],
        "PhoneNumberSid": null,
        "Status": r["status"],
        "StartTime": datetime(created),
        "EndTime": datetime(created + duration),
        "Duration": duration,
        "Price": null,
        "Direction": r["direction"],
        "AnsweredBy": null,
        "Uri": format!("/v1/Accounts/{account}/Calls/{sid}.json"),
        "RecordingUrl": r["recording_url"],
        "Trace": r,
    })
}

async fn one(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((account, call)): Path<(String, String)>,
) -> Response {
    if let Err(e) = api.account(&headers, &account).await {
        return exception(&e);
    }
    let sid = call.strip_suffix(".json").unwrap_or(&call);
    let live = || {
        api.live
            .in_progress(&account)
            .into_iter()
            .find(|r| r["call_sid"] == sid)
    };
    match api.store.call(&account, sid).await.map(|r| r.or_else(live)) {
        Ok(Some(r)) => axum::Json(json!({ "Call": call_fields(&account, &r) })).into_response(),
        Ok(None) => exception(&ApiError::not_found(&format!("call {sid}"))),
        Err(e) => exception(&ApiError::from(e)),
    }
}

/// A recording of one of the account's calls, as `audio/wav`.
async fn recording(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((account, file)): Path<(String, String)>,
) -> Response {
    if let Err(e) = api.account(&headers, &account).await {
        return exception(&e);
    }
    let sid = file.strip_suffix(".wav").unwrap_or("");
    let valid =
        sid.len() == 34 && sid.starts_with("CA") && sid[2..].bytes().all(|b| b.is_ascii_hexdigit());
    let not_found = || {
        exception(&ApiError::not_found(&format!(
            "recording {}",
            file.escape_default()
        )))
    };
    if !valid {
        return not_found();
    }
    let path = api.live.recording_path(&account, sid);
    match tokio::fs::read(&path).await {
        Ok(wav) => ([(axum::http::header::CONTENT_TYPE, "audio/wav")], wav).into_response(),
        Err(_) => not_found(),
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ListQuery {
    page_size: Option<String>,
    before: Option<String>,
    date_created: Option<String>,
    status: Option<String>,
    from: Option<String>,
    to: Option<String>,
    direction: Option<String>,
}

/// `DateCreated=gte:2026-11-01 00:00:00;lte:2026-11-30 23:59:59` (either bound may be
/// left out; `gt`/`lt` are taken as `gte`/`lte`).
fn date_range(s: &str) -> Result<(Option<i64>, Option<i64>), ApiError> {
    let (mut from, mut to) = (None, None);
    for part in s.split(';').filter(|p| !p.trim().is_empty()) {
        let (op, value) = part
            .split_once(':')
            .ok_or_else(|| ApiError::invalid("DateCreated", "must be gte:DATE;lte:DATE"))?;
        let t = parse_datetime(value)
            .ok_or_else(|| ApiError::invalid("DateCreated", "dates are YYYY-MM-DD HH:MM:SS"))?;
        match op.trim() {
            "gte" | "gt" => from = Some(t),
            "lte" | "lt" => to = Some(t),
            _ => {
                return Err(ApiError::invalid(
                    "DateCreated",
                    "operators are gte and lte",
                ));
            }
        }
    }
    Ok((from, to))
}

async fn list(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(account): Path<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    let result = async {
        api.account(&headers, &account).await?;
        if q.status.as_deref() == Some("in-progress") {
            let calls: Vec<Value> = api
                .live
                .in_progress(&account)
                .iter()
                .map(|r| call_fields(&account, r))
                .collect();
            return Ok(json!({ "Metadata": { "PageSize": calls.len() }, "Calls": calls }));
        }
        let size = match &q.page_size {
            None => 50,
            Some(s) => s
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=MAX_PAGE).contains(n))
                .ok_or_else(|| ApiError::invalid("PageSize", "must be from 1 to 100"))?,
        };
        let cursor = match &q.before {
            None => None,
            Some(b) => Some(
                Cursor::decode(b)
                    .ok_or_else(|| ApiError::invalid("Before", "is not a cursor this API gave"))?,
            ),
        };
        let (created_from, created_to) = match &q.date_created {
            Some(d) => date_range(d)?,
            None => (None, None),
        };
        let filter = CallFilter {
            created_from,
            created_to,
            status: q.status.clone(),
            from: q.from.clone(),
            to: q.to.clone(),
            direction: q.direction.clone(),
        };
        let mut calls = api
            .store
            .calls(&account, &filter, cursor.as_ref(), size + 1)
            .await?;
        let more = calls.len() as i64 > size;
        calls.truncate(usize::try_from(size).unwrap_or(50));
        let next = calls.last().filter(|_| more).map(|r| Cursor {
            created: r["created_unix"].as_i64().unwrap_or(0),
            sid: r["call_sid"].as_str().unwrap_or("").to_string(),
        });
        let base = format!("/v1/Accounts/{account}/Calls.json?PageSize={size}");
        Ok(json!({
            "Metadata": {
                "PageSize": size,
                "FirstPageUri": base,
                "NextPageUri": next.map(|c| format!("{base}&Before={}", c.encode())),
            },
            "Calls": calls.iter().map(|r| call_fields(&account, r)).collect::<Vec<_>>(),
        }))
    }
    .await;
    match result {
        Ok(v) => (StatusCode::OK, axum::Json(v)).into_response(),
        Err(e) => exception(&e),
    }
}

/// The flow id a `Url` names: `…/flows/{flow_id}`, Exotel's
/// `…/exoml/start_voice/{app_id}`, or the id itself.
pub fn flow_of(url: &str) -> Option<&str> {
    let id = ["/flows/", "/start_voice/"]
        .iter()
        .find_map(|m| url.rsplit_once(m).map(|(_, id)| id))
        .unwrap_or(url)
        .trim_end_matches('/');
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    ok.then_some(id)
}

/// `POST …/Calls/{CallSid}` (form-encoded): `Status=completed` hangs the call up on
/// every leg; `Url` naming a flow moves the caller into it now (the far leg is hung
/// up, the caller stays).
async fn control(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((account, call)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if let Err(e) = api.account(&headers, &account).await {
        return exception(&e);
    }
    let sid = call.strip_suffix(".json").unwrap_or(&call);
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if let Some(url) = get("Url") {
        let Some(flow) = flow_of(url) else {
            return exception(&ApiError::invalid(
                "Url",
                "names no flow (…/flows/{flow_id})",
            ));
        };
        if !api.live.has_flow(&account, flow) {
            return exception(&ApiError::invalid(
                "Url",
                &format!("names no loaded flow ('{flow}')"),
            ));
        }
        if !api.live.redirect(&account, sid, flow).await {
            return exception(&ApiError::not_found(&format!("call {sid} in progress")));
        }
        let call =
            json!({ "Sid": sid, "AccountSid": account, "Status": "in-progress", "Url": url });
        return axum::Json(json!({ "Call": call })).into_response();
    }
    match get("Status") {
        Some("completed") => {}
        Some(_) => return exception(&ApiError::invalid("Status", "may only be 'completed'")),
        None => return exception(&ApiError::missing("Status")),
    }
    if !api.live.terminate(&account, sid).await {
        return exception(&ApiError::not_found(&format!("call {sid} in progress")));
    }
    let call = json!({ "Sid": sid, "AccountSid": account, "Status": "completed" });
    axum::Json(json!({ "Call": call })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        for t in [0, 86_399, 951_782_400, 1_795_878_080, 4_102_444_800] {
            assert_eq!(parse_datetime(&datetime(t)), Some(t), "{t}");
        }
        assert_eq!(datetime(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(
            parse_datetime("2026-11-28"),
            parse_datetime("2026-11-28 00:00:00")
        );
        assert_eq!(parse_datetime("2026-13-01 00:00:00"), None);
        assert_eq!(parse_datetime("yesterday"), None);
    }
}
