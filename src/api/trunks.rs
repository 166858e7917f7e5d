//! `/v2/accounts/{account_sid}/trunks…`: trunks, and their phone numbers, whitelisted
//! IPs, destination URIs, settings and digest credentials, in Exotel's shapes. Each
//! request authenticates as the account in its path; another account's trunk answers
//! as one that does not exist.

use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use serde_json::{Map, Value, json};

use super::spec::{Auth, Body, Endpoint, Route};
use super::{Api, ApiError, as_account, as_admin, json_body};
use crate::config::parse_sip_uri;
use crate::lang::number::is_e164;
use crate::sip::digest::DigestSecret;
use crate::store::trunks::{Child, TrunkSettings};
use crate::store::{StoredTrunk, TrunkRow};

type Fields = Map<String, Value>;

const TRUNKS: &str = "/v2/accounts/{account}/trunks";

/// The endpoint `method path` of this module.
const fn ep(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    body: Body,
) -> Endpoint {
    Endpoint {
        method,
        path,
        summary,
        auth: Auth::Account,
        body,
    }
}

/// The lists that hang off a trunk, each with its body.
const LISTS: [(&str, &str, Body); 4] = [
    (
        "/v2/accounts/{account}/trunks/{trunk}/phone-numbers",
        "Map a phone number (E.164) to the trunk, in flow or pstn mode",
        Body::Json(&[
            ("phone_number", "string", true),
            ("mode", "string", false),
            ("flow_id", "string", false),
        ]),
    ),
    (
        "/v2/accounts/{account}/trunks/{trunk}/whitelisted-ips",
        "Allow an address (IPv4 or IPv6, with a mask) to send the partner's calls",
        Body::Json(&[("ip", "string", true), ("mask", "integer", false)]),
    ),
    (
        "/v2/accounts/{account}/trunks/{trunk}/destination-uris",
        "Add destinations host:port;transport=tcp|tls (207 when only some are valid)",
        Body::Json(&[("destinations", "array", true)]),
    ),
    (
        "/v2/accounts/{account}/trunks/{trunk}/credentials",
        "Add digest credentials (stored as HA1 hashes)",
        Body::Json(&[
            ("user_name", "string", true),
            ("password", "string", true),
            ("friendly_name", "string", false),
        ]),
    ),
];

/// The trunk endpoints and their handlers.
pub fn routes() -> Vec<Route> {
    let mut r: Vec<Route> = vec![
        (
            ep(
                "get",
                TRUNKS,
                "List the account's trunks (page_size, page)",
                Body::Empty,
            ),
            get(list),
        ),
        (
            ep(
                "post",
                TRUNKS,
                "Create a trunk",
                Body::Json(&[
                    ("trunk_name", "string", true),
                    ("nso_code", "string", false),
                    ("domain_name", "string", false),
                ]),
            ),
            post(create),
        ),
        (
            ep(
                "get",
                "/v2/accounts/{account}/trunks/{trunk}",
                "Get a trunk",
                Body::Empty,
            ),
            get(one),
        ),
        (
            ep(
                "delete",
                "/v2/accounts/{account}/trunks/{trunk}",
                "Delete a trunk and what hangs off it",
                Body::Empty,
            ),
            delete(remove),
        ),
        (
            ep(
                "get",
                "/v2/accounts/{account}/trunks/{trunk}/settings",
                "Get the trunk's settings",
                Body::Empty,
            ),
            get(children),
        ),
        (
            ep(
                "post",
                "/v2/accounts/{account}/trunks/{trunk}/settings",
                "Set trunk_external_alias, max_channels, max_cps, allowed_destinations, max_call_duration, allow_md5, srtp, codecs",
                Body::Json(&[("settings", "array", true)]),
            ),
            post(add_child),
        ),
        (
            ep(
                "put",
                "/v2/accounts/{account}/trunks/{trunk}/phone-numbers/{id}",
                "Change a number's mode and flow",
                Body::Json(&[("mode", "string", false), ("flow_id", "string", false)]),
            ),
            put(update_number),
        ),
    ];
    for (path, summary, body) in LISTS {
        r.push((ep("get", path, "List them", Body::Empty), get(children)));
        r.push((ep("post", path, summary, body), post(add_child)));
    }
    r.push((
        Endpoint {
            auth: Auth::Admin,
            ..ep(
                "get",
                "/v2/trunks",
                "Every trunk: the file's (source file) and the accounts' (source api)",
                Body::Empty,
            )
        },
        get(all_trunks),
    ));
    for (path, item) in [
        (
            "/v2/accounts/{account}/trunks/{trunk}/phone-numbers/{id}",
            "Remove a phone number",
        ),
        (
            "/v2/accounts/{account}/trunks/{trunk}/whitelisted-ips/{id}",
            "Remove an allowed address",
        ),
        (
            "/v2/accounts/{account}/trunks/{trunk}/destination-uris/{id}",
            "Remove a destination",
        ),
        (
            "/v2/accounts/{account}/trunks/{trunk}/credentials/{id}",
            "Remove credentials",
        ),
    ] {
        r.push((ep("delete", path, item, Body::Empty), delete(remove_child)));
    }
    r
}

/// `GET /v2/trunks`, the operator's view of every trunk.
async fn all_trunks(State(api): State<Api>, method: Method, headers: HeaderMap) -> Response {
    as_admin(&api, &method, &headers, || async {
        let mut all = api.live.file_trunks();
        for t in api.store.all_trunks().await? {
            all.push(json!({
                "trunk_sid": t.trunk.trunk_sid,
                "account_sid": t.trunk.account_sid,
                "trunk_name": t.trunk.trunk_name,
                "phone_numbers": t.numbers.iter().map(|n| n.phone_number.clone()).collect::<Vec<_>>(),
                "destinations": t.destinations.iter().map(|d| d.destination.clone()).collect::<Vec<_>>(),
                "source": "api",
            }));
        }
        Ok((StatusCode::OK, json!({ "trunks": all })))
    })
    .await
}

/// The list a matched path names: the segment after `{trunk}`.
fn list_of(path: &MatchedPath) -> String {
    path.as_str()
        .split("/{trunk}/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("")
        .to_string()
}

/// Trunk `sid` of `account`, or 404.
async fn owned(api: &Api, account: &str, sid: &str) -> Result<TrunkRow, ApiError> {
    api.store
        .trunk(account, sid)
        .await?
        .ok_or_else(|| ApiError::not_found(&format!("trunk {sid}")))
}

fn str_field<'a>(body: &'a Fields, name: &str) -> Result<Option<&'a str>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(ApiError::invalid(name, "must be a string")),
    }
}

fn required<'a>(body: &'a Fields, name: &str) -> Result<&'a str, ApiError> {
    str_field(body, name)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::missing(name))
}

/// An integer given as a number or a string, within `range`.
pub(super) fn int_field(
    v: &Value,
    name: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, ApiError> {
    let n = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    n.filter(|n| range.contains(n)).ok_or_else(|| {
        ApiError::invalid(
            name,
            &format!(
                "must be an integer from {} to {}",
                range.start(),
                range.end()
            ),
        )
    })
}

/// Checks a free-text field for control characters and length.
fn plain(name: &str, v: &str, max: usize) -> Result<(), ApiError> {
    if v.len() > max || v.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            name,
            &format!("must be at most {max} printable characters"),
        ));
    }
    Ok(())
}

#[derive(serde::Deserialize)]
struct Page {
    page_size: Option<i64>,
    page: Option<i64>,
}

async fn list(
    State(api): State<Api>,
    method: Method,
    headers: HeaderMap,
    Path(account): Path<String>,
    Query(page): Query<Page>,
) -> Response {
    as_account(&api, &method, &headers, &account, || async {
        let size = page.page_size.unwrap_or(50).clamp(1, 500);
        let number = page.page.unwrap_or(0).max(0);
        let mut trunks = api.store.trunks(&account, number * size, size + 1).await?;
        let more = trunks.len() as i64 > size;
        trunks.truncate(usize::try_from(size).unwrap_or(50));
        let base = format!("/v2/accounts/{account}/trunks?page_size={size}");
        let meta = json!({
            "page": number,
            "page_size": size,
            "first_page_uri": format!("{base}&page=0"),
            "prev_page_uri": (number > 0).then(|| format!("{base}&page={}", number - 1)),
            "next_page_uri": more.then(|| format!("{base}&page={}", number + 1)),
        });
        Ok((
            StatusCode::OK,
            json!({ "metadata": meta, "trunks": trunks }),
        ))
    })
    .await
}

async fn create(
    State(api): State<Api>,
    method: Method,
    headers: HeaderMap,
    Path(account): Path<String>,
    body: Bytes,
) -> Response {
    as_account(&api, &method, &headers, &account, || async {
        let body = json_body(&headers, &body)?;
        let name = required(&body, "trunk_name")?;
        if name.len() > 16 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(ApiError::invalid(
                "trunk_name",
                "must be at most 16 letters, digits or '_'",
            ));
        }
        let nso = str_field(&body, "nso_code")?;
        let domain = str_field(&body, "domain_name")?;
        for (n, v) in [("nso_code", nso), ("domain_name", domain)] {
            plain(n, v.unwrap_or(""), 253)?;
        }
        let trunk = api.store.create_trunk(&account, name, nso, domain).await?;
        api.changed().await;
        Ok((StatusCode::OK, json!(trunk)))
    })
    .await
}

async fn one(
    State(api): State<Api>,
    method: Method,
    headers: HeaderMap,
    Path((account, trunk)): Path<(String, String)>,
) -> Response {
    as_account(&api, &method, &headers, &account, || async {
        Ok((StatusCode::OK, json!(owned(&api, &account, &trunk).await?)))
    })
    .await
}

async fn remove(
    State(api): State<Api>,
    method: Method,
    headers: HeaderMap,
    Path((account, trunk)): Path<(String, String)>,
) -> Response {
    as_account(&api, &method, &headers, &account, || async {
        owned(&api, &account, &trunk).await?;
        api.store.delete_trunk(&account, &trunk).await?;
        api.changed().await;
        Ok((
            StatusCode::OK,
            json!({ "trunk_sid": trunk, "deleted": true }),
        ))
    })
    .await
}

/// The list a path segment names.
fn child(list: &str) -> Result<Child, ApiError> {
    match list {
        "phone-numbers" => Ok(Child::Numbers),
        "whitelisted-ips" => Ok(Child::WhitelistedIps),
        "destination-uris" => Ok(Child::Destinations),
        "credentials" => Ok(Child::Credentials),
        _ => Err(ApiError::not_found(&format!("'{list}'"))),
    }
}

async fn children(
    State(api): State<Api>,
    method: Method,
    headers: HeaderMap,
    Path((account, trunk)): Path<(String, String)>,
    matched: MatchedPath,
) -> Response {
    let list = list_of(&matched);
    as_account(&api, &method, &headers, &account, || async {
        let row = owned(&api, &account, &trunk).await?;
        let data = match list.as_str() {
            "settings" => settings_of(&row),
            other => match child(other)? {
                Child::Numbers => json!(api.store.numbers(&trunk).await?),
                Child::WhitelistedIps => json!(api.store.ips(&trunk).await?),
                Child::Destinations => json!(api.store.destinations(&trunk).await?),
                Child::Credentials => json!(api.store.credentials(&trunk).await?),
            },
        };
        Ok((StatusCode::OK, data))
    })
    .await
}

async fn add_child(
    State(api): State<Api>,
    method: Method,
    headers: HeaderMap,
    Path((account, trunk)): Path<(String, String)>,
    matched: MatchedPath,
    body: Bytes,
) -> Response {
    let list = list_of(&matched);
    as_account(&api, &method, &headers, &account, || async {
        let row = owned(&api, &account, &trunk).await?;
        let body = json_body(&headers, &body)?;
        let out = match list.as_str() {
            "settings" => settings(&api, &row, &body).await?,
            other => match child(other)? {
                Child::Numbers => add_number(&api, &row, &body).await?,
                Child::WhitelistedIps => add_ip(&api, &trunk, &body).await?,
                Child::Destinations => add_destinations(&api, &trunk, &body).await?,
                Child::Credentials => add_credential(&api, &trunk, &body).await?,
            },
        };
        api.changed().await;
        Ok(out)
    })
    .await
}

async fn remove_child(
    State(api): State<Api>,
    method: Method,
    headers: HeaderMap,
    Path((account, trunk, id)): Path<(String, String, String)>,
    matched: MatchedPath,
) -> Response {
    let list = list_of(&matched);
    as_account(&api, &method, &headers, &account, || async {
        owned(&api, &account, &trunk).await?;
        if !api.store.delete_child(child(&list)?, &trunk, &id).await? {
            return Err(ApiError::not_found(&id));
        }
        api.changed().await;
        Ok((StatusCode::OK, json!({ "id": id, "deleted": true })))
    })
    .await
}

/// A number's mode and flow from `body`.
fn number_target<'a>(
    api: &Api,
    account: &str,
    body: &'a Fields,
) -> Result<(&'a str, Option<&'a str>), ApiError> {
    let mode = str_field(body, "mode")?.unwrap_or("flow");
    let flow = str_field(body, "flow_id")?;
    match (mode, flow) {
        ("pstn", _) => Ok(("pstn", None)),
        ("flow", None) => Err(ApiError::missing("flow_id")),
        ("flow", Some(f)) if !api.live.has_flow(account, f) => Err(ApiError::invalid(
            "flow_id",
            &format!("names no loaded flow ('{f}')"),
        )),
        ("flow", Some(f)) => Ok(("flow", Some(f))),
        _ => Err(ApiError::invalid("mode", "must be 'flow' or 'pstn'")),
    }
}

async fn add_number(
    api: &Api,
    trunk: &TrunkRow,
    body: &Fields,
) -> Result<(StatusCode, Value), ApiError> {
    let number = required(body, "phone_number")?;
    if !is_e164(number) {
        return Err(ApiError::invalid(
            "phone_number",
            "must be an E.164 number such as +918047112233",
        ));
    }
    if api.live.number_in_file(number) {
        return Err(ApiError::from_file(&format!("phone number {number}")));
    }
    let (mode, flow) = number_target(api, &trunk.account_sid, body)?;
    let row = api
        .store
        .add_number(&trunk.trunk_sid, number, mode, flow)
        .await?;
    Ok((StatusCode::OK, json!(row)))
}

async fn update_number(
    State(api): State<Api>,
    method: Method,
    headers: HeaderMap,
    Path((account, trunk, id)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    as_account(&api, &method, &headers, &account, || async {
        owned(&api, &account, &trunk).await?;
        let body = json_body(&headers, &body)?;
        let (mode, flow) = number_target(&api, &account, &body)?;
        if !api.store.update_number(&trunk, &id, mode, flow).await? {
            return Err(ApiError::not_found(&id));
        }
        api.changed().await;
        Ok((
            StatusCode::OK,
            json!({ "id": id, "mode": mode, "flow_id": flow }),
        ))
    })
    .await
}

async fn add_ip(api: &Api, trunk: &str, body: &Fields) -> Result<(StatusCode, Value), ApiError> {
    let ip: IpAddr = required(body, "ip")?
        .parse()
        .map_err(|_| ApiError::invalid("ip", "must be an IPv4 or IPv6 address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let mask = match body.get("mask") {
        None | Some(Value::Null) => max,
        Some(v) => int_field(v, "mask", 0..=max)?,
    };
    let row = api.store.add_ip(trunk, &ip.to_string(), mask).await?;
    Ok((StatusCode::OK, json!(row)))
}

/// One destination from the API's `host:port;transport=tcp|tls` (a `sip:` prefix is
/// allowed), as the SIP URI stored.
fn destination_uri(text: &str) -> Result<String, String> {
    let uri = if text.starts_with("sip:") || text.starts_with("sips:") {
        text.to_string()
    } else {
        format!("sip:{text}")
    };
    let parsed = parse_sip_uri(&uri)?;
    let transport = parsed
        .params
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case("transport"))
        .and_then(|p| p.value.as_deref())
        .map(str::to_ascii_lowercase);
    match transport.as_deref() {
        Some("tcp" | "tls") => Ok(uri),
        _ => Err("must say ;transport=tcp or ;transport=tls".into()),
    }
}

async fn add_destinations(
    api: &Api,
    trunk: &str,
    body: &Fields,
) -> Result<(StatusCode, Value), ApiError> {
    let items = match body.get("destinations") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(_) => {
            return Err(ApiError::invalid(
                "destinations",
                "must be a non-empty list",
            ));
        }
        None => return Err(ApiError::missing("destinations")),
    };
    let mut results = Vec::new();
    let mut failed = 0;
    for (i, item) in items.iter().enumerate() {
        let one = async {
            let obj = item
                .as_object()
                .ok_or_else(|| "must be an object".to_string())?;
            let text = obj
                .get("destination")
                .and_then(Value::as_str)
                .ok_or("needs 'destination'")?;
            let uri = destination_uri(text)?;
            let num = |k: &str| {
                obj.get(k).map_or(Ok(0), |v| {
                    int_field(v, k, 0..=65535).map_err(|e| e.description)
                })
            };
            let (priority, weight) = (num("priority")?, num("weight")?);
            api.store
                .add_destination(trunk, &uri, priority, weight)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        results.push(match one {
            Ok(row) => json!({ "status": "success", "code": 200, "data": row }),
            Err(why) => {
                failed += 1;
                json!({ "status": "failure", "code": 400, "error_data": { "code": 1002, "message": "Invalid parameter", "description": format!("destinations[{i}]: {why}") } })
            }
        });
    }
    let status = match failed {
        0 => StatusCode::OK,
        n if n == items.len() => {
            return Err(ApiError::invalid("destinations", &results_text(&results)));
        }
        _ => StatusCode::MULTI_STATUS,
    };
    Ok((status, Value::Array(results)))
}

fn results_text(results: &[Value]) -> String {
    results
        .iter()
        .filter_map(|r| r["error_data"]["description"].as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

fn settings_of(row: &TrunkRow) -> Value {
    let allowed: Vec<&str> = row
        .allowed_destinations
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|p| !p.is_empty())
        .collect();
    json!([
        { "name": "trunk_external_alias", "value": row.trunk_external_alias },
        { "name": "max_channels", "value": row.max_channels },
        { "name": "max_cps", "value": row.max_cps },
        { "name": "allowed_destinations", "value": allowed },
        { "name": "max_call_duration", "value": row.max_call_duration },
        { "name": "allow_md5", "value": row.allow_md5 == Some(1) },
        { "name": "srtp", "value": row.srtp.as_deref().unwrap_or("tls") },
        { "name": "codecs", "value": codecs_of(row) },
    ])
}

/// The codecs a trunk takes (empty: those callflow carries).
fn codecs_of(row: &TrunkRow) -> Vec<String> {
    row.codecs
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

/// The settings a trunk takes.
const SETTINGS: &str = "trunk_external_alias, max_channels, max_cps, allowed_destinations, max_call_duration, allow_md5, srtp, codecs";

async fn settings(
    api: &Api,
    row: &TrunkRow,
    body: &Fields,
) -> Result<(StatusCode, Value), ApiError> {
    let Some(Value::Array(items)) = body.get("settings") else {
        return Err(ApiError::missing("settings"));
    };
    let mut set = TrunkSettings::default();
    for item in items {
        let name = item
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::missing("settings[].name"))?;
        let value = item
            .get("value")
            .ok_or_else(|| ApiError::missing("settings[].value"))?;
        match name {
            "trunk_external_alias" => {
                let v = value.as_str().filter(|v| is_e164(v));
                set.alias = Some(
                    v.ok_or_else(|| {
                        ApiError::invalid("trunk_external_alias", "must be an E.164 number")
                    })?
                    .to_string(),
                );
            }
            "max_channels" => {
                set.max_channels = Some(int_field(value, "max_channels", 1..=1_000_000)?)
            }
            "max_cps" => set.max_cps = Some(int_field(value, "max_cps", 1..=100_000)?),
            "allowed_destinations" => set.allowed_destinations = Some(prefixes(value)?),
            "max_call_duration" => {
                set.max_call_duration = Some(int_field(value, "max_call_duration", 1..=86_400)?)
            }
            "allow_md5" => {
                let v = value
                    .as_bool()
                    .ok_or_else(|| ApiError::invalid("allow_md5", "must be true or false"))?;
                set.allow_md5 = Some(i64::from(v));
            }
            "srtp" => match value.as_str() {
                Some(v @ ("tls" | "required")) => set.srtp = Some(v.to_string()),
                _ => return Err(ApiError::invalid("srtp", "must be \"tls\" or \"required\"")),
            },
            "codecs" => set.codecs = Some(codecs(value)?),
            other => {
                return Err(ApiError::invalid(
                    "settings[].name",
                    &format!("'{other}' is not a setting ({SETTINGS})"),
                ));
            }
        }
    }
    api.store.set_trunk_settings(&row.trunk_sid, &set).await?;
    let row = api.store.trunk(&row.account_sid, &row.trunk_sid).await?;
    Ok((StatusCode::OK, row.map_or(Value::Null, |r| settings_of(&r))))
}

/// `codecs`: a list of PCMA and PCMU, stored comma-separated; empty: both.
fn codecs(value: &Value) -> Result<String, ApiError> {
    let bad = || ApiError::invalid("codecs", "must be a list of \"PCMA\" and \"PCMU\"");
    let mut out = Vec::new();
    for c in value.as_array().ok_or_else(bad)? {
        match c.as_str().map(str::to_ascii_uppercase).as_deref() {
            Some(name @ ("PCMA" | "PCMU")) => out.push(name.to_string()),
            _ => return Err(bad()),
        }
    }
    Ok(out.join(","))
}

/// `allowed_destinations`: a list of E.164 prefixes (`+`, then 1 to 15 digits),
/// stored comma-separated; an empty list allows any destination.
fn prefixes(value: &Value) -> Result<String, ApiError> {
    let bad = || {
        ApiError::invalid(
            "allowed_destinations",
            "must be a list of E.164 prefixes such as \"+91\"",
        )
    };
    let list = value.as_array().ok_or_else(bad)?;
    let mut out = Vec::new();
    for p in list {
        let p = p.as_str().ok_or_else(bad)?;
        if !crate::lang::number::is_e164_prefix(p) {
            return Err(bad());
        }
        out.push(p);
    }
    Ok(out.join(","))
}

async fn add_credential(
    api: &Api,
    trunk: &str,
    body: &Fields,
) -> Result<(StatusCode, Value), ApiError> {
    let user = required(body, "user_name")?;
    let password = required(body, "password")?;
    let friendly = str_field(body, "friendly_name")?;
    plain("user_name", user, 64)?;
    plain("friendly_name", friendly.unwrap_or(""), 64)?;
    if user.contains([':', '"', '\\']) {
        return Err(ApiError::invalid(
            "user_name",
            "may not hold ':', '\"' or '\\'",
        ));
    }
    let secret = DigestSecret::from_password(user, &api.live.realm(), password);
    let row = api
        .store
        .add_credential(trunk, user, friendly, &secret.ha1_md5, &secret.ha1_sha256)
        .await?;
    Ok((StatusCode::OK, json!(row)))
}

/// A stored trunk as routing takes it; `own_flow` says whether a routing id names
/// one of the stored flows (a number's flow is the account's own when it has one by
/// that id, else the file's).
pub fn routing_spec(t: &StoredTrunk, own_flow: &dyn Fn(&str) -> bool) -> crate::routing::TrunkSpec {
    use crate::config::NumberMode;
    use crate::routing::{NumberSpec, Trunk, TrunkSpec};
    let destinations = t
        .destinations
        .iter()
        .filter_map(|d| {
            let uri = parse_sip_uri(&d.destination).ok()?;
            let p = u16::try_from(d.priority).unwrap_or(u16::MAX);
            Some((p, u16::try_from(d.weight).unwrap_or(0), uri))
        })
        .collect();
    let whitelisted = t
        .ips
        .iter()
        .filter_map(|i| {
            let ip: IpAddr = i.ip.parse().ok()?;
            ipnet::IpNet::new(ip, u8::try_from(i.mask).ok()?).ok()
        })
        .collect();
    let credentials = t
        .credentials
        .iter()
        .map(|c| DigestSecret {
            username: c.user_name.clone(),
            ha1_md5: c.ha1_md5.clone(),
            ha1_sha256: c.ha1_sha256.clone(),
        })
        .collect();
    let limit = |v: Option<i64>| v.and_then(|n| u32::try_from(n).ok());
    TrunkSpec {
        trunk: Trunk {
            sid: t.trunk.trunk_sid.clone(),
            destinations,
            whitelisted,
            external_alias: t.trunk.trunk_external_alias.clone(),
            max_channels: limit(t.trunk.max_channels),
            max_cps: limit(t.trunk.max_cps),
            credentials,
            account: Some(t.trunk.account_sid.clone()),
            allowed_destinations: t
                .trunk
                .allowed_destinations
                .as_deref()
                .unwrap_or("")
                .split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
            max_call_duration: t
                .trunk
                .max_call_duration
                .and_then(|s| u64::try_from(s).ok())
                .map_or(
                    crate::routing::DEFAULT_MAX_CALL_DURATION,
                    std::time::Duration::from_secs,
                ),
            allow_md5: t.trunk.allow_md5 == Some(1),
            media: crate::runtime::LegMedia {
                srtp_required: t.trunk.srtp.as_deref() == Some("required"),
                plain: false,
                codecs: codecs_of(&t.trunk),
            },
        },
        numbers: t
            .numbers
            .iter()
            .map(|n| NumberSpec {
                number: n.phone_number.clone(),
                mode: if n.mode == "pstn" {
                    NumberMode::Pstn
                } else {
                    NumberMode::Flow
                },
                flow: n.flow_id.as_ref().map(|f| {
                    let own = crate::store::flows::routing_id(&t.trunk.account_sid, f);
                    if own_flow(&own) { own } else { f.clone() }
                }),
            })
            .collect(),
        from_file: false,
    }
}
