//! The engine with its HTTP API, as the API tests drive it: a node on a store,
//! accounts, trunks with numbers and destinations, flows, and the v1 calls API.

use std::net::SocketAddr;

use callflow::server::Server;
use callflow::sip::{Name, Transport};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::Ua;
use super::partner::partner;

pub const ADMIN: &str = "admin-secret-for-tests";

/// A flow that asks the partner's dynamic URL whom to dial.
pub const FLOW: &str = "flow: f\nstart: c\napplets:\n  c:\n    connect: { dynamic_url: WEBHOOK/route }\n    next: bye\n  bye:\n    hangup: {}\n";

/// The engine with the API on (accounts' flows may call the loopback partner), a
/// store at `store`, the PSTN's carrier at `carrier`
/// (on 127.0.0.2, whose INVITEs are inbound calls), and no trunk in the file.
pub fn config(store: &str, carrier: SocketAddr) -> String {
    format!(
        "sip: {{ listen: [\"udp://127.0.0.1:0\", \"tcp://127.0.0.1:0\"], options_interval: null }}\napi: {{ listen: \"127.0.0.1:0\", admin_token: {ADMIN} }}\nstore: \"{store}\"\nflows: flows\nwebhooks: {{ allow_private: true }}\ncarriers:\n  - {{ name: pstn, uri: \"sip:{carrier}\", addresses: [127.0.0.2/32] }}\n"
    )
}

/// Where no carrier listens.
pub fn nowhere() -> SocketAddr {
    "127.0.0.2:9".parse().unwrap()
}

/// A running engine and what a test needs to talk to it.
pub struct Node {
    pub server: Server,
    pub http: reqwest::Client,
    pub base: String,
    _dir: tempfile::TempDir,
}

pub async fn start(config_text: &str, partner_addr: SocketAddr) -> Node {
    let flow = FLOW.replace("WEBHOOK", &format!("http://{partner_addr}"));
    let (server, dir) = super::serve(config_text, &[("f", &flow)]).await;
    let base = format!("http://{}", server.api_addr.expect("API on"));
    Node {
        server,
        http: reqwest::Client::new(),
        base,
        _dir: dir,
    }
}

/// An account's credentials.
#[derive(Clone)]
pub struct Account {
    pub sid: String,
    pub key: String,
    pub token: String,
}

impl Node {
    pub fn sip(&self) -> SocketAddr {
        self.server.transports.local_addr(Transport::Udp).unwrap()
    }

    pub async fn account(&self, name: &str) -> Account {
        let r = self
            .http
            .post(format!("{}/v2/accounts", self.base))
            .bearer_auth(ADMIN)
            .json(&json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        let d = &v["response"]["data"];
        Account {
            sid: d["account_sid"].as_str().unwrap().into(),
            key: d["api_key"].as_str().unwrap().into(),
            token: d["api_token"].as_str().unwrap().into(),
        }
    }

    /// `method` on `path` under the account, with a JSON body; status and envelope.
    pub async fn call(
        &self,
        a: &Account,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = format!("{}/v2/accounts/{}{path}", self.base, a.sid);
        let mut req = self
            .http
            .request(method.parse().unwrap(), url)
            .basic_auth(&a.key, Some(&a.token));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap())
    }
}

/// A node on a fresh SQLite store with one account.
pub async fn sqlite_node() -> (Node, Account, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("c.db").display());
    let (node, acct) = node_on(&store).await;
    (node, acct, dir)
}

/// A node on `store` with one new account.
pub async fn node_on(store: &str) -> (Node, Account) {
    let (_, addr) = partner().await;
    let node = start(&config(store, nowhere()), addr).await;
    let acct = node.account("one").await;
    (node, acct)
}

/// The PostgreSQL database the tests may use: `CALLFLOW_TEST_POSTGRES`, which CI
/// must set.
pub fn postgres() -> Option<String> {
    match std::env::var("CALLFLOW_TEST_POSTGRES") {
        Ok(url) => Some(url),
        Err(_) => {
            assert!(
                std::env::var("CI").is_err(),
                "CI must set CALLFLOW_TEST_POSTGRES (.ci/run starts PostgreSQL)"
            );
            eprintln!("CALLFLOW_TEST_POSTGRES is not set: the PostgreSQL run is skipped here");
            None
        }
    }
}

/// A temporary SQLite store's URL (keep the directory).
pub fn sqlite_store() -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (
        format!("sqlite://{}", dir.path().join("c.db").display()),
        dir,
    )
}

/// A number no other test (or earlier run on the same database) uses.
pub fn fresh_number() -> String {
    format!("+9170{:09}", rand::random::<u32>() % 1_000_000_000)
}

/// PUTs `yaml` as flow `id` of account `a`.
pub async fn put_flow(node: &Node, a: &Account, id: &str, yaml: &str) -> (StatusCode, Value) {
    let url = format!("{}/v2/accounts/{}/flows/{id}", node.base, a.sid);
    let r = node
        .http
        .put(url)
        .basic_auth(&a.key, Some(&a.token))
        .header("content-type", "application/yaml")
        .body(yaml.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap())
}

/// Creates trunk `name` of account `a` with pstn number `number` and the TCP
/// destination `dest`; its sid.
pub async fn pstn_trunk(
    node: &Node,
    a: &Account,
    name: &str,
    number: &str,
    dest: SocketAddr,
) -> String {
    let (_, v) = node
        .call(a, "POST", "/trunks", Some(json!({ "trunk_name": name })))
        .await;
    let t = v["response"]["data"]["trunk_sid"]
        .as_str()
        .unwrap()
        .to_string();
    let number = json!({ "phone_number": number, "mode": "pstn" });
    let (s, _) = node
        .call(
            a,
            "POST",
            &format!("/trunks/{t}/phone-numbers"),
            Some(number),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let dest = json!({ "destinations": [{ "destination": format!("{dest};transport=tcp") }] });
    let (s, _) = node
        .call(
            a,
            "POST",
            &format!("/trunks/{t}/destination-uris"),
            Some(dest),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    t
}

/// GETs `path` under `/v1/Accounts/{sid}` as account `a`.
pub async fn v1(node: &Node, a: &Account, path: &str) -> (StatusCode, Value) {
    let r = node
        .http
        .get(format!("{}/v1/Accounts/{}{path}", node.base, a.sid))
        .basic_auth(&a.key, Some(&a.token))
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap())
}

/// A call from the PSTN (127.0.0.2) to `did`, answered by `bot` and bridged: the
/// caller, the call's sid and the caller's 200.
pub async fn bridged_call(
    node: &Node,
    did: &str,
    bot: &mut Ua,
    id: &str,
) -> (Ua, String, callflow::sip::Message) {
    let mut caller = Ua::new_at(Transport::Udp, "caller", None, "127.0.0.2").await;
    caller
        .send(
            &caller.invite(&format!("sip:{did}@{}", node.sip()), id),
            node.sip(),
        )
        .await;
    let (inv, from) = bot.expect_request("INVITE").await;
    let sid = inv
        .header(&Name::parse("X-Callflow-CallSid"))
        .unwrap()
        .to_string();
    bot.send(
        &bot.response(&inv, 200, "b1", Some(&super::answer(41000))),
        from,
    )
    .await;
    let ok = caller.expect_final("INVITE").await;
    assert_eq!(ok.status(), Some(200));
    let ack = caller.in_dialog("ACK", &ok, true, "", 1, "ack");
    caller.send(&ack, Ua::contact_addr(&ok)).await;
    bot.expect_request("ACK").await;
    (caller, sid, ok)
}

/// POSTs a form to `path` under `/v1/Accounts/{sid}` as account `a`.
pub async fn v1_post(
    node: &Node,
    a: &Account,
    path: &str,
    form: &[(&str, &str)],
) -> (StatusCode, Value) {
    let r = node
        .http
        .post(format!("{}/v1/Accounts/{}{path}", node.base, a.sid))
        .basic_auth(&a.key, Some(&a.token))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap())
}

/// Call `sid`'s stored record (its fields and `Trace`), once the call has ended and
/// its record is written (a call still in progress answers with its live fields).
pub async fn stored_call(node: &Node, a: &Account, sid: &str) -> Value {
    for _ in 0..100 {
        let (s, v) = v1(node, a, &format!("/Calls/{sid}")).await;
        if s == StatusCode::OK && v["Call"]["Trace"]["steps"].is_array() {
            return v["Call"].clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("call {sid} was never stored");
}

/// Polls call `sid` until `check` holds on its fields; the fields.
pub async fn until_call(
    node: &Node,
    a: &Account,
    sid: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    for _ in 0..100 {
        let (s, v) = v1(node, a, &format!("/Calls/{sid}.json")).await;
        if s == StatusCode::OK && check(&v["Call"]) {
            return v["Call"].clone();
        }
        last = v;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("call {sid} never got there: {last}");
}
