//! Interop with SIPp (Debian package `sip-tester`), a SIP tool nobody here wrote:
//! SIPp plays the caller and the far end, the engine bridges them.
//!
//! SIPp must be installed (`.ci/run` installs it). Set CALLFLOW_SKIP_SIPP=1 to skip
//! these tests on a machine without it; they fail otherwise, so that CI never passes
//! without having run them.

mod support;

use std::net::UdpSocket;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use callflow::runtime::{LegOutcome, LegRequest};
use callflow::sip::{Transport, Uri};
use support::{TestEngine, handler};
use tokio::process::Command;

/// One SIPp test at a time: each picks free ports and hands them to SIPp processes
/// that bind them later, which tests running side by side (and their engines'
/// ephemeral ports) could take in between.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// SIPp's turn: `None` (the test is skipped) when SIPp is not installed and
/// CALLFLOW_SKIP_SIPP is set.
async fn sipp_turn() -> Option<tokio::sync::MutexGuard<'static, ()>> {
    if !sipp_present() {
        return None;
    }
    Some(ONE_AT_A_TIME.lock().await)
}

fn sipp_present() -> bool {
    if std::process::Command::new("sipp")
        .arg("-v")
        .output()
        .is_ok()
    {
        return true;
    }
    if std::env::var_os("CALLFLOW_SKIP_SIPP").is_some() {
        eprintln!("SIPp not installed; skipped (CALLFLOW_SKIP_SIPP set)");
        return false;
    }
    panic!("SIPp is not installed: apt-get install -y sip-tester (or set CALLFLOW_SKIP_SIPP=1)");
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn scenario(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name)
        .display()
        .to_string()
}

/// SIPp's arguments for one side: a scenario (`-sn` built-in or `-sf` file).
fn sipp(scenario_args: &[String], port: u16, transport: Transport, extra: &[String]) -> Command {
    let mut c = Command::new("sipp");
    c.args(scenario_args)
        .args(["-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-m", "1", "-nostdin", "-timeout", "20s", "-timeout_error"])
        .args(["-cp", &free_port().to_string()])
        .args([
            "-t",
            if transport == Transport::Udp {
                "u1"
            } else {
                "t1"
            },
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

/// Runs SIPp as far end (`uas`) and as caller (`uac`) through the engine.
async fn interop(uas: Vec<String>, uac: Vec<String>, transport: Transport) {
    let Some(_turn) = sipp_turn().await else {
        return;
    };
    let far_port = free_port();
    let tag = match transport {
        Transport::Udp => String::new(),
        t => format!(";transport={}", t.as_str().to_ascii_lowercase()),
    };
    let far_uri = format!("sip:bot@127.0.0.1:{far_port}{tag}");
    let engine = TestEngine::start(
        handler(move |mut call| {
            let far_uri = far_uri.clone();
            async move {
                if call.accept_offer().await.is_err() {
                    return;
                }
                let Ok(Uri::Sip(uri)) = Uri::parse(&far_uri) else {
                    return;
                };
                let leg = LegRequest {
                    uri,
                    headers: vec![],
                    ring_timeout: Duration::from_secs(5),
                    caller_id: None,
                    media: Default::default(),
                };
                match call.dial(leg).await {
                    LegOutcome::Answered => {
                        call.wait(Duration::from_secs(30)).await;
                        call.hangup(480).await;
                    }
                    LegOutcome::Rejected(s) => call.hangup(s).await,
                    LegOutcome::CallerGone => {}
                    _ => call.hangup(480).await,
                }
            }
        }),
        None,
    )
    .await;
    let mut far = sipp(&uas, far_port, transport, &[])
        .spawn()
        .expect("start SIPp uas");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let target = engine.addr(transport).to_string();
    let caller = sipp(
        &uac,
        free_port(),
        transport,
        &["-s".into(), "+918047112233".into(), target],
    )
    .output()
    .await
    .expect("run SIPp uac");
    let far_out = tokio::time::timeout(Duration::from_secs(25), far.wait())
        .await
        .expect("SIPp uas finished");
    let mut far_err = String::new();
    if let Some(mut e) = far.stderr.take() {
        use tokio::io::AsyncReadExt;
        let _ = e.read_to_string(&mut far_err).await;
    }
    assert!(
        caller.status.success(),
        "SIPp caller failed ({:?}): {}",
        caller.status,
        String::from_utf8_lossy(&caller.stderr)
    );
    assert!(
        far_out.expect("wait").success(),
        "SIPp far end failed: {far_err}"
    );
}

fn builtin(name: &str) -> Vec<String> {
    vec!["-sn".into(), name.into()]
}

fn file(name: &str) -> Vec<String> {
    vec!["-sf".into(), scenario(name)]
}

#[tokio::test]
async fn sipp_basic_call_over_udp() {
    interop(builtin("uas"), builtin("uac"), Transport::Udp).await;
}

#[tokio::test]
async fn sipp_basic_call_over_tcp() {
    interop(builtin("uas"), builtin("uac"), Transport::Tcp).await;
}

#[tokio::test]
async fn sipp_cancel_while_ringing() {
    interop(
        file("uas_cancel.xml"),
        file("uac_cancel.xml"),
        Transport::Udp,
    )
    .await;
}

#[tokio::test]
async fn sipp_far_end_hangs_up_first() {
    interop(
        file("uas_bye.xml"),
        file("uac_recv_bye.xml"),
        Transport::Udp,
    )
    .await;
}

/// The seed's hand-off with SIPp as caller, bot and agent: the bot answers and hangs
/// up, the partner's webhook (local HTTP) answers `{"select":"sales"}`, the agent
/// takes over with the caller re-INVITEd, the caller hangs up.
#[tokio::test]
async fn sipp_seed_handoff_caller_bot_agent() {
    let Some(_turn) = sipp_turn().await else {
        return;
    };
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let app = axum::Router::new().route(
        "/handoff",
        axum::routing::get(|| async { r#"{"select":"sales"}"# }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (bot_port, agent_port) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("flows")).unwrap();
    let flow = format!(
        "flow: handoff\nstart: bot\napplets:\n  bot:\n    connect: {{ to: sip:trunk_bot }}\n    on: {{ completed: handoff, transfer: handoff, no_answer: bye }}\n  handoff:\n    passthru: {{ url: http://{http}/handoff }}\n    on: {{ ok: route, fail: bye }}\n  route:\n    switchcase: {{ cases: {{ sales: agent }}, default: bye }}\n  agent:\n    connect: {{ to: sip:trunk_sales }}\n    next: bye\n  bye:\n    hangup: {{}}\n"
    );
    std::fs::write(dir.path().join("flows/handoff.yaml"), flow).unwrap();
    let config = format!(
        "sip: {{ listen: [\"udp://127.0.0.1:0\"], options_interval: null }}\nflows: flows\ncarriers:\n  - {{ name: pstn, uri: \"sip:127.0.0.1:9\", addresses: [127.0.0.1/32] }}\ntrunks:\n  - sid: trunk_bot\n    destinations: [\"sip:bot@127.0.0.1:{bot_port}\"]\n    numbers: [{{ number: \"+918047112233\", mode: flow, flow: handoff }}]\n  - sid: trunk_sales\n    destinations: [\"sip:agent@127.0.0.1:{agent_port}\"]\n"
    );
    let path = dir.path().join("callflow.yaml");
    std::fs::write(&path, config).unwrap();
    let config = callflow::config::Config::load(&path).unwrap();
    let server = callflow::server::Server::start(&config, support::fast_timers())
        .await
        .unwrap();
    let bot = sipp(&file("uas_bye.xml"), bot_port, Transport::Udp, &[])
        .spawn()
        .unwrap();
    let agent = sipp(&file("uas_agent.xml"), agent_port, Transport::Udp, &[])
        .spawn()
        .unwrap();
    run_caller(
        &server,
        file("uac_handoff.xml"),
        "+918047112233",
        vec![("bot", bot), ("agent", agent)],
    )
    .await;
}

/// Runs SIPp `scenario` as the caller dialling `number` through `server`, once the
/// far ends in `far` are up; asserts that the caller and every far end succeeded.
async fn run_caller(
    server: &callflow::server::Server,
    scenario: Vec<String>,
    number: &str,
    far: Vec<(&str, tokio::process::Child)>,
) {
    tokio::time::sleep(Duration::from_millis(400)).await;
    let target = server
        .transports
        .local_addr(Transport::Udp)
        .unwrap()
        .to_string();
    let caller = sipp(
        &scenario,
        free_port(),
        Transport::Udp,
        &["-s".into(), number.into(), target],
    )
    .output()
    .await
    .unwrap();
    assert!(
        caller.status.success(),
        "SIPp caller failed: {}",
        String::from_utf8_lossy(&caller.stderr)
    );
    for (name, mut p) in far {
        let status = tokio::time::timeout(Duration::from_secs(20), p.wait()).await;
        assert!(
            matches!(status, Ok(Ok(s)) if s.success()),
            "SIPp {name} failed"
        );
    }
}

/// Issue 5's failover with SIPp as the partner's SBC and as three carriers: the first
/// answers 503, the second rings until cancelled, the third answers.
#[tokio::test]
async fn sipp_outbound_carrier_failover() {
    let Some(_turn) = sipp_turn().await else {
        return;
    };
    let ports = [free_port(), free_port(), free_port()];
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("flows")).unwrap();
    let config = format!(
        "sip: {{ listen: [\"udp://127.0.0.1:0\"], options_interval: null }}\nflows: flows\noutbound: {{ ring_timeout: 1s }}\ncarriers:\n  - {{ name: a, uri: \"sip:127.0.0.1:{}\", addresses: [10.1.0.1/32], priority: 1 }}\n  - {{ name: b, uri: \"sip:127.0.0.1:{}\", addresses: [10.2.0.1/32], priority: 2 }}\n  - {{ name: c, uri: \"sip:127.0.0.1:{}\", addresses: [10.3.0.1/32], priority: 3 }}\ntrunks:\n  - sid: partner\n    whitelisted_ips: [127.0.0.1/32]\n    numbers: [{{ number: \"+918047112233\", mode: pstn }}]\n",
        ports[0], ports[1], ports[2]
    );
    let path = dir.path().join("callflow.yaml");
    std::fs::write(&path, config).unwrap();
    let server = callflow::server::Server::start(
        &callflow::config::Config::load(&path).unwrap(),
        support::fast_timers(),
    )
    .await
    .unwrap();
    let mut carriers = Vec::new();
    for (name, args, port) in [
        ("carrier a", file("uas_503.xml"), ports[0]),
        ("carrier b", file("uas_cancel.xml"), ports[1]),
        ("carrier c", builtin("uas"), ports[2]),
    ] {
        carriers.push((
            name,
            sipp(&args, port, Transport::Udp, &[]).spawn().unwrap(),
        ));
    }
    run_caller(&server, file("uac_outbound.xml"), "+919999999999", carriers).await;
}

/// Issue 9's onboarding done over HTTP, then a SIPp call routed by what it created,
/// without a restart: a trunk, a flow uploaded for it, a DID mapped to the flow, a TCP
/// destination where SIPp answers, and the external alias as Request-URI user.
#[tokio::test]
async fn sipp_call_routed_by_what_the_api_created() {
    let Some(_turn) = sipp_turn().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("c.db").display());
    let config = format!(
        "sip: {{ listen: [\"udp://127.0.0.1:0\"], options_interval: null }}\napi: {{ listen: \"127.0.0.1:0\", admin_token: t0ken }}\nstore: \"{store}\"\nflows: flows\ncarriers:\n  - {{ name: pstn, uri: \"sip:127.0.0.1:9\", addresses: [127.0.0.1/32] }}\n"
    );
    let (server, _dir) = support::serve(&config, &[]).await;
    let base = format!("http://{}", server.api_addr.unwrap());
    let http = reqwest::Client::new();
    let post = |url: String, body: serde_json::Value| http.post(url).json(&body);
    let v: serde_json::Value = post(
        format!("{base}/v2/accounts"),
        serde_json::json!({ "name": "sipp" }),
    )
    .bearer_auth("t0ken")
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let d = &v["response"]["data"];
    let (sid, key, token) = (
        d["account_sid"].as_str().unwrap().to_string(),
        d["api_key"].as_str().unwrap().to_string(),
        d["api_token"].as_str().unwrap().to_string(),
    );
    let api = format!("{base}/v2/accounts/{sid}");
    let call = |path: &str, body: serde_json::Value| {
        post(format!("{api}{path}"), body).basic_auth(&key, Some(&token))
    };
    let v: serde_json::Value = call("/trunks", serde_json::json!({ "trunk_name": "sipp_bot" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let trunk = v["response"]["data"]["trunk_sid"]
        .as_str()
        .unwrap()
        .to_string();
    let flow = format!(
        "flow: to-bot\nstart: bot\napplets:\n  bot:\n    connect: {{ to: \"sip:{trunk}\" }}\n    next: bye\n  bye:\n    hangup: {{}}\n"
    );
    let r = http
        .put(format!("{api}/flows/to-bot"))
        .basic_auth(&key, Some(&token))
        .body(flow)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let bot_port = free_port();
    for (path, body) in [
        (
            format!("/trunks/{trunk}/phone-numbers"),
            serde_json::json!({ "phone_number": "+918047112255", "mode": "flow", "flow_id": "to-bot" }),
        ),
        (
            format!("/trunks/{trunk}/destination-uris"),
            serde_json::json!({ "destinations": [{ "destination": format!("127.0.0.1:{bot_port};transport=tcp") }] }),
        ),
        (
            format!("/trunks/{trunk}/settings"),
            serde_json::json!({ "settings": [{ "name": "trunk_external_alias", "value": "+918047112200" }] }),
        ),
    ] {
        let r = call(&path, body).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let bot = sipp(&builtin("uas"), bot_port, Transport::Tcp, &[])
        .spawn()
        .unwrap();
    run_caller(&server, builtin("uac"), "+918047112255", vec![("bot", bot)]).await;
}

/// Issue 10's click-to-call with SIPp as both parties, both ways: the customer behind
/// the carrier first and the bot on the trunk second, then the bot first and the
/// customer second. The first party is invited without SDP and offers in its 200;
/// the second gets exactly that offer; the first gets the second's answer in the ACK
/// (RFC 3725 flow I), talks, hangs up, and the second gets BYE.
#[tokio::test]
async fn sipp_click_to_call_both_ways() {
    use support::node::{config, fresh_number, pstn_trunk, start, stored_call, v1_post};
    let Some(_turn) = sipp_turn().await else {
        return;
    };
    for customer_first in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let store = format!("sqlite://{}", dir.path().join("c.db").display());
        let (customer_port, bot_port) = (free_port(), free_port());
        let carrier: std::net::SocketAddr = format!("127.0.0.1:{customer_port}").parse().unwrap();
        let node = start(&config(&store, carrier), carrier).await;
        let a = node.account("sipp").await;
        let did = fresh_number();
        let bot_addr = format!("127.0.0.1:{bot_port}").parse().unwrap();
        let trunk = pstn_trunk(&node, &a, "bots", &did, bot_addr).await;
        let (first, second) = if customer_first {
            (
                ("customer", customer_port, Transport::Udp),
                ("bot", bot_port, Transport::Tcp),
            )
        } else {
            (
                ("bot", bot_port, Transport::Tcp),
                ("customer", customer_port, Transport::Udp),
            )
        };
        let mut first_p = sipp(&file("uas_3pcc_first.xml"), first.1, first.2, &[])
            .spawn()
            .unwrap();
        let mut second_p = sipp(&file("uas_3pcc_second.xml"), second.1, second.2, &[])
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let bot = format!("sip:{trunk}");
        let (from, to) = if customer_first {
            ("+919845012345", bot.as_str())
        } else {
            (bot.as_str(), "+919845012345")
        };
        let (s, v) = v1_post(
            &node,
            &a,
            "/Calls/connect",
            &[("From", from), ("To", to), ("CallerId", &did)],
        )
        .await;
        assert_eq!(s, 200, "{v}");
        let sid = v["Call"]["Sid"].as_str().unwrap().to_string();
        for (name, p) in [(first.0, &mut first_p), (second.0, &mut second_p)] {
            let status = tokio::time::timeout(Duration::from_secs(20), p.wait()).await;
            let mut err = String::new();
            if let Some(mut e) = p.stderr.take() {
                use tokio::io::AsyncReadExt;
                let _ = e.read_to_string(&mut err).await;
            }
            assert!(
                matches!(status, Ok(Ok(s)) if s.success()),
                "SIPp {name} failed (customer first: {customer_first}): {err}"
            );
        }
        let call = stored_call(&node, &a, &sid).await;
        assert_eq!(call["Status"], "completed", "{call}");
    }
}
