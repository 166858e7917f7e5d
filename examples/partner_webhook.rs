//! A small partner service for the demo (README, "Your first call"): it answers
//! callflow's dynamic-URL and passthru requests and prints the status callback.
//!
//! ```sh
//! cargo run --example partner_webhook            # listens on 127.0.0.1:8090
//! ```
//!
//! - `GET /handoff` (passthru): 200 `{"select":"sales"}`, so the caller goes to an agent.
//! - `GET /route` (dynamic URL): 200 with the demo bot's trunk and two custom params.
//! - `POST /status` (status callback): prints the call's summary.

use std::collections::HashMap;

use axum::Json;
use axum::extract::Query;
use axum::routing::{get, post};

async fn handoff(Query(q): Query<HashMap<String, String>>) -> Json<serde_json::Value> {
    println!(
        "partner: passthru for call {} from {} (applet {}, bot leg {})",
        q.get("CallSid").map_or("?", String::as_str),
        q.get("From").map_or("?", String::as_str),
        q.get("applet").map_or("?", String::as_str),
        q.get("DialCallStatus").map_or("?", String::as_str),
    );
    println!("partner: answering 200 {{\"select\":\"sales\"}}");
    Json(serde_json::json!({ "select": "sales" }))
}

async fn route(Query(q): Query<HashMap<String, String>>) -> Json<serde_json::Value> {
    println!(
        "partner: dynamic URL for call {}, attempt {}",
        q.get("CallSid").map_or("?", String::as_str),
        q.get("Attempt").map_or("?", String::as_str),
    );
    Json(serde_json::json!({
        "destination": { "trunk": "trunk_demo_bot" },
        "custom_params": "lang=en&tier=gold",
    }))
}

async fn status(Json(body): Json<serde_json::Value>) -> &'static str {
    println!(
        "partner: status callback:\n{}",
        serde_json::to_string_pretty(&body).unwrap_or_default()
    );
    "ok"
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".into());
    let app = axum::Router::new()
        .route("/handoff", get(handoff))
        .route("/route", get(route))
        .route("/status", post(status));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("partner: listening on http://{addr}");
    axum::serve(listener, app).await?;
    Ok(())
}
