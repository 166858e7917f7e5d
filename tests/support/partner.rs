//! The partner's side of HTTP: a local webhook server that answers each path as a
//! test says (status, body, delay), records what it was asked, and keeps what was
//! POSTed to it (status callbacks).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;

/// Requests the partner got: path and query.
pub type Asked = Arc<Mutex<Vec<(String, HashMap<String, String>)>>>;

/// What the partner's webhook answers, per path, and what it was asked.
#[derive(Clone, Default)]
pub struct Partner {
    pub answers: Arc<Mutex<HashMap<String, (u16, String)>>>,
    pub asked: Asked,
    pub delays: Arc<Mutex<HashMap<String, u64>>>,
    pub posted: Arc<Mutex<Vec<serde_json::Value>>>,
    /// What the next POSTs answer, in order (then 200).
    pub post_statuses: Arc<Mutex<std::collections::VecDeque<u16>>>,
}

impl Partner {
    pub fn answer(&self, path: &str, status: u16, body: &str) {
        self.answers
            .lock()
            .unwrap()
            .insert(path.into(), (status, body.into()));
    }

    pub fn delay(&self, path: &str, ms: u64) {
        self.delays.lock().unwrap().insert(path.into(), ms);
    }

    pub fn asked(&self, path: &str) -> Vec<HashMap<String, String>> {
        self.asked
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, q)| q.clone())
            .collect()
    }
}

async fn webhook(
    State(p): State<Partner>,
    axum::extract::Path(path): axum::extract::Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> (StatusCode, String) {
    p.asked.lock().unwrap().push((path.clone(), q));
    let delay = p.delays.lock().unwrap().get(&path).copied();
    if let Some(ms) = delay {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    let (status, body) = p
        .answers
        .lock()
        .unwrap()
        .get(&path)
        .cloned()
        .unwrap_or((404, String::new()));
    (StatusCode::from_u16(status).unwrap(), body)
}

/// Keeps a POST's body: JSON as it is, a multipart form as an object of its fields
/// (with `"_multipart": true`).
async fn posted(
    State(p): State<Partner>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let v = match ct.split_once("boundary=") {
        Some((_, boundary)) => multipart(&String::from_utf8_lossy(&body), boundary),
        None => serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    };
    p.posted.lock().unwrap().push(v);
    let status = p.post_statuses.lock().unwrap().pop_front().unwrap_or(200);
    StatusCode::from_u16(status).unwrap()
}

pub async fn partner() -> (Partner, SocketAddr) {
    let p = Partner::default();
    let app = axum::Router::new()
        .route("/{path}", get(webhook).post(posted))
        .with_state(p.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (p, addr)
}

/// The fields of a `multipart/form-data` body.
fn multipart(body: &str, boundary: &str) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    out.insert("_multipart".into(), true.into());
    for part in body.split(&format!("--{boundary}")) {
        let Some((head, value)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let Some(name) = head
            .split("name=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
        else {
            continue;
        };
        let value = value.strip_suffix("\r\n").unwrap_or(value);
        out.insert(name.to_string(), value.into());
    }
    out.into()
}
