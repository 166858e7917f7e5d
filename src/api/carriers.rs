//! `/v2/carriers`: the operator's carriers (name, uri, addresses, priority,
//! max_channels), under the admin token. The file's carriers are listed with
//! `"source": "file"`; changing one over HTTP answers 409.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::routing::{delete, get, post};
use serde_json::{Value, json};

use super::spec::{Auth, Body, Endpoint, Route};
use super::{Api, ApiError, as_admin, json_body};
use crate::config::{parse_cidr, parse_sip_uri};
use crate::routing::Carrier;
use crate::store::carriers::CarrierRow;

/// The carrier endpoints and their handlers.
pub fn routes() -> Vec<Route> {
    let ep = |method, path, summary, body| Endpoint {
        method,
        path,
        summary,
        auth: Auth::Admin,
        body,
    };
    let fields: &'static [(&str, &str, bool)] = &[
        ("name", "string", true),
        ("uri", "string", true),
        ("addresses", "array", false),
        ("priority", "integer", false),
        ("max_channels", "integer", false),
    ];
    vec![
        (
            ep(
                "get",
                "/v2/carriers",
                "List carriers (the file's and the API's)",
                Body::Empty,
            ),
            get(list),
        ),
        (
            ep("post", "/v2/carriers", "Add a carrier", Body::Json(fields)),
            post(create),
        ),
        (
            ep(
                "delete",
                "/v2/carriers/{name}",
                "Remove a carrier added over the API",
                Body::Empty,
            ),
            delete(remove),
        ),
    ]
}

/// A stored carrier as routing takes it (one that no longer parses is left out).
pub fn routing_carrier(c: &CarrierRow) -> Option<Carrier> {
    Some(Carrier {
        name: c.name.clone(),
        uri: parse_sip_uri(&c.uri).ok()?,
        addresses: c
            .addresses
            .iter()
            .filter_map(|a| parse_cidr(a).ok())
            .collect(),
        priority: u32::try_from(c.priority).ok()?,
        max_channels: c.max_channels.and_then(|m| u32::try_from(m).ok()),
    })
}

async fn list(State(api): State<Api>, method: Method, headers: HeaderMap) -> Response {
    as_admin(&api, &method, &headers, || async {
        let mut all = api.live.file_carriers();
        for c in api.store.carriers().await? {
            let mut v = json!(c);
            v["source"] = json!("api");
            all.push(v);
        }
        Ok((StatusCode::OK, json!({ "carriers": all })))
    })
    .await
}

/// A carrier from the request body, checked.
fn carrier(body: &serde_json::Map<String, Value>) -> Result<CarrierRow, ApiError> {
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::missing("name"))?;
    if name.len() > 32
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
    {
        return Err(ApiError::invalid(
            "name",
            "must be at most 32 letters, digits, '-' or '_'",
        ));
    }
    let uri = body
        .get("uri")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::missing("uri"))?;
    parse_sip_uri(uri).map_err(|e| ApiError::invalid("uri", &e))?;
    let addresses = match body.get("addresses") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                let s = v.as_str().unwrap_or("");
                parse_cidr(s)
                    .map(|n| n.to_string())
                    .map_err(|e| ApiError::invalid("addresses", &e))
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
        Some(_) => {
            return Err(ApiError::invalid(
                "addresses",
                "must be a list of addresses or CIDR blocks",
            ));
        }
    };
    let int = |k: &str| -> Result<Option<i64>, ApiError> {
        match body.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .filter(|n| (0..=1_000_000).contains(n))
                .map(Some)
                .ok_or_else(|| ApiError::invalid(k, "must be an integer from 0 to 1000000")),
        }
    };
    Ok(CarrierRow {
        name: name.to_string(),
        uri: uri.to_string(),
        addresses,
        priority: int("priority")?.unwrap_or(0),
        max_channels: int("max_channels")?,
    })
}

async fn create(
    State(api): State<Api>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    as_admin(&api, &method, &headers, || async {
        let c = carrier(&json_body(&headers, &body)?)?;
        if api.live.file_carrier(&c.name) {
            return Err(ApiError::from_file(&format!("carrier {}", c.name)));
        }
        api.store.add_carrier(&c).await?;
        api.changed().await;
        Ok((StatusCode::OK, json!(c)))
    })
    .await
}

async fn remove(
    State(api): State<Api>,
    method: Method,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    as_admin(&api, &method, &headers, || async {
        if api.live.file_carrier(&name) {
            return Err(ApiError::from_file(&format!("carrier {name}")));
        }
        if !api.store.delete_carrier(&name).await? {
            return Err(ApiError::not_found(&format!("carrier {name}")));
        }
        api.changed().await;
        Ok((StatusCode::OK, json!({ "name": name, "deleted": true })))
    })
    .await
}
