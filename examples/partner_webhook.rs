//! A small partner service for the demo (README, "Your first call"): it answers
//! callflow's dynamic-URL and passthru requests and prints the status callback.
//!
//! ```sh
//! cargo run --example partner_webhook            # listens on 127.0.0.1:8090
//! partner_webhook 127.0.0.1:8091 --quiet           # another address, prints nothing
//! ```
//!
//! It runs on one thread, as a small service would: the load examples start it on
//! the machine they measure, quiet, and a heavier stand-in for a partner that would
//! run elsewhere takes the CPU from the engine they measure.
//!
//! - `GET /handoff` (passthru): 200 `{"select":"sales"}`, so the caller goes to an agent.
//! - `GET /route` (dynamic URL): 200 with the demo bot's trunk and two custom params.
//! - `POST /status` (status callback): prints the call's summary.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::extract::Query;
use axum::routing::{get, post};

/// Set by `--quiet`: the service prints nothing.
static QUIET: AtomicBool = AtomicBool::new(false);

/// `println!` unless the service is quiet.
macro_rules! say {
    ($($arg:tt)*) => {
        if !QUIET.load(Ordering::Relaxed) {
            println!($($arg)*);
        }
    };
}

async fn handoff(Query(q): Query<HashMap<String, String>>) -> Json<serde_json::Value> {
    say!(
        "partner: passthru for call {} from {} (applet {}, bot leg {})",
        q.get("CallSid").map_or("?", String::as_str),
        q.get("From").map_or("?", String::as_str),
        q.get("applet").map_or("?", String::as_str),
        q.get("DialCallStatus").map_or("?", String::as_str),
    );
    say!("partner: answering 200 {{\"select\":\"sales\"}}");
    Json(serde_json::json!({ "select": "sales" }))
}

async fn route(Query(q): Query<HashMap<String, String>>) -> Json<serde_json::Value> {
    say!(
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
    say!(
        "partner: status callback:\n{}",
        serde_json::to_string_pretty(&body).unwrap_or_default()
    );
    "ok"
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    QUIET.store(args.iter().any(|a| a == "--quiet"), Ordering::Relaxed);
    let addr = args
        .into_iter()
        .find(|a| a != "--quiet")
        .unwrap_or_else(|| "127.0.0.1:8090".into());
    let app = axum::Router::new()
        .route("/handoff", get(handoff))
        .route("/route", get(route))
        .route("/status", post(status));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    say!("partner: listening on http://{addr}");
    axum::serve(listener, app).await?;
    Ok(())
}
