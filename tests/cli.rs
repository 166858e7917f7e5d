//! The `callflow` command as a flow author runs it: exit codes and what it prints.

use std::path::Path;
use std::process::{Command, Output};

fn callflow(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_callflow"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run callflow")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Stops a `serve` started with stderr piped, as Ctrl-C does, and returns what it
/// wrote there, after checking it exited cleanly.
fn interrupted(child: std::process::Child) -> String {
    stopped_by(child, "-INT")
}

/// Sends `signal` to a `serve` started with stderr piped and returns what it wrote
/// there, after checking it exited cleanly.
fn stopped_by(mut child: std::process::Child, signal: &str) -> String {
    use std::io::Read;
    Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{err}");
    err
}

const GOOD: &str = "flow: good\nstart: bot\napplets:\n  bot:\n    connect: { to: sip:trunk_1 }\n    next: bye\n  bye:\n    hangup: {}\n";

#[test]
fn check_passes_on_the_shipped_flows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = callflow(&["check", "flows"], root);
    assert_eq!(stdout(&out), "", "flows/ must compile without a diagnostic");
    assert!(out.status.success());
}

#[test]
fn check_reports_every_error_in_every_file_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("good.yaml"), GOOD).unwrap();
    std::fs::write(
        dir.path().join("sub/bad.yml"),
        "flow: bad\nstart: bot\napplets:\n  bot:\n    connect: { to: sip:trunk_1 }\n    on: { completed: bey, no_answer: bey, transfer: bye }\n  bye:\n    hangup: { status: 99 }\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a flow").unwrap();
    let out = callflow(&["check", "."], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out),
        "./sub/bad.yml:6:22: error: outcome 'completed' of applet 'bot' goes to 'bey', which does not exist (did you mean 'bye'?)\n\
         ./sub/bad.yml:6:38: error: outcome 'no_answer' of applet 'bot' goes to 'bey', which does not exist (did you mean 'bye'?)\n\
         ./sub/bad.yml:8:23: error: status must be a whole number from 400 to 699, not '99'\n"
    );
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(
        summary.contains("checked 2 file(s): 1 flow(s) compiled, 3 error(s), 0 warning(s)"),
        "{summary}"
    );
}

#[test]
fn warnings_do_not_fail_check() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("w.yaml"),
        "flow: w\nstart: bye\napplets:\n  lost:\n    hangup: {}\n  bye:\n    hangup: {}\n",
    )
    .unwrap();
    let out = callflow(&["check", "w.yaml"], dir.path());
    assert_eq!(
        stdout(&out),
        "w.yaml:4:3: warning: applet 'lost' is never reached from start applet 'bye'\n"
    );
    assert!(out.status.success());
}

#[test]
fn duplicate_flow_ids_across_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), GOOD).unwrap();
    std::fs::write(dir.path().join("b.yaml"), GOOD).unwrap();
    let out = callflow(&["check", "a.yaml", "b.yaml"], dir.path());
    assert_eq!(
        stdout(&out),
        "b.yaml:1:7: error: flow id 'good' is already used by a.yaml:1:7\n"
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn unreadable_and_non_utf8_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bin.yaml"), b"flow: x\nstart: \xff\xfe\n").unwrap();
    let out = callflow(&["check", "missing.yaml", "bin.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out),
        "missing.yaml: error: cannot read: No such file or directory (os error 2)\n\
         bin.yaml:2:8: error: the file is not valid UTF-8\n"
    );
}

#[test]
fn graph_prints_mermaid_and_dot_with_outcome_labels() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("g.yaml"), GOOD).unwrap();
    let out = callflow(&["graph", "g.yaml"], dir.path());
    assert!(out.status.success());
    assert_eq!(
        stdout(&out),
        "flowchart TD\n    start((start))\n    n0[\"bot<br/>connect sip:trunk_1\"]\n    n1[\"bye<br/>hangup 480\"]\n    start --> n0\n    n0 -->|\"next\"| n1\n"
    );
    let out = callflow(&["graph", "g.yaml", "--format", "dot"], dir.path());
    assert_eq!(
        stdout(&out),
        "digraph \"good\" {\n    node [shape=box];\n    \"start\" [shape=circle];\n    \"bot\" [label=\"bot\\nconnect sip:trunk_1\"];\n    \"bye\" [label=\"bye\\nhangup 480\"];\n    \"start\" -> \"bot\";\n    \"bot\" -> \"bye\" [label=\"next\"];\n}\n"
    );
}

#[test]
fn graph_of_a_bad_flow_prints_its_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("g.yaml"), "flow: g\n").unwrap();
    let out = callflow(&["graph", "g.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).starts_with("g.yaml:1:1: error: missing 'start'"));
}

#[test]
fn serve_refuses_an_invalid_config_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("callflow.yaml"), "sip:\n  lisen: []\n").unwrap();
    let out = callflow(&["serve"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("callflow.yaml:2:3: error: sip: unknown field `lisen`"),
        "{err}"
    );
}

#[test]
fn serve_refuses_flows_with_errors_and_prints_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("flows")).unwrap();
    std::fs::write(
        dir.path().join("flows/bad.yaml"),
        "flow: bad\nstart: nowhere\napplets:\n  a:\n    hangup: {}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("callflow.yaml"),
        "sip: { listen: [\"udp://127.0.0.1:0\"] }\nflows: flows\n",
    )
    .unwrap();
    let out = callflow(&["serve", "--config", "callflow.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml:2:8: error: start applet 'nowhere' does not exist"),
        "{err}"
    );
    assert!(err.contains("not started"), "{err}");
}

#[test]
fn simulate_prints_the_path_and_each_webhook_request() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = callflow(
        &[
            "simulate",
            "flows/bot-to-agent.yaml",
            "--scenario",
            "examples/scenarios/bot-to-agent.yaml",
        ],
        root,
    );
    assert!(out.status.success());
    let text = stdout(&out);
    let path: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "path:")
        .filter(|l| l.starts_with("  ") && !l.starts_with("      "))
        .take(5)
        .collect();
    assert_eq!(
        path,
        [
            "  bot (connect) -> completed",
            "  handoff (passthru) -> ok",
            "  route (switchcase) -> sales",
            "  agent_sales (connect) -> completed",
            "  bye (hangup) -> -",
        ]
    );
    assert!(
        text.contains("GET https://partner.example.com/handoff?CallSid=CAsimulated&"),
        "{text}"
    );
    assert!(text.contains("&applet=handoff"), "{text}");
}

#[test]
fn simulate_reports_a_bad_scenario_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("g.yaml"), GOOD).unwrap();
    std::fs::write(dir.path().join("s.yaml"), "legs: [completed]\nlegz: []\n").unwrap();
    let out = callflow(&["simulate", "g.yaml", "--scenario", "s.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).starts_with("s.yaml:2:1: error: unknown field `legz`"),
        "{}",
        stdout(&out)
    );
}

/// Starts `serve` in a new directory holding one good flow, SIP on a free UDP port
/// and stderr piped, and gives it half a second to start.
fn serve_good_flow() -> (tempfile::TempDir, std::process::Child) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("flows")).unwrap();
    std::fs::write(dir.path().join("flows/g.yaml"), GOOD).unwrap();
    std::fs::write(
        dir.path().join("callflow.yaml"),
        "sip: { listen: [\"udp://127.0.0.1:0\"] }\nflows: flows\n",
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_callflow"))
        .args(["serve", "--config", "callflow.yaml"])
        .current_dir(dir.path())
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    (dir, child)
}

/// SIGTERM (what `kill`, `systemctl stop` and `docker stop` send) stops `serve` as
/// Ctrl-C does: no new calls, the calls in progress drained, a clean exit.
#[test]
fn sigterm_drains_and_stops_serve() {
    let (_dir, child) = serve_good_flow();
    let err = stopped_by(child, "-TERM");
    assert!(err.contains("callflow: no new calls"), "{err}");
    assert!(err.contains("callflow: stopped"), "{err}");
}

#[test]
fn sighup_reloads_and_refuses_an_invalid_flow() {
    let (dir, child) = serve_good_flow();
    let pid = child.id().to_string();
    let signal = |sig: &str| {
        Command::new("kill").args([sig, &pid]).status().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(400));
    };
    signal("-HUP"); // valid: reloaded
    std::fs::write(dir.path().join("flows/g.yaml"), "flow: good\nstart: bot\n").unwrap();
    signal("-HUP"); // invalid: refused
    let err = interrupted(child);
    assert!(err.contains("configuration and flows reloaded"), "{err}");
    assert!(
        err.contains("g.yaml:1:1: error: missing 'applets'"),
        "{err}"
    );
    assert!(
        err.contains("reload refused; the running configuration stays"),
        "{err}"
    );
}

/// `serve` at its default log level writes one line for a call, its record when it
/// ends, and no colour codes into a log that is not a terminal; the lines for each
/// applet, attempt and far leg are for `RUST_LOG=debug`.
#[test]
fn serve_logs_one_line_per_call_by_default() {
    use std::net::UdpSocket;
    use std::time::Duration;
    let free = || {
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (caller, bot) = (
        UdpSocket::bind("127.0.0.1:0").unwrap(),
        UdpSocket::bind("127.0.0.1:0").unwrap(),
    );
    for s in [&caller, &bot] {
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    }
    let port = free();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("flows")).unwrap();
    std::fs::write(
        dir.path().join("callflow.yaml"),
        format!(
            "sip: {{ listen: [\"udp://127.0.0.1:{port}\"], options_interval: null }}\nflows: flows\n\
             carriers:\n  - {{ name: a, uri: \"sip:127.0.0.1:9\", addresses: [127.0.0.1/32] }}\n\
             trunks:\n  - sid: t\n    numbers: [{{ number: \"+918047112233\", mode: pstn }}]\n    \
             destinations: [\"sip:{}\"]\n",
            bot.local_addr().unwrap()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_callflow"))
        .args(["serve", "--config", "callflow.yaml"])
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let me = caller.local_addr().unwrap();
    let invite = format!(
        "INVITE sip:+918047112233@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKlog1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+919812345678@{me}>;tag=c1\r\nTo: <sip:+918047112233@127.0.0.1>\r\n\
         Call-ID: log-1\r\nCSeq: 1 INVITE\r\nContact: <sip:c@{me}>\r\nContent-Length: 0\r\n\r\n"
    );
    let mut buf = [0u8; 4096];
    let text = |n: usize, buf: &[u8]| String::from_utf8_lossy(&buf[..n]).into_owned();
    // Sent again every 500 ms (the same transaction) until the far leg's INVITE
    // comes, in case `serve` is slow to start.
    bot.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let (n, engine) = (0..20)
        .find_map(|_| {
            caller
                .send_to(invite.as_bytes(), ("127.0.0.1", port))
                .unwrap();
            bot.recv_from(&mut buf).ok()
        })
        .expect("the far leg's INVITE");
    let far = text(n, &buf);
    let mut busy = String::from("SIP/2.0 486 Busy Here\r\n");
    for line in far.split("\r\n").skip(1) {
        let lower = line.to_ascii_lowercase();
        if ["via:", "from:", "call-id:", "cseq:"]
            .iter()
            .any(|h| lower.starts_with(h))
        {
            busy.push_str(&format!("{line}\r\n"));
        } else if lower.starts_with("to:") {
            busy.push_str(&format!("{line};tag=b1\r\n"));
        }
    }
    busy.push_str("Content-Length: 0\r\n\r\n");
    bot.send_to(busy.as_bytes(), engine).unwrap();
    let final_response = loop {
        let (n, _) = caller
            .recv_from(&mut buf)
            .expect("the caller's final response");
        let t = text(n, &buf);
        if !t.starts_with("SIP/2.0 1") {
            break t;
        }
    };
    let to = final_response
        .split("\r\n")
        .find(|l| l.starts_with("To:"))
        .unwrap_or("To: <sip:x>");
    let ack = format!(
        "ACK sip:+918047112233@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKlog1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+919812345678@{me}>;tag=c1\r\n{to}\r\nCall-ID: log-1\r\n\
         CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    caller.send_to(ack.as_bytes(), ("127.0.0.1", port)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let err = interrupted(child);
    let ended: Vec<&str> = err.lines().filter(|l| l.contains("call ended")).collect();
    assert_eq!(ended.len(), 1, "{err}");
    assert!(ended[0].contains("\"status\""), "{err}");
    for routine in ["applet done", "attempt", "far leg"] {
        assert!(!err.contains(routine), "{routine}: {err}");
    }
    assert!(
        !err.contains('\u{1b}'),
        "no colour codes in a log file: {err}"
    );
}
