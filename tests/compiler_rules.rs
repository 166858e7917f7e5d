//! One test per compiler rule of docs/architecture.md §3: a bad flow, the exact message, and the
//! exact line and column.

use callflow::flow::{CompileOptions, compile_str};

/// Compiles `src` as `t.yaml` and returns every diagnostic, one per line.
fn diags(src: &str) -> Vec<String> {
    compile_str("t.yaml".into(), src, &CompileOptions::default())
        .diagnostics
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// Asserts that `src` gives exactly `expected`.
#[track_caller]
fn check(src: &str, expected: &[&str]) {
    assert_eq!(diags(src), expected, "\n--- flow ---\n{src}");
}

const OK_TAIL: &str = "  bye:\n    hangup: {}\n";

#[test]
fn a_good_flow_has_no_diagnostics() {
    check(
        "flow: f\nstart: a\napplets:\n  a:\n    connect: { to: sip:trunk_1 }\n    next: bye\n  bye:\n    hangup: {}\n",
        &[],
    );
}

#[test]
fn yaml_syntax_error() {
    check(
        "flow: f\nstart: a\napplets:\n  a: [unclosed\n",
        &["t.yaml:5:1: error: YAML syntax: while parsing a flow sequence, expected ',' or ']'"],
    );
}

#[test]
fn empty_file() {
    check(
        "",
        &["t.yaml:1:1: error: the file is empty: a flow needs flow, start and applets"],
    );
}

#[test]
fn top_level_not_a_mapping() {
    check(
        "- a\n- b\n",
        &["t.yaml:1:1: error: a flow file must be a mapping, not a list"],
    );
}

#[test]
fn unknown_top_level_key() {
    check(
        &format!("flow: f\nstart: bye\nstrat: bye\napplets:\n{OK_TAIL}"),
        &["t.yaml:3:1: error: unknown key 'strat' in the flow (did you mean 'start'?)"],
    );
}

#[test]
fn missing_start() {
    check(
        &format!("flow: f\napplets:\n{OK_TAIL}"),
        &["t.yaml:1:1: error: missing 'start': name the applet the flow begins with"],
    );
}

#[test]
fn start_that_does_not_exist() {
    check(
        &format!("flow: f\nstart: by\napplets:\n{OK_TAIL}"),
        &["t.yaml:2:8: error: start applet 'by' does not exist (did you mean 'bye'?)"],
    );
}

#[test]
fn missing_flow_id() {
    check(
        &format!("start: bye\napplets:\n{OK_TAIL}"),
        &["t.yaml:1:1: error: missing 'flow': give the flow a unique id"],
    );
}

#[test]
fn invalid_flow_id() {
    check(
        &format!("flow: Bot To Agent\nstart: bye\napplets:\n{OK_TAIL}"),
        &[
            "t.yaml:1:7: error: flow id 'Bot To Agent' is invalid: use lowercase letters, digits, '_' and '-'",
        ],
    );
}

#[test]
fn missing_and_empty_applets() {
    check(
        "flow: f\nstart: a\n",
        &["t.yaml:1:1: error: missing 'applets': a flow needs at least one applet"],
    );
    check(
        "flow: f\nstart: a\napplets: {}\n",
        &["t.yaml:3:1: error: 'applets' is empty: a flow needs at least one applet"],
    );
}

#[test]
fn unknown_applet_kind() {
    check(
        &format!("flow: f\nstart: a\napplets:\n  a:\n    conect: {{ to: sip:t }}\n{OK_TAIL}"),
        &[
            "t.yaml:5:5: error: unknown applet kind 'conect' in applet 'a' (did you mean 'connect'?); kinds are connect, passthru, switchcase, hangup",
        ],
    );
}

#[test]
fn applet_without_kind() {
    check(
        &format!("flow: f\nstart: a\napplets:\n  a:\n    next: bye\n{OK_TAIL}"),
        &[
            "t.yaml:5:5: error: applet 'a' has no kind: give one of connect, passthru, switchcase, hangup",
        ],
    );
}

#[test]
fn applet_with_two_kinds() {
    check(
        &format!(
            "flow: f\nstart: a\napplets:\n  a:\n    connect: {{ to: sip:t }}\n    hangup: {{}}\n{OK_TAIL}"
        ),
        &[
            "t.yaml:6:5: error: applet 'a' has more than one kind ('connect' and 'hangup'): give exactly one",
        ],
    );
}

#[test]
fn unknown_key_in_applet_and_in_body() {
    check(
        &format!(
            "flow: f\nstart: a\napplets:\n  a:\n    connect:\n      to: sip:t\n      ring_timout: 5s\n    nxt: bye\n{OK_TAIL}"
        ),
        &[
            "t.yaml:7:7: error: unknown key 'ring_timout' in connect applet 'a' (did you mean 'ring_timeout'?)",
            "t.yaml:8:5: error: unknown key 'nxt' in applet 'a' (did you mean 'next'?)",
        ],
    );
}

#[test]
fn transition_to_an_applet_that_does_not_exist() {
    check(
        "flow: f\nstart: bot\napplets:\n  bot:\n    connect: { to: sip:trunk_1 }\n    on:\n      completed: sorry\n      no_answer: sory\n      transfer: sorry\n  sorry:\n    hangup: {}\n",
        &[
            "t.yaml:8:18: error: outcome 'no_answer' of applet 'bot' goes to 'sory', which does not exist (did you mean 'sorry'?)",
        ],
    );
}

#[test]
fn next_and_cases_to_missing_applets() {
    check(
        "flow: f\nstart: r\napplets:\n  r:\n    switchcase:\n      cases: { a: nowhere }\n      default: gone\n  x:\n    passthru: { url: https://p.example/x }\n    next: r2\n",
        &[
            "t.yaml:6:19: error: case 'a' of applet 'r' goes to 'nowhere', which does not exist",
            "t.yaml:7:16: error: default of applet 'r' goes to 'gone', which does not exist",
            "t.yaml:10:11: error: 'next' of applet 'x' goes to 'r2', which does not exist (did you mean 'r'?)",
        ],
    );
}

#[test]
fn outcome_the_kind_does_not_have() {
    check(
        &format!(
            "flow: f\nstart: a\napplets:\n  a:\n    connect: {{ to: sip:t }}\n    on: {{ answered: bye, completed: bye, no_answer: bye, transfer: bye }}\n{OK_TAIL}"
        ),
        &[
            "t.yaml:6:11: error: applet 'a': connect has no outcome 'answered'; its outcomes are completed, no_answer, busy, failed, not_dialed, transfer",
        ],
    );
    check(
        &format!(
            "flow: f\nstart: a\napplets:\n  a:\n    passthru: {{ url: https://p.example/h }}\n    on: {{ okay: bye, \"200\": bye, fail: bye }}\n{OK_TAIL}"
        ),
        &[
            "t.yaml:6:11: error: applet 'a': passthru has no outcome 'okay' (did you mean 'ok'?); its outcomes are ok, fail and HTTP statuses from 300 to 599 such as \"302\"",
            "t.yaml:6:22: error: applet 'a': passthru outcome '200' is never taken: every 2xx status takes 'ok'",
        ],
    );
}

#[test]
fn hangup_and_switchcase_take_no_on() {
    check(
        "flow: f\nstart: a\napplets:\n  a:\n    hangup: {}\n    on: { ok: a }\n",
        &["t.yaml:6:5: error: hangup applet 'a' ends the flow and has no outcomes: remove 'on'"],
    );
    check(
        &format!(
            "flow: f\nstart: a\napplets:\n  a:\n    switchcase: {{ default: bye }}\n    next: bye\n{OK_TAIL}"
        ),
        &[
            "t.yaml:6:5: error: switchcase applet 'a' branches by its cases and default: remove 'next'",
        ],
    );
}

#[test]
fn on_and_next_together() {
    check(
        &format!(
            "flow: f\nstart: a\napplets:\n  a:\n    connect: {{ to: sip:t }}\n    on: {{ completed: bye }}\n    next: bye\n{OK_TAIL}"
        ),
        &["t.yaml:7:5: error: applet 'a' has both 'on' and 'next': use one"],
    );
}

#[test]
fn switchcase_without_default() {
    check(
        &format!(
            "flow: f\nstart: a\napplets:\n  a:\n    switchcase:\n      cases: {{ x: bye }}\n{OK_TAIL}"
        ),
        &["t.yaml:6:7: error: switchcase applet 'a' has no 'default': it is required"],
    );
}

fn with_headers(headers: &str) -> String {
    format!(
        "flow: f\nstart: a\napplets:\n  a:\n    connect:\n      to: sip:t\n      headers:\n{headers}    next: bye\n{OK_TAIL}"
    )
}

#[test]
fn more_than_three_headers() {
    check(
        &with_headers("        X-A: '1'\n        X-B: '2'\n        X-C: '3'\n        X-D: '4'\n"),
        &["t.yaml:11:9: error: applet 'a': 4 custom headers; at most 3 are allowed"],
    );
}

#[test]
fn more_than_200_bytes_of_static_headers() {
    let long = "v".repeat(190);
    check(
        &with_headers(&format!("        X-A: {long}\n        X-B: abcdefgh\n")),
        &["t.yaml:8:9: error: applet 'a': custom headers take 204 bytes; at most 200 are allowed"],
    );
}

#[test]
fn header_name_without_x() {
    check(
        &with_headers("        Param1: v\n"),
        &["t.yaml:8:9: error: applet 'a': header name 'Param1' must start with 'X-'"],
    );
}

#[test]
fn header_name_with_reserved_prefix() {
    check(
        &with_headers("        X-Callflow-CallSid: v\n"),
        &[
            "t.yaml:8:9: error: applet 'a': header name 'X-Callflow-CallSid' uses the reserved prefix 'X-Callflow-'",
        ],
    );
}

#[test]
fn reserved_prefixes_come_from_the_options() {
    let opts = CompileOptions {
        reserved_header_prefixes: vec!["X-Exotel-".into()],
    };
    let out = compile_str(
        "t.yaml".into(),
        &with_headers("        x-exotel-id: v\n"),
        &opts,
    );
    let lines: Vec<String> = out.diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "t.yaml:8:9: error: applet 'a': header name 'x-exotel-id' uses the reserved prefix 'X-Exotel-'"
        ]
    );
}

#[test]
fn header_with_crlf_or_bad_bytes() {
    check(
        &with_headers("        X-A: \"v\\r\\nVia: evil\"\n"),
        &[
            "t.yaml:8:14: error: applet 'a': header value of 'X-A' contains a carriage return (CR), which is not allowed in a header value",
        ],
    );
    check(
        &with_headers("        \"X-A B\": v\n"),
        &[
            "t.yaml:8:9: error: applet 'a': header name 'X-A B' contains a space, which is not allowed in a header name",
        ],
    );
    check(
        &with_headers("        X-A: \"bell\\a\"\n"),
        &[
            "t.yaml:8:14: error: applet 'a': header value of 'X-A' contains the control character U+0007, which is not allowed in a header value",
        ],
    );
}

#[test]
fn bad_duration() {
    check(
        &format!(
            "flow: f\nstart: a\napplets:\n  a:\n    connect: {{ to: sip:t, ring_timeout: 30 seconds }}\n    next: bye\n{OK_TAIL}"
        ),
        &[
            "t.yaml:5:41: error: invalid duration '30 seconds' for ring_timeout: use a number with a unit ms, s, m or h, e.g. 30s or 1h30m",
        ],
    );
    check(
        &format!(
            "flow: f\nstart: a\napplets:\n  a:\n    passthru: {{ url: https://p.example/, timeout: 30 }}\n    next: bye\n{OK_TAIL}"
        ),
        &["t.yaml:5:51: error: invalid duration '30' for timeout: add a unit, e.g. 30s"],
    );
}

#[test]
fn bad_url() {
    check(
        &format!(
            "flow: f\nstart: a\napplets:\n  a:\n    passthru: {{ url: ftp://p.example/x }}\n    next: bye\n{OK_TAIL}"
        ),
        &[
            "t.yaml:5:22: error: invalid URL 'ftp://p.example/x' for url: scheme 'ftp' is not allowed: use http or https",
        ],
    );
    check(
        &format!("flow: f\nstart: bye\nstatus_callback: not a url\napplets:\n{OK_TAIL}"),
        &[
            "t.yaml:3:18: error: invalid URL 'not a url' for status_callback: relative URL without a base",
        ],
    );
}

#[test]
fn bad_rhai_expression() {
    check(
        &format!(
            "flow: f\nstart: a\napplets:\n  a:\n    switchcase:\n      value: passthru.select +\n      default: bye\n{OK_TAIL}"
        ),
        &["t.yaml:6:31: error: invalid expression in value: Script is incomplete"],
    );
    check(
        &format!(
            "flow: f\nstart: a\napplets:\n  a:\n    switchcase:\n      value: pasthru.select\n      default: bye\n{OK_TAIL}"
        ),
        &[
            "t.yaml:6:14: error: invalid expression in value: unknown variable 'pasthru': expressions can read call, connect, passthru, refer",
        ],
    );
}

#[test]
fn bad_template_in_header_and_url() {
    check(
        &with_headers("        X-A: \"id ${call.sid +}\"\n"),
        &["t.yaml:8:30: error: invalid expression in header 'X-A': Script is incomplete"],
    );
    check(
        &format!(
            "flow: f\nstart: a\napplets:\n  a:\n    passthru: {{ url: \"https://p.example/${{call.sid\" }}\n    next: bye\n{OK_TAIL}"
        ),
        &["t.yaml:5:41: error: invalid expression in url: unterminated '${': add the closing '}'"],
    );
}

#[test]
fn cycle_that_never_waits() {
    check(
        "flow: f\nstart: a\napplets:\n  a:\n    switchcase: { default: b }\n  b:\n    switchcase: { default: a }\n",
        &[
            "t.yaml:4:3: error: applets 'a', 'b' form a cycle that never waits on the caller or the network: the flow would spin forever",
        ],
    );
    check(
        "flow: f\nstart: a\napplets:\n  a:\n    passthru: { url: https://p.example/, async: true }\n    next: a\n",
        &[
            "t.yaml:4:3: error: applets 'a' form a cycle that never waits on the caller or the network: the flow would spin forever",
        ],
    );
}

#[test]
fn cycle_through_a_waiting_applet_is_fine() {
    check(
        "flow: f\nstart: a\napplets:\n  a:\n    passthru: { url: https://p.example/ }\n    next: b\n  b:\n    switchcase: { default: a }\n",
        &[],
    );
}

#[test]
fn unreachable_applet_is_a_warning() {
    let src = format!("flow: f\nstart: bye\napplets:\n  lost:\n    hangup: {{}}\n{OK_TAIL}");
    check(
        &src,
        &["t.yaml:4:3: warning: applet 'lost' is never reached from start applet 'bye'"],
    );
    assert!(
        compile_str("t.yaml".into(), &src, &CompileOptions::default())
            .flow
            .is_some()
    );
}

#[test]
fn outcome_without_transition_is_a_warning() {
    let src = format!(
        "flow: f\nstart: a\napplets:\n  a:\n    connect: {{ dynamic_url: https://p.example/r }}\n    on: {{ completed: bye }}\n{OK_TAIL}"
    );
    check(
        &src,
        &[
            "t.yaml:4:3: warning: connect applet 'a' has no transition for outcome 'no_answer', 'not_dialed', 'transfer': the flow hangs up there",
        ],
    );
    assert!(
        compile_str("t.yaml".into(), &src, &CompileOptions::default())
            .flow
            .is_some()
    );
}

#[test]
fn connect_needs_exactly_one_of_to_and_dynamic_url() {
    check(
        &format!(
            "flow: f\nstart: a\napplets:\n  a:\n    connect: {{ ring_timeout: 5s }}\n    next: bye\n{OK_TAIL}"
        ),
        &["t.yaml:5:14: error: connect applet 'a' needs 'to' or 'dynamic_url'"],
    );
    check(
        &format!(
            "flow: f\nstart: a\napplets:\n  a:\n    connect: {{ to: sip:t, dynamic_url: https://p.example/ }}\n    next: bye\n{OK_TAIL}"
        ),
        &["t.yaml:5:27: error: connect applet 'a' has both 'to' and 'dynamic_url': use one"],
    );
    check(
        &format!(
            "flow: f\nstart: a\napplets:\n  a:\n    connect: {{ to: sip:t, fallback_url: https://p.example/ }}\n    next: bye\n{OK_TAIL}"
        ),
        &["t.yaml:5:27: error: connect applet 'a': 'fallback_url' needs 'dynamic_url'"],
    );
}

#[test]
fn bad_connect_target() {
    check(
        &format!(
            "flow: f\nstart: a\napplets:\n  a:\n    connect:\n      to: [sip:t, agent7, +12]\n    next: bye\n{OK_TAIL}"
        ),
        &[
            "t.yaml:6:19: error: invalid connect target 'agent7': use sip:<trunk_sid>, a SIP URI or an E.164 number such as +918047112233",
            "t.yaml:6:27: error: invalid connect target '+12': an E.164 number is '+' and 7 to 15 digits; use sip:<trunk_sid>, a SIP URI or an E.164 number such as +918047112233",
        ],
    );
}

#[test]
fn bad_hangup_status_and_types() {
    check(
        "flow: f\nstart: a\napplets:\n  a:\n    hangup: { status: 200 }\n",
        &["t.yaml:5:23: error: status must be a whole number from 400 to 699, not '200'"],
    );
    check(
        &format!(
            "flow: f\nstart: a\napplets:\n  a:\n    connect: {{ to: sip:t, parallel_ringing: yes }}\n    next: bye\n{OK_TAIL}"
        ),
        &["t.yaml:5:45: error: parallel_ringing must be true or false"],
    );
}

#[test]
fn every_error_in_a_file_is_reported() {
    let out = diags(
        "flow: f\nstart: a\napplets:\n  a:\n    connect: { to: sip:t, ring_timeout: x }\n    on: { completed: nowhere }\n  b:\n    hangup: { status: 1 }\n  c:\n    conect: {}\n",
    );
    assert_eq!(out.len(), 4, "{out:#?}");
}

#[test]
fn yaml_aliases_and_duplicate_keys_are_refused() {
    check(
        &format!("flow: f\nstart: bye\nstart: bye\napplets:\n{OK_TAIL}"),
        &["t.yaml:3:1: error: duplicate key 'start' (first at line 2, column 1)"],
    );
    check(
        &format!("flow: &id f\nstart: bye\napplets:\n{OK_TAIL}"),
        &["t.yaml:1:11: error: YAML anchors are not supported in flow files"],
    );
}
