//! The API's routes as data: each endpoint's method, path, summary, authentication
//! and body, next to the handler that serves it. The router is built from this table
//! and `/openapi.json` is generated from it, so the document cannot drift from what
//! the API serves.

use std::collections::BTreeMap;

use axum::Router;
use axum::routing::MethodRouter;
use serde_json::{Map, Value, json};

use super::Api;

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Anyone.
    Open,
    /// The account in the path, with HTTP Basic `api_key:api_token`.
    Account,
    /// The operator, with `Authorization: Bearer <admin token>`.
    Admin,
}

/// What a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// Nothing.
    Empty,
    /// A JSON object with these fields: (name, JSON type, required).
    Json(&'static [(&'static str, &'static str, bool)]),
    /// A flow file's YAML.
    Yaml,
    /// A form (`application/x-www-form-urlencoded`) with these fields.
    Form(&'static [(&'static str, &'static str, bool)]),
}

/// One endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    /// `get`, `post`, `put`, `delete`.
    pub method: &'static str,
    /// The path, with `{param}`s.
    pub path: &'static str,
    /// What it does.
    pub summary: &'static str,
    /// Who may call it.
    pub auth: Auth,
    /// What it takes.
    pub body: Body,
}

/// An endpoint and its handler.
pub type Route = (Endpoint, MethodRouter<Api>);

/// The router serving `routes` (one method router per path, merged).
pub fn router(routes: Vec<Route>) -> Router<Api> {
    let mut by_path: BTreeMap<&'static str, MethodRouter<Api>> = BTreeMap::new();
    for (e, handler) in routes {
        let merged = match by_path.remove(e.path) {
            Some(existing) => existing.merge(handler),
            None => handler,
        };
        by_path.insert(e.path, merged);
    }
    by_path
        .into_iter()
        .fold(Router::new(), |r, (path, m)| r.route(path, m))
}

/// The OpenAPI 3.1 document of `endpoints`.
pub fn openapi(endpoints: &[Endpoint]) -> Value {
    let mut paths: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for e in endpoints {
        paths
            .entry(e.path)
            .or_default()
            .insert(e.method.to_string(), operation(e));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "callflow API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Management of accounts, trunks, numbers, flows and carriers. Every answer is JSON in the envelope {request_id, method, http_code, response: {code, error_data, status, data}}.",
        },
        "components": {
            "securitySchemes": {
                "account": { "type": "http", "scheme": "basic" },
                "admin": { "type": "http", "scheme": "bearer" },
            },
            "schemas": { "Envelope": envelope_schema() },
        },
        "paths": paths,
    })
}

fn operation(e: &Endpoint) -> Value {
    let params: Vec<Value> = e
        .path
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|p| json!({ "name": p, "in": "path", "required": true, "schema": { "type": "string" } }))
        .collect();
    let mut op = json!({
        "summary": e.summary,
        "parameters": params,
        "responses": {
            "default": {
                "description": "The envelope; response.data on success, response.error_data on failure",
                "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Envelope" } } },
            }
        },
    });
    match e.auth {
        Auth::Open => {}
        Auth::Account => op["security"] = json!([{ "account": [] }]),
        Auth::Admin => op["security"] = json!([{ "admin": [] }]),
    }
    match e.body {
        Body::Empty => {}
        Body::Yaml => {
            op["requestBody"] = json!({ "required": true, "content": { "application/yaml": { "schema": { "type": "string" } } } });
        }
        Body::Json(fields) => op["requestBody"] = fields_body("application/json", fields),
        Body::Form(fields) => {
            op["requestBody"] = fields_body("application/x-www-form-urlencoded", fields)
        }
    }
    op
}

/// A request body of `fields` in `media`.
fn fields_body(media: &str, fields: &[(&str, &str, bool)]) -> Value {
    let props: Map<String, Value> = fields
        .iter()
        .map(|(n, t, _)| (n.to_string(), json!({ "type": t })))
        .collect();
    let required: Vec<&str> = fields.iter().filter(|f| f.2).map(|f| f.0).collect();
    json!({ "required": true, "content": { media: { "schema": { "type": "object", "properties": props, "required": required } } } })
}

fn envelope_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "request_id": { "type": "string" },
            "method": { "type": "string" },
            "http_code": { "type": "integer" },
            "response": {
                "type": "object",
                "properties": {
                    "code": { "type": "integer" },
                    "status": { "type": "string", "enum": ["success", "failure"] },
                    "data": {},
                    "error_data": {
                        "type": ["object", "null"],
                        "properties": {
                            "code": { "type": "integer" },
                            "message": { "type": "string" },
                            "description": { "type": "string" },
                        },
                    },
                },
            },
        },
    })
}
