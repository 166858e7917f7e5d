//! The management API end to end, against the running engine: HTTP requests with
//! reqwest, SIP calls with the test UA, on SQLite and (when CALLFLOW_TEST_POSTGRES names
//! a database, as `.ci/run` does) PostgreSQL.

mod support;

use std::net::SocketAddr;

use callflow::sip::{Name, Transport};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::node::*;
use support::partner::{Partner, partner};
use support::{Ua, digest_answer};

/// The seed's onboarding in order, then calls routed by what it created: an inbound
/// call from the PSTN to the DID (flow mode, dynamic URL naming the trunk, the TCP
/// destination, the alias as Request-URI user) and the partner's outbound call from
/// the whitelisted address. Then a restart: everything is still there.
async fn onboarding_then_calls_then_restart(store: &str) {
    let (partner, partner_addr): (Partner, SocketAddr) = partner().await;
    let mut carrier = Ua::new_at(Transport::Udp, "carrier", None, "127.0.0.2").await;
    let text = config(store, carrier.addr);
    let node = start(&text, partner_addr).await;
    let acct = node.account("acme").await;
    let did = format!("+9180{:08}", rand::random::<u32>() % 100_000_000);
    let alias = format!("+9122{:08}", rand::random::<u32>() % 100_000_000);

    // 1. Create the trunk.
    let (s, v) = node
        .call(&acct, "POST", "/trunks", Some(json!({ "trunk_name": "acme_bot", "nso_code": "ANY-ANY", "domain_name": "acme.example.com" })))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["response"]["status"], "success");
    let trunk = v["response"]["data"]["trunk_sid"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(trunk.starts_with("TK") && trunk.len() == 34);
    // 2. Map the DID in flow mode.
    let (s, v) = node
        .call(
            &acct,
            "POST",
            &format!("/trunks/{trunk}/phone-numbers"),
            Some(json!({ "phone_number": did, "mode": "flow", "flow_id": "f" })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // 3. Whitelist the partner's SBC.
    let (s, v) = node
        .call(
            &acct,
            "POST",
            &format!("/trunks/{trunk}/whitelisted-ips"),
            Some(json!({ "ip": "127.0.0.1", "mask": 32 })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // 4. Add the bot's TCP destination.
    let mut bot = Ua::new(Transport::Tcp, "bot", None).await;
    let dest = format!("{};transport=tcp", bot.addr);
    let (s, v) = node
        .call(
            &acct,
            "POST",
            &format!("/trunks/{trunk}/destination-uris"),
            Some(json!({ "destinations": [{ "destination": dest, "priority": 1, "weight": 10 }] })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // 5. Set the external alias.
    let (s, v) = node
        .call(
            &acct,
            "POST",
            &format!("/trunks/{trunk}/settings"),
            Some(json!({ "settings": [
                { "name": "trunk_external_alias", "value": alias },
                { "name": "srtp", "value": "required" },
                { "name": "codecs", "value": ["pcma"] },
            ] })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    for (name, bad) in [("srtp", json!("always")), ("codecs", json!(["opus"]))] {
        let (s, v) = node
            .call(
                &acct,
                "POST",
                &format!("/trunks/{trunk}/settings"),
                Some(json!({ "settings": [{ "name": name, "value": bad }] })),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{name}: {v}");
    }

    // A call from the PSTN to the DID, without a restart.
    partner.answer(
        "route",
        200,
        &json!({ "destination": { "trunk": trunk } }).to_string(),
    );
    let mut caller = Ua::new_at(Transport::Udp, "caller", None, "127.0.0.2").await;
    let invite = caller.invite(&format!("sip:{did}@{}", node.sip()), "api-in");
    caller.send(&invite, node.sip()).await;
    let (inv, from) = bot.expect_request("INVITE").await;
    assert_eq!(inv.request_uri().unwrap().user(), Some(alias.as_str()));
    assert_eq!(
        inv.header(&Name::parse("X-Callflow-TrunkSid")),
        Some(trunk.as_str())
    );
    // The trunk takes PCMA only: the offer it gets has nothing else but DTMF.
    let offer = String::from_utf8_lossy(&inv.body).to_string();
    assert!(offer.contains("m=audio 40000 RTP/AVP 8 101\r\n"), "{offer}");
    bot.send(&bot.response(&inv, 486, "b1", None), from).await;
    let fin = caller.expect_final("INVITE").await;
    assert!(fin.status().unwrap() >= 400);

    // The partner's outbound call from the whitelisted address reaches the carrier.
    let mut sbc = Ua::new(Transport::Udp, "sbc", None).await;
    let mut out = sbc.invite(&format!("sip:+919999999999@{}", node.sip()), "api-out");
    out.set_header(Name::From, format!("<sip:{did}@{}>;tag=o1", sbc.addr));
    sbc.send(&out, node.sip()).await;
    let (inv, from) = carrier.expect_request("INVITE").await;
    assert_eq!(inv.request_uri().unwrap().user(), Some("+919999999999"));
    assert_eq!(inv.from_header().unwrap().uri.user(), Some(did.as_str()));
    carrier
        .send(&carrier.response(&inv, 486, "c1", None), from)
        .await;
    assert_eq!(sbc.expect_final("INVITE").await.status(), Some(486));

    // A restart: everything the API created is still there and still routes.
    drop(node);
    let node = start(&text, partner_addr).await;
    let (s, v) = node
        .call(
            &acct,
            "GET",
            &format!("/trunks/{trunk}/phone-numbers"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["response"]["data"][0]["phone_number"], did.as_str());
    let (_, v) = node
        .call(&acct, "GET", &format!("/trunks/{trunk}/settings"), None)
        .await;
    assert_eq!(v["response"]["data"][0]["value"], alias.as_str());
    assert_eq!(
        v["response"]["data"][6],
        json!({ "name": "srtp", "value": "required" })
    );
    assert_eq!(
        v["response"]["data"][7],
        json!({ "name": "codecs", "value": ["PCMA"] })
    );
    let invite = caller.invite(&format!("sip:{did}@{}", node.sip()), "api-in2");
    caller.send(&invite, node.sip()).await;
    let (inv, from) = bot.expect_request("INVITE").await;
    assert_eq!(inv.request_uri().unwrap().user(), Some(alias.as_str()));
    bot.send(&bot.response(&inv, 486, "b2", None), from).await;
}

#[tokio::test]
async fn onboarding_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("callflow.db").display());
    onboarding_then_calls_then_restart(&store).await;
}

#[tokio::test]
async fn onboarding_on_postgresql() {
    if let Some(url) = postgres() {
        onboarding_then_calls_then_restart(&url).await;
    }
}

/// Runs the test body `$body` (an async fn taking the store URL) on SQLite and on
/// PostgreSQL.
macro_rules! on_both_stores {
    ($sqlite:ident, $postgres:ident, $body:ident) => {
        #[tokio::test]
        async fn $sqlite() {
            let (store, _dir) = sqlite_store();
            $body(&store).await;
        }

        #[tokio::test]
        async fn $postgres() {
            if let Some(url) = postgres() {
                $body(&url).await;
            }
        }
    };
}

fn code(v: &Value) -> u64 {
    v["response"]["error_data"]["code"].as_u64().unwrap_or(0)
}

on_both_stores!(
    error_codes_on_sqlite,
    error_codes_on_postgresql,
    every_error_code_in_the_envelope
);

async fn every_error_code_in_the_envelope(store: &str) {
    let (node, a) = node_on(store).await;
    let (s, v) = node.call(&a, "GET", "/trunks/TKnothere", None).await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, 1000));
    assert_eq!(v["response"]["status"], "failure");
    let (s, v) = node.call(&a, "POST", "/trunks", Some(json!({}))).await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, 1001));
    let (s, v) = node
        .call(
            &a,
            "POST",
            "/trunks",
            Some(json!({ "trunk_name": "has space" })),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, 1002));
    assert!(
        v["response"]["error_data"]["description"]
            .as_str()
            .unwrap()
            .contains("trunk_name")
    );
    let (_, v) = node
        .call(&a, "POST", "/trunks", Some(json!({ "trunk_name": "t1" })))
        .await;
    let t = v["response"]["data"]["trunk_sid"]
        .as_str()
        .unwrap()
        .to_string();
    let url = format!(
        "{}/v2/accounts/{}/trunks/{t}/phone-numbers",
        node.base, a.sid
    );
    let r = node
        .http
        .post(&url)
        .basic_auth(&a.key, Some(&a.token))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(code(&r.json().await.unwrap()), 1007);
    let r = node
        .http
        .post(&url)
        .basic_auth(&a.key, Some(&a.token))
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(code(&r.json().await.unwrap()), 1011);
    let number = json!({ "phone_number": fresh_number(), "mode": "pstn" });
    let (s, _) = node
        .call(
            &a,
            "POST",
            &format!("/trunks/{t}/phone-numbers"),
            Some(number.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = node
        .call(
            &a,
            "POST",
            &format!("/trunks/{t}/phone-numbers"),
            Some(number),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, 1008));
    let (s, v) = node
        .call(
            &a,
            "POST",
            &format!("/trunks/{t}/phone-numbers"),
            Some(json!({ "phone_number": "+918047000002", "mode": "flow", "flow_id": "nope" })),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, 1002));
    // Partly valid destinations: 207 with a result per item.
    let (s, v) = node
        .call(
            &a,
            "POST",
            &format!("/trunks/{t}/destination-uris"),
            Some(json!({ "destinations": [
            { "destination": "10.0.0.9:5061;transport=tls" },
            { "destination": "10.0.0.9:5060;transport=udp" }
        ] })),
        )
        .await;
    assert_eq!(s, StatusCode::MULTI_STATUS, "{v}");
    assert_eq!(v["response"]["data"][0]["status"], "success");
    assert_eq!(v["response"]["data"][1]["status"], "failure");
    // Credentials are stored as hashes only.
    let (s, v) = node
        .call(
            &a,
            "POST",
            &format!("/trunks/{t}/credentials"),
            Some(json!({ "user_name": "sbc", "password": "pw", "friendly_name": "main" })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(!v.to_string().contains("\"pw\""));
    let (_, v) = node
        .call(&a, "GET", &format!("/trunks/{t}/credentials"), None)
        .await;
    assert_eq!(v["response"]["data"][0]["user_name"], "sbc");
    assert!(v["response"]["data"][0].get("ha1_md5").is_none());
}

on_both_stores!(
    isolation_on_sqlite,
    isolation_on_postgresql,
    accounts_see_only_their_own_and_credentials_are_checked
);

async fn accounts_see_only_their_own_and_credentials_are_checked(store: &str) {
    let (node, a) = node_on(store).await;
    let b = node.account("two").await;
    let (_, v) = node
        .call(&a, "POST", "/trunks", Some(json!({ "trunk_name": "mine" })))
        .await;
    let t = v["response"]["data"]["trunk_sid"]
        .as_str()
        .unwrap()
        .to_string();
    for (method, path) in [
        ("GET", format!("/trunks/{t}")),
        ("DELETE", format!("/trunks/{t}")),
        ("GET", format!("/trunks/{t}/phone-numbers")),
    ] {
        let (s, v) = node.call(&b, method, &path, None).await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::NOT_FOUND, 1000),
            "{method} {path}"
        );
    }
    let (s, v) = node
        .call(
            &b,
            "POST",
            &format!("/trunks/{t}/whitelisted-ips"),
            Some(json!({ "ip": "10.0.0.1" })),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, 1000));
    let (_, v) = node.call(&b, "GET", "/trunks", None).await;
    assert_eq!(v["response"]["data"]["trunks"], json!([]));
    // Wrong token, another account's key, no credentials: 401 with code 1010.
    let wrong = Account {
        token: "x".into(),
        ..a.clone()
    };
    let crossed = Account {
        sid: a.sid.clone(),
        ..b.clone()
    };
    for who in [wrong, crossed] {
        let (s, v) = node.call(&who, "GET", "/trunks", None).await;
        assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, 1010));
    }
    let r = node
        .http
        .get(format!("{}/v2/accounts/{}/trunks", node.base, a.sid))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The admin endpoint wants the admin token.
    let r = node
        .http
        .post(format!("{}/v2/accounts", node.base))
        .bearer_auth("nope")
        .json(&json!({ "name": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The owner still sees and deletes its trunk.
    let (s, _) = node.call(&a, "DELETE", &format!("/trunks/{t}"), None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = node.call(&a, "GET", &format!("/trunks/{t}"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn rate_limit_is_200_a_minute_per_account() {
    let (node, a, _d) = sqlite_node().await;
    let b = node.account("other").await;
    let mut last = StatusCode::OK;
    for _ in 0..200 {
        last = node.call(&a, "GET", "/trunks", None).await.0;
    }
    assert_eq!(last, StatusCode::OK);
    let url = format!("{}/v2/accounts/{}/trunks", node.base, a.sid);
    let r = node
        .http
        .get(url)
        .basic_auth(&a.key, Some(&a.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().get("retry-after").is_some());
    assert_eq!(
        node.call(&b, "GET", "/trunks", None).await.0,
        StatusCode::OK,
        "other accounts are not limited"
    );
}

#[tokio::test]
async fn without_an_admin_token_account_creation_is_absent_and_health_answers() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("c.db").display());
    let text = config(&store, nowhere()).replace(&format!(", admin_token: {ADMIN}"), "");
    let (_, addr) = partner().await;
    let node = start(&text, addr).await;
    let r = node
        .http
        .post(format!("{}/v2/accounts", node.base))
        .bearer_auth(ADMIN)
        .json(&json!({ "name": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = node
        .http
        .get(format!("{}/health", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = node
        .http
        .get(format!("{}/ready", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, json!({ "sip": true, "store": true }));
}

on_both_stores!(
    flows_on_sqlite,
    flows_on_postgresql,
    flows_over_http_compile_version_route_and_stay_private
);

async fn flows_over_http_compile_version_route_and_stay_private(store: &str) {
    let (node, a) = node_on(store).await;
    let b = node.account("other").await;
    // A flow with an error: its diagnostics, and nothing stored.
    let bad = "flow: mine\nstart: c\napplets:\n  c:\n    connect: { to: sip:bot@127.0.0.1 }\n    on: { completed: sory }\n  sorry:\n    hangup: {}\n";
    let (s, v) = put_flow(&node, &a, "mine", bad).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let d = &v["response"]["data"]["diagnostics"][0];
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(6), Some(22)),
        "{d}"
    );
    assert!(
        d["message"]
            .as_str()
            .unwrap()
            .contains("did you mean 'sorry'")
    );
    assert_eq!(
        node.call(&a, "GET", "/flows/mine", None).await.0,
        StatusCode::NOT_FOUND
    );
    // Two good versions; the second routes calls at once.
    let mut first = Ua::new(Transport::Udp, "first", None).await;
    let mut second = Ua::new(Transport::Udp, "second", None).await;
    let good = |to: SocketAddr| {
        format!(
            "flow: mine\nstart: c\napplets:\n  c:\n    connect: {{ to: \"sip:bot@{to}\" }}\n    next: bye\n  bye:\n    hangup: {{}}\n"
        )
    };
    let (s, v) = put_flow(&node, &a, "mine", &good(first.addr)).await;
    assert_eq!(
        (s, v["response"]["data"]["version"].as_i64()),
        (StatusCode::OK, Some(1)),
        "{v}"
    );
    let (_, v) = node
        .call(&a, "POST", "/trunks", Some(json!({ "trunk_name": "t" })))
        .await;
    let t = v["response"]["data"]["trunk_sid"]
        .as_str()
        .unwrap()
        .to_string();
    let did = format!("+9181{:08}", rand::random::<u32>() % 100_000_000);
    let (s, v) = node
        .call(
            &a,
            "POST",
            &format!("/trunks/{t}/phone-numbers"),
            Some(json!({ "phone_number": did, "mode": "flow", "flow_id": "mine" })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut caller = Ua::new_at(Transport::Udp, "caller", None, "127.0.0.2").await;
    caller
        .send(
            &caller.invite(&format!("sip:{did}@{}", node.sip()), "v1"),
            node.sip(),
        )
        .await;
    let (inv, from) = first.expect_request("INVITE").await;
    first
        .send(&first.response(&inv, 486, "f1", None), from)
        .await;
    caller.expect_final("INVITE").await;
    let (s, v) = put_flow(&node, &a, "mine", &good(second.addr)).await;
    assert_eq!(
        (s, v["response"]["data"]["version"].as_i64()),
        (StatusCode::OK, Some(2))
    );
    caller
        .send(
            &caller.invite(&format!("sip:{did}@{}", node.sip()), "v2"),
            node.sip(),
        )
        .await;
    let (inv, from) = second.expect_request("INVITE").await;
    second
        .send(&second.response(&inv, 486, "s1", None), from)
        .await;
    caller.expect_final("INVITE").await;
    let (_, v) = node.call(&a, "GET", "/flows/mine", None).await;
    assert_eq!(v["response"]["data"]["version"], 2);
    assert!(
        v["response"]["data"]["yaml"]
            .as_str()
            .unwrap()
            .contains(&second.addr.to_string())
    );
    let (_, v) = node.call(&a, "GET", "/flows", None).await;
    assert_eq!(
        v["response"]["data"]["flows"],
        json!([{ "flow_id": "mine", "version": 2 }])
    );
    // Another account sees nothing and cannot use it.
    assert_eq!(
        node.call(&b, "GET", "/flows/mine", None).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, v) = node
        .call(&b, "POST", "/trunks", Some(json!({ "trunk_name": "tb" })))
        .await;
    let tb = v["response"]["data"]["trunk_sid"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, v) = node
        .call(
            &b,
            "POST",
            &format!("/trunks/{tb}/phone-numbers"),
            Some(json!({ "phone_number": "+918100000009", "mode": "flow", "flow_id": "mine" })),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, 1002));
    // In use: 409; once the number is gone, deleted.
    let (s, v) = node.call(&a, "DELETE", "/flows/mine", None).await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, 1008));
    let (_, v) = node
        .call(&a, "GET", &format!("/trunks/{t}/phone-numbers"), None)
        .await;
    let id = v["response"]["data"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        node.call(
            &a,
            "DELETE",
            &format!("/trunks/{t}/phone-numbers/{id}"),
            None
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        node.call(&a, "DELETE", "/flows/mine", None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        node.call(&a, "GET", "/flows/mine", None).await.0,
        StatusCode::NOT_FOUND
    );
}

on_both_stores!(
    carriers_on_sqlite,
    carriers_on_postgresql,
    carriers_under_the_admin_token_carry_calls_at_once
);

async fn carriers_under_the_admin_token_carry_calls_at_once(store: &str) {
    let n = fresh_number();
    let (_, addr) = partner().await;
    let mut file_carrier = Ua::new_at(Transport::Udp, "file-carrier", None, "127.0.0.2").await;
    let node = start(&config(store, file_carrier.addr), addr).await;
    let admin = |req: reqwest::RequestBuilder| req.bearer_auth(ADMIN);
    let mut api_carrier = Ua::new_at(Transport::Udp, "api-carrier", None, "127.0.0.3").await;
    let backup = format!("backup{:08x}", rand::random::<u32>());
    let body = json!({ "name": backup, "uri": format!("sip:{}", api_carrier.addr), "addresses": ["127.0.0.3/32"], "priority": 5, "max_channels": 10 });
    let r = admin(node.http.post(format!("{}/v2/carriers", node.base)))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The file's carrier cannot be changed over HTTP.
    let r = admin(node.http.post(format!("{}/v2/carriers", node.base)))
        .json(&json!({ "name": "pstn", "uri": "sip:10.0.0.1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = admin(node.http.delete(format!("{}/v2/carriers/pstn", node.base)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let v: Value = admin(node.http.get(format!("{}/v2/carriers", node.base)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sources: Vec<(&str, &str)> = v["response"]["data"]["carriers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["source"].as_str().unwrap()))
        .collect();
    assert_eq!(sources, [("pstn", "file"), (backup.as_str(), "api")]);
    // Without the admin token: 401; accounts' credentials do not open it either.
    let r = node
        .http
        .get(format!("{}/v2/carriers", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A partner's call fails over from the file's carrier (503) to the API's.
    let a = node.account("p").await;
    let (_, v) = node
        .call(&a, "POST", "/trunks", Some(json!({ "trunk_name": "t" })))
        .await;
    let t = v["response"]["data"]["trunk_sid"]
        .as_str()
        .unwrap()
        .to_string();
    node.call(
        &a,
        "POST",
        &format!("/trunks/{t}/phone-numbers"),
        Some(json!({ "phone_number": n, "mode": "pstn" })),
    )
    .await;
    node.call(
        &a,
        "POST",
        &format!("/trunks/{t}/whitelisted-ips"),
        Some(json!({ "ip": "127.0.0.1" })),
    )
    .await;
    let mut sbc = Ua::new(Transport::Udp, "sbc", None).await;
    let mut out = sbc.invite(&format!("sip:+919999999999@{}", node.sip()), "carrier-api");
    out.set_header(Name::From, format!("<sip:{n}@{}>;tag=o2", sbc.addr));
    sbc.send(&out, node.sip()).await;
    let (inv, from) = file_carrier.expect_request("INVITE").await;
    file_carrier
        .send(&file_carrier.response(&inv, 503, "f", None), from)
        .await;
    let (inv, from) = api_carrier.expect_request("INVITE").await;
    assert_eq!(inv.request_uri().unwrap().user(), Some("+919999999999"));
    api_carrier
        .send(&api_carrier.response(&inv, 486, "a", None), from)
        .await;
    assert_eq!(sbc.expect_final("INVITE").await.status(), Some(486));
    // Deleted: the next call has only the file's carrier.
    let r = admin(
        node.http
            .delete(format!("{}/v2/carriers/{backup}", node.base)),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        node.server
            .routing()
            .carrier_of("127.0.0.3".parse().unwrap())
            .is_none()
    );
}

/// The value of the sample `name{labels}` in a Prometheus text exposition.
fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_count_messages_refusals_and_calls() {
    let (node, a, _d) = sqlite_node().await;
    // One call that ends: a pstn number to a trunk whose destination refuses it.
    let mut bot = Ua::new(Transport::Tcp, "bot", None).await;
    pstn_trunk(&node, &a, "m", "+918047000222", bot.addr).await;
    let mut caller = Ua::new_at(Transport::Udp, "caller", None, "127.0.0.2").await;
    caller
        .send(
            &caller.invite(&format!("sip:+918047000222@{}", node.sip()), "m0"),
            node.sip(),
        )
        .await;
    let (inv, from) = bot.expect_request("INVITE").await;
    bot.send(&bot.response(&inv, 486, "b", None), from).await;
    caller.expect_final("INVITE").await;
    let mut stranger = Ua::new_at(Transport::Udp, "stranger", None, "127.0.0.4").await;
    stranger
        .send(
            &stranger.invite(&format!("sip:+919999999999@{}", node.sip()), "m1"),
            node.sip(),
        )
        .await;
    // An unknown source gets nothing at all (sip.unknown_sources: drop).
    assert!(stranger.recv(0.5).await.is_none());
    let mut pstn = Ua::new_at(Transport::Udp, "pstn", None, "127.0.0.2").await;
    pstn.send(
        &pstn.invite(&format!("sip:+910000000000@{}", node.sip()), "m2"),
        node.sip(),
    )
    .await;
    assert_eq!(pstn.expect_final("INVITE").await.status(), Some(404));
    let r = node
        .http
        .get(format!("{}/metrics", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().await.unwrap();
    let at_least = |name: &str, min: f64| {
        let v = sample(&text, name).unwrap_or_else(|| panic!("{name} missing in:\n{text}"));
        assert!(v >= min, "{name} = {v}");
    };
    at_least(
        "callflow_sip_requests_total{direction=\"in\",kind=\"INVITE\"}",
        2.0,
    );
    at_least(
        "callflow_sip_responses_total{direction=\"out\",kind=\"4xx\"}",
        2.0,
    );
    at_least(
        "callflow_rejected_invites_total{reason=\"unknown_source\"}",
        1.0,
    );
    at_least(
        "callflow_rejected_invites_total{reason=\"unknown_number\"}",
        1.0,
    );
    at_least("callflow_active_calls", 0.0);
    at_least("callflow_transactions_alive", 0.0);
    at_least("callflow_sip_malformed_total{reason=\"answered\"}", 0.0);
    assert!(text.contains("# TYPE callflow_webhook_latency_seconds histogram"));
    assert!(
        text.contains("callflow_calls_total{direction=\"incoming\",status="),
        "{text}"
    );
    assert!(
        text.contains("callflow_channels_in_use{limit=\"trunk:"),
        "{text}"
    );
}

#[tokio::test]
async fn openapi_describes_every_route_the_api_serves() {
    let (node, _a, _d) = sqlite_node().await;
    let doc: Value = node
        .http
        .get(format!("{}/openapi.json", node.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let numbers = &doc["paths"]["/v2/accounts/{account}/trunks/{trunk}/phone-numbers"]["post"];
    assert_eq!(
        numbers["requestBody"]["content"]["application/json"]["schema"]["required"],
        json!(["phone_number"])
    );
    assert_eq!(
        doc["paths"]["/v2/carriers"]["post"]["security"],
        json!([{ "admin": [] }])
    );
    // Each documented operation is served: without credentials it answers 401 (or,
    // open, 200) but never the router's fallback.
    let mut n = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let url = format!("{}{}", node.base, path.replace(['{', '}'], ""));
        for (method, op) in ops.as_object().unwrap() {
            let r = node
                .http
                .request(method.to_uppercase().parse().unwrap(), &url)
                .send()
                .await
                .unwrap();
            let expected = if op.get("security").is_some() {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::OK
            };
            assert_eq!(r.status(), expected, "{method} {path}");
            n += 1;
        }
    }
    assert!(n >= 25, "{n} operations");
}

on_both_stores!(
    credentials_on_sqlite,
    credentials_on_postgresql,
    credentials_created_over_http_authenticate_a_partners_call
);

async fn credentials_created_over_http_authenticate_a_partners_call(store: &str) {
    let n = fresh_number();
    let (_, addr) = partner().await;
    let mut carrier = Ua::new_at(Transport::Udp, "carrier", None, "127.0.0.2").await;
    let node = start(&config(store, carrier.addr), addr).await;
    let a = node.account("digest").await;
    let (_, v) = node
        .call(&a, "POST", "/trunks", Some(json!({ "trunk_name": "d" })))
        .await;
    let t = v["response"]["data"]["trunk_sid"]
        .as_str()
        .unwrap()
        .to_string();
    node.call(
        &a,
        "POST",
        &format!("/trunks/{t}/phone-numbers"),
        Some(json!({ "phone_number": n, "mode": "pstn" })),
    )
    .await;
    node.call(
        &a,
        "POST",
        &format!("/trunks/{t}/credentials"),
        Some(json!({ "user_name": "sbc", "password": "s3cret" })),
    )
    .await;
    // No whitelisted address: the first INVITE is challenged, the answer lets it through.
    let mut sbc = Ua::new(Transport::Udp, "sbc", None).await;
    let mut invite = sbc.invite(&format!("sip:+919999999999@{}", node.sip()), "dg1");
    invite.set_header(Name::From, format!("<sip:{n}@{}>;tag=d1", sbc.addr));
    sbc.send(&invite, node.sip()).await;
    let r = sbc.expect_final("INVITE").await;
    assert_eq!(r.status(), Some(401));
    let challenge = r
        .header(&Name::parse("WWW-Authenticate"))
        .unwrap()
        .to_string();
    let uri = invite.request_uri().unwrap().to_string();
    for (password, call_id, reaches) in [("wrong", "dg2", false), ("s3cret", "dg3", true)] {
        let mut again = invite.clone();
        again.set_header(Name::CallId, call_id);
        let via = invite
            .header(&Name::Via)
            .unwrap()
            .replace(";branch=z9hG4bK", &format!(";branch=z9hG4bK{call_id}"));
        again.set_header(Name::Via, via);
        again.push_header(
            Name::parse("Authorization"),
            digest_answer(&challenge, "SHA-256", &uri, "sbc", password),
        );
        sbc.send(&again, node.sip()).await;
        if reaches {
            let (inv, from) = carrier.expect_request("INVITE").await;
            carrier
                .send(&carrier.response(&inv, 486, "c", None), from)
                .await;
            assert_eq!(sbc.expect_final("INVITE").await.status(), Some(486));
        } else {
            assert_eq!(sbc.expect_final("INVITE").await.status(), Some(403));
        }
    }
    // A captured Authorization is worth nothing: replayed as it was, or on an INVITE
    // to another number, it is refused and no carrier is called.
    let captured = digest_answer(&challenge, "SHA-256", &uri, "sbc", "s3cret");
    for (dialled, call_id) in [("+919999999999", "dg4"), ("+442071234567", "dg5")] {
        let mut replay = sbc.invite(&format!("sip:{dialled}@{}", node.sip()), call_id);
        replay.set_header(Name::From, format!("<sip:{n}@{}>;tag=r{call_id}", sbc.addr));
        replay.push_header(Name::parse("Authorization"), captured.clone());
        sbc.send(&replay, node.sip()).await;
        assert_eq!(
            sbc.expect_final("INVITE").await.status(),
            Some(403),
            "{dialled}"
        );
    }
    while let Some((m, _)) = carrier.recv(0.3).await {
        assert_ne!(
            m.method().map(|m| m.as_str().to_string()).as_deref(),
            Some("INVITE"),
            "no carrier is called"
        );
    }
}

#[tokio::test]
async fn the_files_trunks_are_listed_as_such_and_their_numbers_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("c.db").display());
    let (_, addr) = partner().await;
    let text = format!(
        "{}trunks:\n  - sid: file_trunk\n    destinations: [\"sip:127.0.0.1:5999\"]\n    numbers: [{{ number: \"+918047000444\", mode: pstn }}]\n",
        config(&store, nowhere())
    );
    let node = start(&text, addr).await;
    let a = node.account("f").await;
    let (_, v) = node
        .call(&a, "POST", "/trunks", Some(json!({ "trunk_name": "mine" })))
        .await;
    let t = v["response"]["data"]["trunk_sid"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, v) = node
        .call(
            &a,
            "POST",
            &format!("/trunks/{t}/phone-numbers"),
            Some(json!({ "phone_number": "+918047000444", "mode": "pstn" })),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, 1008));
    assert!(
        v["response"]["error_data"]["description"]
            .as_str()
            .unwrap()
            .contains("callflow.yaml")
    );
    let v: Value = node
        .http
        .get(format!("{}/v2/trunks", node.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = v["response"]["data"]["trunks"].as_array().unwrap();
    assert_eq!(list[0]["trunk_sid"], "file_trunk");
    assert_eq!(list[0]["source"], "file");
    assert_eq!(list[1]["trunk_sid"], t.as_str());
    assert_eq!(list[1]["source"], "api");
    // Accounts do not see the file's trunks.
    let (_, v) = node.call(&a, "GET", "/trunks", None).await;
    assert_eq!(v["response"]["data"]["trunks"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn what_axum_refuses_is_in_the_envelope_too() {
    let (node, a, _d) = sqlite_node().await;
    let (_, v) = node
        .call(&a, "POST", "/trunks", Some(json!({ "trunk_name": "big" })))
        .await;
    let t = v["response"]["data"]["trunk_sid"]
        .as_str()
        .unwrap()
        .to_string();
    let huge = format!("{{\"phone_number\":\"{}\"}}", "9".repeat(2 * 1024 * 1024));
    let url = format!(
        "{}/v2/accounts/{}/trunks/{t}/phone-numbers",
        node.base, a.sid
    );
    let r = node
        .http
        .post(&url)
        .basic_auth(&a.key, Some(&a.token))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let v: Value = r.json().await.unwrap();
    assert_eq!((v["http_code"].as_u64(), code(&v)), (Some(413), 1007));
    let r = node
        .http
        .patch(format!("{}/v2/accounts/{}/trunks", node.base, a.sid))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(code(&r.json().await.unwrap()), 1000);
    let r = node
        .http
        .get(format!(
            "{}/v2/accounts/{}/trunks?page_size=lots",
            node.base, a.sid
        ))
        .basic_auth(&a.key, Some(&a.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(code(&r.json().await.unwrap()), 1007);
}

#[tokio::test]
async fn the_operator_sees_every_flow_with_its_source() {
    let (node, a, _d) = sqlite_node().await;
    let own = "flow: own\nstart: b\napplets:\n  b:\n    hangup: {}\n";
    assert_eq!(put_flow(&node, &a, "own", own).await.0, StatusCode::OK);
    let v: Value = node
        .http
        .get(format!("{}/v2/flows", node.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let flows = v["response"]["data"]["flows"].as_array().unwrap();
    assert!(
        flows
            .iter()
            .any(|f| f["flow_id"] == "f" && f["source"] == "file"),
        "{v}"
    );
    assert!(
        flows.iter().any(|f| f["flow_id"] == "own"
            && f["source"] == "api"
            && f["account_sid"] == a.sid.as_str()),
        "{v}"
    );
    assert!(
        !flows
            .iter()
            .any(|f| f["flow_id"].as_str().unwrap().contains('/'))
    );
}

/// A flow that connects to trunk `trunk` and posts its status callback to the partner.
fn callback_flow(trunk: &str, partner: SocketAddr) -> String {
    format!(
        "flow: cb\nstart: c\nstatus_callback: http://{partner}/status\napplets:\n  c:\n    connect: {{ to: \"sip:{trunk}\" }}\n    next: bye\n  bye:\n    hangup: {{}}\n"
    )
}

async fn call_records_with_trace_and_callback_attempts(store: &str) {
    let (partner, paddr) = partner().await;
    let node = start(&config(store, nowhere()), paddr).await;
    let a = node.account("rec").await;
    let b = node.account("other").await;
    let mut bot = Ua::new(Transport::Tcp, "bot", None).await;
    let (_, v) = node
        .call(&a, "POST", "/trunks", Some(json!({ "trunk_name": "r" })))
        .await;
    let t = v["response"]["data"]["trunk_sid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        put_flow(&node, &a, "cb", &callback_flow(&t, paddr)).await.0,
        StatusCode::OK
    );
    let did = fresh_number();
    node.call(
        &a,
        "POST",
        &format!("/trunks/{t}/phone-numbers"),
        Some(json!({ "phone_number": did, "mode": "flow", "flow_id": "cb" })),
    )
    .await;
    let dest =
        json!({ "destinations": [{ "destination": format!("{};transport=tcp", bot.addr) }] });
    node.call(
        &a,
        "POST",
        &format!("/trunks/{t}/destination-uris"),
        Some(dest),
    )
    .await;
    // The callback endpoint fails twice, then answers.
    partner.post_statuses.lock().unwrap().extend([503, 500]);
    let mut caller = Ua::new_at(Transport::Udp, "caller", None, "127.0.0.2").await;
    caller
        .send(
            &caller.invite(&format!("sip:{did}@{}", node.sip()), "rec1"),
            node.sip(),
        )
        .await;
    let (inv, from) = bot.expect_request("INVITE").await;
    let sid = inv
        .header(&Name::parse("X-Callflow-CallSid"))
        .unwrap()
        .to_string();
    bot.send(&bot.response(&inv, 486, "b", None), from).await;
    caller.expect_final("INVITE").await;
    // The record is there at once; the callback's three attempts follow.
    let mut call = Value::Null;
    for _ in 0..50 {
        let (s, v) = v1(&node, &a, &format!("/Calls/{sid}.json")).await;
        if s == StatusCode::OK
            && v["Call"]["Trace"]["callbacks"]
                .as_array()
                .is_some_and(|c| c.len() == 3)
        {
            call = v["Call"].clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(call["Sid"], sid.as_str(), "{call}");
    assert_eq!(call["AccountSid"], a.sid.as_str());
    assert_eq!(call["To"], did.as_str());
    assert_eq!(call["Direction"], "incoming");
    assert_eq!(
        call["Status"], "busy",
        "never answered; the only leg was busy"
    );
    assert_eq!(call["Trace"]["steps"][0]["applet"], "c");
    assert_eq!(call["Trace"]["steps"][0]["legs"][0]["result"], "486");
    let statuses: Vec<u64> = call["Trace"]["callbacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [503, 500, 200]);
    assert_eq!(partner.posted.lock().unwrap().len(), 3);
    // Another account: as absent as a call that never was.
    let (s, v) = v1(&node, &b, &format!("/Calls/{sid}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["RestException"]["Status"], 404);
    let (_, v) = v1(&node, &b, "/Calls.json").await;
    assert_eq!(v["Calls"], json!([]));
    // A caller who cancels while the bot rings: canceled.
    let mut caller = Ua::new_at(Transport::Udp, "caller2", None, "127.0.0.2").await;
    let invite = caller.invite(&format!("sip:{did}@{}", node.sip()), "rec2");
    caller.send(&invite, node.sip()).await;
    let (inv, from) = bot.expect_request("INVITE").await;
    let sid = inv
        .header(&Name::parse("X-Callflow-CallSid"))
        .unwrap()
        .to_string();
    bot.send(&bot.response(&inv, 180, "b", None), from).await;
    assert_eq!(caller.expect_response().await.status(), Some(180));
    let mut cancel = invite.clone();
    cancel.start = callflow::sip::StartLine::Request {
        method: callflow::sip::Method::Cancel,
        uri: invite.request_uri().unwrap().clone(),
    };
    cancel.set_header(Name::CSeq, "1 CANCEL");
    cancel.body = Default::default();
    caller.send(&cancel, node.sip()).await;
    let (c, from) = bot.expect_request("CANCEL").await;
    bot.send(&bot.response(&c, 200, "b", None), from).await;
    bot.send(&bot.response(&inv, 487, "b", None), from).await;
    let status = stored_call(&node, &a, &sid).await["Status"].clone();
    assert_eq!(status, "canceled");
}

on_both_stores!(
    call_records_on_sqlite,
    call_records_on_postgresql,
    call_records_with_trace_and_callback_attempts
);

/// A synthetic record of account `account`.
fn record(
    account: &str,
    n: u64,
    created: u64,
    status: callflow::runtime::CallStatus,
) -> callflow::runtime::CallRecord {
    callflow::runtime::CallRecord {
        call_sid: format!("CA{:032x}", rand::random::<u128>()),
        account_sid: Some(account.to_string()),
        flow_id: "f".into(),
        from: format!("+91980000{:04}", n % 10_000),
        to: "+918047112233".into(),
        direction: if n.is_multiple_of(2) {
            "incoming"
        } else {
            "outbound-dial"
        }
        .into(),
        custom_field: String::new(),
        status,
        created_unix: created,
        duration_secs: 1,
        record: false,
        recording_channels: None,
        recording_url: None,
        recording_error: None,
        steps: Vec::new(),
        callbacks: Vec::new(),
    }
}

async fn filters_and_a_cursor_that_stays_put(store_url: &str) {
    use callflow::runtime::CallStatus;
    let (node, a) = node_on(store_url).await;
    let store = callflow::store::Store::open(store_url).await.unwrap();
    let base = 1_700_000_000u64;
    let total = 2_000u64;
    for n in 0..total {
        let status = if n.is_multiple_of(4) {
            CallStatus::Busy
        } else {
            CallStatus::Completed
        };
        // Several calls share a second, so the cursor must break ties by sid.
        store
            .insert_call(&record(&a.sid, n, base + n / 3, status))
            .await
            .unwrap();
    }
    // Page through everything while newer calls keep arriving.
    let mut seen = std::collections::HashSet::new();
    let mut next = "/Calls.json?PageSize=100".to_string();
    let mut last_created = u64::MAX;
    let mut pages = 0;
    loop {
        let (s, v) = v1(&node, &a, &next).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        for c in v["Calls"].as_array().unwrap() {
            let created = c["Trace"]["created_unix"].as_u64().unwrap();
            assert!(created <= last_created, "newest first");
            last_created = created;
            assert!(
                seen.insert(c["Sid"].as_str().unwrap().to_string()),
                "no call twice"
            );
        }
        store
            .insert_call(&record(&a.sid, 9, base + total, CallStatus::Completed))
            .await
            .unwrap();
        pages += 1;
        match v["Metadata"]["NextPageUri"].as_str() {
            Some(uri) => next = format!("/Calls.json{}", uri.split_once("/Calls.json").unwrap().1),
            None => break,
        }
    }
    assert_eq!(
        seen.len() as u64,
        total,
        "every call exactly once, none of those that arrived meanwhile"
    );
    assert_eq!(pages, 20);
    // Filters.
    let count = |v: &Value| v["Calls"].as_array().unwrap().len();
    let (_, v) = v1(&node, &a, "/Calls.json?PageSize=100&Status=busy").await;
    assert_eq!(count(&v), 100);
    assert!(
        v["Calls"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["Status"] == "busy")
    );
    let from = callflow::api::calls::datetime(1_700_000_000 + 10);
    let to = callflow::api::calls::datetime(1_700_000_000 + 19);
    let (_, v) = v1(
        &node,
        &a,
        &format!("/Calls.json?PageSize=100&DateCreated=gte:{from};lte:{to}"),
    )
    .await;
    assert_eq!(count(&v), 30, "ten seconds of three calls each");
    let (_, v) = v1(
        &node,
        &a,
        "/Calls.json?PageSize=100&From=%2B919800000004&Direction=incoming",
    )
    .await;
    assert_eq!(count(&v), 1);
    let (s, v) = v1(&node, &a, "/Calls.json?PageSize=1000").await;
    assert_eq!(
        (s, v["RestException"]["Status"].as_u64()),
        (StatusCode::BAD_REQUEST, Some(400))
    );
}

on_both_stores!(
    call_list_on_sqlite,
    call_list_on_postgresql,
    filters_and_a_cursor_that_stays_put
);

#[tokio::test]
async fn records_past_the_retention_are_deleted_by_the_engine() {
    let (store_url, _dir) = sqlite_store();
    let text = config(&store_url, nowhere()).replace(
        &format!("store: \"{store_url}\""),
        &format!("store: {{ url: \"{store_url}\", retention: 2s }}"),
    );
    let (_, paddr) = partner().await;
    let node = start(&text, paddr).await;
    let a = node.account("ret").await;
    let store = callflow::store::Store::open(&store_url).await.unwrap();
    let now = callflow::store::now() as u64;
    let old = record(
        &a.sid,
        1,
        now - 100,
        callflow::runtime::CallStatus::Completed,
    );
    store.insert_call(&old).await.unwrap();
    assert_eq!(
        v1(&node, &a, &format!("/Calls/{}", old.call_sid)).await.0,
        StatusCode::OK
    );
    let mut gone = false;
    for _ in 0..50 {
        if v1(&node, &a, &format!("/Calls/{}", old.call_sid)).await.0 == StatusCode::NOT_FOUND {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gone, "a record older than the retention is deleted");
}

#[tokio::test]
async fn calls_in_progress_are_listed_and_hung_up_over_http() {
    let (node, a, _d) = sqlite_node().await;
    let b = node.account("other").await;
    let mut bot = Ua::new(Transport::Tcp, "bot", None).await;
    let did = fresh_number();
    pstn_trunk(&node, &a, "live", &did, bot.addr).await;
    let (mut caller, sid, _ok) = bridged_call(&node, &did, &mut bot, "live1").await;
    // Listed while in progress, to its account only.
    let (_, v) = v1(&node, &a, "/Calls.json?Status=in-progress").await;
    assert_eq!(v["Calls"][0]["Sid"], sid.as_str(), "{v}");
    assert_eq!(v["Calls"][0]["Status"], "in-progress");
    let (_, v) = v1(&node, &b, "/Calls.json?Status=in-progress").await;
    assert_eq!(v["Calls"], json!([]));
    let (s, _) = v1_post(
        &node,
        &b,
        &format!("/Calls/{sid}"),
        &[("Status", "completed")],
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = v1_post(
        &node,
        &a,
        &format!("/Calls/{sid}"),
        &[("Url", "http://my.exotel.com/x/flows/not-there")],
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Hung up: both legs get BYE.
    let (s, v) = v1_post(
        &node,
        &a,
        &format!("/Calls/{sid}.json"),
        &[("Status", "completed")],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (bye, from) = bot.expect_request("BYE").await;
    bot.send(&bot.response(&bye, 200, "b1", None), from).await;
    let (bye, from) = caller.expect_request("BYE").await;
    caller
        .send(&caller.response(&bye, 200, "x", None), from)
        .await;
    let mut listed = true;
    for _ in 0..50 {
        let (_, v) = v1(&node, &a, "/Calls.json?Status=in-progress").await;
        if v["Calls"] == json!([]) {
            listed = false;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!listed, "no longer in progress");
    assert_eq!(
        v1(&node, &a, &format!("/Calls/{sid}")).await.0,
        StatusCode::OK,
        "its record is stored"
    );
}

#[tokio::test]
async fn a_call_in_progress_moves_into_another_flow() {
    let (node, a, _d) = sqlite_node().await;
    let mut bot = Ua::new(Transport::Tcp, "bot", None).await;
    let mut agent = Ua::new(Transport::Udp, "agent", None).await;
    let agents = format!(
        "flow: agents\nstart: c\napplets:\n  c:\n    connect: {{ to: \"sip:agent@{}\" }}\n    next: bye\n  bye:\n    hangup: {{}}\n",
        agent.addr
    );
    assert_eq!(
        put_flow(&node, &a, "agents", &agents).await.0,
        StatusCode::OK
    );
    let did = fresh_number();
    pstn_trunk(&node, &a, "mv", &did, bot.addr).await;
    let (mut caller, sid, ok) = bridged_call(&node, &did, &mut bot, "mv1").await;
    // The operator rescues the call from the bot into the agents' flow.
    let url = format!("http://my.exotel.com/v2/accounts/{}/flows/agents", a.sid);
    let (s, v) = v1_post(
        &node,
        &a,
        &format!("/Calls/{sid}"),
        &[("Url", url.as_str())],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (bye, from) = bot.expect_request("BYE").await;
    bot.send(&bot.response(&bye, 200, "b1", None), from).await;
    // RFC 3725: the agent is invited without SDP, the caller re-INVITEd with its offer.
    let (inv, from) = agent.expect_request("INVITE").await;
    assert!(inv.body.is_empty());
    agent
        .send(
            &agent.response(&inv, 200, "ag1", Some(&support::answer(42000))),
            from,
        )
        .await;
    let (reinvite, rfrom) = caller.expect_request("INVITE").await;
    caller
        .send(
            &caller.response(&reinvite, 200, "x", Some(&support::answer(40000))),
            rfrom,
        )
        .await;
    agent.expect_request("ACK").await;
    // The caller hangs up; the record shows the move.
    let bye = caller.in_dialog("BYE", &ok, true, "", 2, "cbye");
    caller.send(&bye, Ua::contact_addr(&ok)).await;
    let (b, from) = agent.expect_request("BYE").await;
    agent
        .send(&agent.response(&b, 200, "ag1", None), from)
        .await;
    let steps = stored_call(&node, &a, &sid).await["Trace"]["steps"].clone();
    let path: Vec<(&str, &str)> = steps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["applet"].as_str().unwrap(),
                s["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        path,
        [("trunk", "-"), ("(redirect)", "agents"), ("c", "-")],
        "{steps}"
    );
}

#[tokio::test]
async fn concurrent_writes_on_sqlite_do_not_fail() {
    // A flow saved while call records are stored: a transaction that reads and then
    // writes must not be refused because another connection wrote in between.
    let (url, _dir) = sqlite_store();
    let store = callflow::store::Store::open(&url).await.unwrap();
    let a = store.create_account("w").await.unwrap().account_sid;
    let mut tasks = Vec::new();
    for n in 0..40u64 {
        let (store, a) = (store.clone(), a.clone());
        tasks.push(tokio::spawn(async move {
            if n % 2 == 0 {
                store.put_flow(&a, "f", "flow: f\n").await.map(|_| ())
            } else {
                let r = record(
                    &a,
                    n,
                    1_700_000_000 + n,
                    callflow::runtime::CallStatus::Completed,
                );
                store.insert_call(&r).await
            }
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}
