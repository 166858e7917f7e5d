//! `/v2/accounts/{account_sid}/flows/{flow_id}`: an account's flows over HTTP. PUT
//! with the YAML as body compiles it; errors answer 422 with the same diagnostics as
//! `callflow check` (line, column, message) and change nothing; each good PUT is a new
//! version, and calls in progress keep the version they started with. DELETE answers
//! 409 while a number of the account points at the flow.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use serde_json::{Value, json};

use super::envelope::envelope;
use super::spec::{Auth, Body, Endpoint, Route};
use super::{Api, ApiError, answer, as_account, as_admin};
use crate::flow::{Severity, compile_str};
use crate::lang::diagnostic::Diagnostic;

const FLOW: &str = "/v2/accounts/{account}/flows/{flow}";

/// The flow endpoints and their handlers.
pub fn routes() -> Vec<Route> {
    let ep = |method, path, summary, body| Endpoint {
        method,
        path,
        summary,
        auth: Auth::Account,
        body,
    };
    vec![
        (
            ep(
                "get",
                "/v2/accounts/{account}/flows",
                "List the account's flows and their versions",
                Body::Empty,
            ),
            get(list),
        ),
        (
            ep(
                "get",
                FLOW,
                "Get a flow's latest YAML and version",
                Body::Empty,
            ),
            get(one),
        ),
        (
            ep(
                "put",
                FLOW,
                "Upload a new version of a flow (422 with diagnostics when it does not compile)",
                Body::Yaml,
            ),
            put(put_flow),
        ),
        (
            ep(
                "delete",
                FLOW,
                "Delete a flow (409 while a number points at it)",
                Body::Empty,
            ),
            delete(remove),
        ),
        (
            Endpoint {
                auth: Auth::Admin,
                ..ep(
                    "get",
                    "/v2/flows",
                    "Every flow: the flows directory's (source file) and the accounts' (source api)",
                    Body::Empty,
                )
            },
            get(all_flows),
        ),
    ]
}

/// A diagnostic as JSON.
fn diagnostic(d: &Diagnostic) -> Value {
    json!({
        "line": d.pos.line,
        "column": d.pos.col,
        "severity": if d.severity == Severity::Error { "error" } else { "warning" },
        "message": d.message,
    })
}

/// Whether `id` is a flow id (`[a-z0-9_-]+`, at most 64).
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

async fn put_flow(
    State(api): State<Api>,
    method: Method,
    headers: HeaderMap,
    Path((account, flow)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if let Err(e) = api.account(&headers, &account).await {
        return answer(&method, Err(e));
    }
    if !valid_id(&flow) {
        let e = ApiError::invalid("flow_id", "must be 1 to 64 of a-z, 0-9, '_' and '-'");
        return answer(&method, Err(e));
    }
    let Ok(yaml) = std::str::from_utf8(&body) else {
        return answer(
            &method,
            Err(ApiError::bad_body("the flow must be UTF-8 YAML")),
        );
    };
    let compiled = compile_str(
        format!("{flow}.yaml").into(),
        yaml,
        &api.live.compile_options(),
    );
    let diagnostics: Vec<Value> = compiled.diagnostics.iter().map(diagnostic).collect();
    let Some(compiled_flow) = compiled.flow else {
        let e = ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: 1002,
            message: "Invalid flow".into(),
            description: format!(
                "the flow has {} error(s); see data.diagnostics",
                count_errors(&compiled.diagnostics)
            ),
            retry_after: None,
        };
        let data = json!({ "diagnostics": diagnostics });
        return (
            e.status,
            axum::Json(envelope(&method, e.status, data, Some(&e))),
        )
            .into_response();
    };
    if compiled_flow.id != flow {
        let why = format!(
            "says 'flow: {}' but the path names '{flow}'",
            compiled_flow.id
        );
        return answer(&method, Err(ApiError::invalid("flow", &why)));
    }
    let result = async {
        let version = api.store.put_flow(&account, &flow, yaml).await?;
        api.changed().await;
        Ok((
            StatusCode::OK,
            json!({ "flow_id": flow, "version": version, "diagnostics": diagnostics }),
        ))
    }
    .await;
    answer(&method, result)
}

fn count_errors(d: &[Diagnostic]) -> usize {
    d.iter().filter(|d| d.severity == Severity::Error).count()
}

async fn one(
    State(api): State<Api>,
    method: Method,
    headers: HeaderMap,
    Path((account, flow)): Path<(String, String)>,
) -> Response {
    as_account(&api, &method, &headers, &account, || async {
        let f = api
            .store
            .flow(&account, &flow)
            .await?
            .ok_or_else(|| ApiError::not_found(&format!("flow {flow}")))?;
        Ok((
            StatusCode::OK,
            json!({ "flow_id": f.flow_id, "version": f.version, "yaml": f.yaml }),
        ))
    })
    .await
}

async fn list(
    State(api): State<Api>,
    method: Method,
    headers: HeaderMap,
    Path(account): Path<String>,
) -> Response {
    as_account(&api, &method, &headers, &account, || async {
        let flows: Vec<Value> = api
            .store
            .flows(Some(&account))
            .await?
            .into_iter()
            .map(|f| json!({ "flow_id": f.flow_id, "version": f.version }))
            .collect();
        Ok((StatusCode::OK, json!({ "flows": flows })))
    })
    .await
}

/// `GET /v2/flows`, the operator's view of every flow.
async fn all_flows(State(api): State<Api>, method: Method, headers: HeaderMap) -> Response {
    as_admin(&api, &method, &headers, || async {
        let mut all = api.live.file_flows();
        for f in api.store.flows(None).await? {
            all.push(json!({ "flow_id": f.flow_id, "account_sid": f.account_sid, "version": f.version, "source": "api" }));
        }
        Ok((StatusCode::OK, json!({ "flows": all })))
    })
    .await
}

async fn remove(
    State(api): State<Api>,
    method: Method,
    headers: HeaderMap,
    Path((account, flow)): Path<(String, String)>,
) -> Response {
    as_account(&api, &method, &headers, &account, || async {
        if api.store.flow(&account, &flow).await?.is_none() {
            return Err(ApiError::not_found(&format!("flow {flow}")));
        }
        if api.store.flow_in_use(&account, &flow).await? {
            return Err(ApiError {
                status: StatusCode::CONFLICT,
                code: 1008,
                message: "Flow in use".into(),
                description: format!(
                    "a phone number points at flow {flow}; point it elsewhere first"
                ),
                retry_after: None,
            });
        }
        api.store.delete_flow(&account, &flow).await?;
        api.changed().await;
        Ok((StatusCode::OK, json!({ "flow_id": flow, "deleted": true })))
    })
    .await
}
