//! The parameters of a connect applet, its outcomes, and how they are decoded from a
//! flow file.

use std::time::Duration;

use crate::applets::DecodeContext;
use crate::lang::decode::{self, MapReader};
use crate::lang::diagnostic::Diagnostics;
use crate::lang::expr::Template;
use crate::lang::headers;
use crate::lang::number::is_e164_digits;
use crate::lang::yaml::{Node, NodeKind};
use crate::runtime::Step;

/// The kind's name in flow files.
pub const NAME: &str = "connect";

/// What a connect applet yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A leg answered, then the far end hung up.
    Completed,
    /// Nobody answered: timeout, rejected, unreachable.
    NoAnswer,
    /// The far end was busy (486, 600).
    Busy,
    /// No leg could be placed (a template, the header limits, a webhook).
    Failed,
    /// The dynamic URL gave no destination.
    NotDialed,
    /// The far end sent REFER.
    Transfer,
}

impl Outcome {
    /// Every outcome, in the order the reference page lists them.
    pub const ALL: [Outcome; 6] = [
        Outcome::Completed,
        Outcome::NoAnswer,
        Outcome::Busy,
        Outcome::Failed,
        Outcome::NotDialed,
        Outcome::Transfer,
    ];

    /// The name flows write under `on:`.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::NoAnswer => "no_answer",
            Outcome::Busy => "busy",
            Outcome::Failed => "failed",
            Outcome::NotDialed => "not_dialed",
            Outcome::Transfer => "transfer",
        }
    }

    /// The value of `connect.status` and the webhooks' `DialCallStatus` (Exotel's
    /// spelling, with hyphens).
    pub fn dial_status(self) -> &'static str {
        match self {
            Outcome::Completed | Outcome::Transfer => "completed",
            Outcome::NoAnswer => "no-answer",
            Outcome::Busy => "busy",
            Outcome::Failed => "failed",
            Outcome::NotDialed => "not-dialed",
        }
    }
}

impl From<Outcome> for Step {
    fn from(o: Outcome) -> Step {
        Step::outcome(o.name())
    }
}

/// Every outcome name a connect applet can yield.
pub fn outcome_names() -> Vec<&'static str> {
    Outcome::ALL.iter().map(|o| o.name()).collect()
}

/// The keys its body may hold.
pub const KEYS: [&str; 10] = [
    "to",
    "dynamic_url",
    "fallback_url",
    "headers",
    "ring_timeout",
    "max_duration",
    "caller_id",
    "parallel_ringing",
    "record",
    "recording_channels",
];

/// How long a leg may ring when the flow does not say.
pub const DEFAULT_RING_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a bridged call may last when the flow does not say.
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(4 * 3600);

/// The parameters of a connect applet.
#[derive(Debug, Clone)]
pub struct Connect {
    /// Whom to dial.
    pub dial: Dial,
    /// Custom `X-` headers on the placed leg, in the order written.
    pub headers: Vec<CustomHeader>,
    /// How long each attempt may ring.
    pub ring_timeout: Duration,
    /// Longest the bridged call may last; both legs are hung up at the limit.
    pub max_duration: Duration,
    /// Caller id to present instead of the caller's number.
    pub caller_id: Option<Template>,
    /// Ring every target of a list at once instead of in turn.
    pub parallel_ringing: bool,
    /// Record the call from the leg's answer to the call's end: `Some(dual)`
    /// (caller left, far party right) or `Some(false)` (one mixed channel).
    pub record: Option<bool>,
}

impl Default for Connect {
    /// Dials nobody, with the default timeouts: fill in `dial`.
    fn default() -> Connect {
        Connect {
            dial: Dial::To(Vec::new()),
            headers: Default::default(),
            ring_timeout: DEFAULT_RING_TIMEOUT,
            max_duration: DEFAULT_MAX_DURATION,
            caller_id: None,
            parallel_ringing: false,
            record: None,
        }
    }
}

/// Where a connect applet finds whom to dial.
#[derive(Debug, Clone)]
pub enum Dial {
    /// Targets written in the flow, tried in order (or at once with parallel ringing).
    To(Vec<Target>),
    /// Asked of the partner's dynamic URL when the applet runs.
    Dynamic {
        /// The dynamic URL.
        url: Template,
        /// Asked when the dynamic URL fails.
        fallback: Option<Template>,
    },
}

/// One thing to dial.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// `sip:<trunk_sid>`: the trunk's destinations, in priority order.
    Trunk(String),
    /// A SIP or SIPS URI, dialled as it is.
    Uri(String),
    /// An E.164 number, dialled through the carriers.
    Number(String),
    /// A template (for example `${refer.to}`), resolved to one of the above when the
    /// applet runs.
    Template(String),
}

/// A custom header on the placed leg.
#[derive(Debug, Clone)]
pub struct CustomHeader {
    /// The header name, `X-…`.
    pub name: String,
    /// The value, which may hold `${...}` expressions.
    pub value: Template,
}

/// Decodes a connect body.
pub fn decode(body: &Node, cx: DecodeContext<'_>, d: &mut Diagnostics) -> Option<Connect> {
    let what = format!("connect applet '{}'", cx.applet);
    let mut m = MapReader::new(body, &what, d)?;
    let errors_before = d.error_count();
    let to = m.take("to");
    let dynamic = m.take("dynamic_url");
    let fallback = m.take("fallback_url");
    let dial = match (to, dynamic) {
        (Some(_), Some((k, _))) => {
            d.error(
                k.pos,
                format!("{what} has both 'to' and 'dynamic_url': use one"),
            );
            None
        }
        (Some((_, v)), None) => {
            if let Some((k, _)) = fallback {
                d.error(k.pos, format!("{what}: 'fallback_url' needs 'dynamic_url'"));
            }
            targets(v, d).map(Dial::To)
        }
        (None, Some((_, v))) => {
            let url = decode::url(v, "dynamic_url", d);
            let fallback = fallback.and_then(|(_, f)| decode::url(f, "fallback_url", d));
            url.map(|url| Dial::Dynamic { url, fallback })
        }
        (None, None) => {
            d.error(body.pos, format!("{what} needs 'to' or 'dynamic_url'"));
            None
        }
    };
    let headers = match m.take("headers") {
        Some((_, v)) => custom_headers(v, cx, d),
        None => Vec::new(),
    };
    let ring_timeout = m
        .take("ring_timeout")
        .and_then(|(_, v)| decode::duration(v, "ring_timeout", d))
        .unwrap_or(DEFAULT_RING_TIMEOUT);
    let max_duration = m
        .take("max_duration")
        .and_then(|(_, v)| decode::duration(v, "max_duration", d))
        .unwrap_or(DEFAULT_MAX_DURATION);
    let caller_id = m.take("caller_id").and_then(|(_, v)| caller_id(v, d));
    let parallel_ringing = m
        .take("parallel_ringing")
        .and_then(|(_, v)| decode::boolean(v, "parallel_ringing", d))
        .unwrap_or(false);
    let record = m
        .take("record")
        .and_then(|(_, v)| decode::boolean(v, "record", d))
        .unwrap_or(false);
    let dual = match m.take("recording_channels") {
        None => false,
        Some((_, v)) => match decode::string(v, "recording_channels", d) {
            Some("dual") => true,
            Some("single") | None => false,
            Some(other) => {
                d.error(
                    v.pos,
                    format!(
                        "recording_channels is 'single' or 'dual', not '{}'",
                        other.escape_default()
                    ),
                );
                false
            }
        },
    };
    m.finish(d, &KEYS, &what);
    let dial = dial?;
    (d.error_count() == errors_before).then_some(Connect {
        dial,
        headers,
        ring_timeout,
        max_duration,
        caller_id,
        parallel_ringing,
        record: record.then_some(dual),
    })
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Trunk(sid) => write!(f, "sip:{sid}"),
            Target::Uri(s) | Target::Number(s) | Target::Template(s) => f.write_str(s),
        }
    }
}

/// `to:` is one target or a non-empty list of them.
fn targets(node: &Node, d: &mut Diagnostics) -> Option<Vec<Target>> {
    let items: Vec<&Node> = match &node.kind {
        NodeKind::Seq(items) if items.is_empty() => {
            d.error(node.pos, "'to' is an empty list: name at least one target");
            return None;
        }
        NodeKind::Seq(items) => items.iter().collect(),
        _ => vec![node],
    };
    let parsed: Vec<Option<Target>> = items.into_iter().map(|n| target(n, d)).collect();
    parsed.into_iter().collect()
}

fn target(node: &Node, d: &mut Diagnostics) -> Option<Target> {
    let text = decode::string(node, "a connect target", d)?;
    if text.contains("${") {
        decode::template(node, "a connect target", d)?;
        return Some(Target::Template(text.to_string()));
    }
    match parse_target(text) {
        Ok(t) => Some(t),
        Err(why) => {
            d.error(
                node.pos,
                format!("invalid connect target '{}': {why}", text.escape_default()),
            );
            None
        }
    }
}

/// Reads a connect target: `sip:<trunk_sid>`, a SIP URI, or an E.164 number.
pub fn parse_target(text: &str) -> Result<Target, String> {
    let hint = "use sip:<trunk_sid>, a SIP URI or an E.164 number such as +918047112233";
    if let Some(digits) = text.strip_prefix('+') {
        return if is_e164_digits(digits) {
            Ok(Target::Number(text.to_string()))
        } else {
            Err(format!("an E.164 number is '+' and 7 to 15 digits; {hint}"))
        };
    }
    let lower = text.to_ascii_lowercase();
    let rest = if let Some(r) = lower.strip_prefix("sip:") {
        r
    } else if lower.starts_with("sips:") {
        check_sip_uri(&text[5..])?;
        return Ok(Target::Uri(text.to_string()));
    } else {
        return Err(hint.to_string());
    };
    let is_sid = !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if is_sid {
        return Ok(Target::Trunk(text[4..].to_string()));
    }
    check_sip_uri(&text[4..])?;
    Ok(Target::Uri(text.to_string()))
}

/// Checks what follows `sip:` or `sips:`: `[user@]host[:port][;params]`.
fn check_sip_uri(rest: &str) -> Result<(), String> {
    if let Some(c) = rest.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("a SIP URI cannot hold {:?}", c));
    }
    if rest.contains('?') {
        return Err("URI headers ('?…') are not allowed in a connect target".into());
    }
    let (main, params) = rest.split_once(';').unwrap_or((rest, ""));
    if params
        .split(';')
        .any(|p| p.is_empty() && !params.is_empty())
    {
        return Err("empty URI parameter".into());
    }
    let hostport = match main.rsplit_once('@') {
        Some(("", _)) => return Err("empty user part before '@'".into()),
        Some((_, hp)) => hp,
        None => main,
    };
    let (host, port) = split_host_port(hostport)?;
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Err(format!("port '{port}' is not a number from 1 to 65535")),
        }
    }
    if is_host(host) {
        Ok(())
    } else {
        Err(format!("'{host}' is not a host name or IP address"))
    }
}

fn split_host_port(hostport: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(v6) = hostport.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or("unclosed '[' in the host")?;
        addr.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("'{addr}' is not an IPv6 address"))?;
        return match after {
            "" => Ok((hostport, None)),
            p => p
                .strip_prefix(':')
                .map(|p| (hostport, Some(p)))
                .ok_or_else(|| "junk after ']'".to_string()),
        };
    }
    Ok(match hostport.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (hostport, None),
    })
}

fn is_host(host: &str) -> bool {
    if host.starts_with('[') {
        return true; // checked by split_host_port
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn caller_id(node: &Node, d: &mut Diagnostics) -> Option<Template> {
    let t = decode::template(node, "caller_id", d)?;
    if t.is_static() && !t.source.strip_prefix('+').is_some_and(is_e164_digits) {
        d.error(
            node.pos,
            format!(
                "caller_id '{}' is not an E.164 number such as +918047112233",
                t.source.escape_default()
            ),
        );
        return None;
    }
    Some(t)
}

/// `headers:` maps `X-` names to values; every limit of docs/architecture.md §3 is checked here
/// for what is known when the flow loads.
fn custom_headers(node: &Node, cx: DecodeContext<'_>, d: &mut Diagnostics) -> Vec<CustomHeader> {
    let what = format!("applet '{}'", cx.applet);
    let Some(m) = MapReader::new(node, "headers", d) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut literal_bytes = 0;
    for (i, (name, key, value)) in m.rest().enumerate() {
        if i == headers::MAX_CUSTOM_HEADERS {
            let err = headers::HeaderError::TooMany(m.rest().count());
            d.error(key.pos, format!("{what}: {err}"));
        }
        if let Err(err) = headers::check_name(name, cx.reserved_prefixes) {
            d.error(key.pos, format!("{what}: {err}"));
            continue;
        }
        let Some(value) =
            decode::template(value, &format!("header '{name}'"), d).map(|t| (t, value))
        else {
            continue;
        };
        let (template, value_node) = value;
        let literal = template.literal_text();
        if let Err(err) = headers::check_value(name, &literal) {
            d.error(value_node.pos, format!("{what}: {err}"));
            continue;
        }
        literal_bytes += headers::byte_count([(name, literal.as_str())]);
        out.push(CustomHeader {
            name: name.to_string(),
            value: template,
        });
    }
    if literal_bytes > headers::MAX_CUSTOM_HEADER_BYTES {
        let err = headers::HeaderError::TooLong(literal_bytes);
        d.error(node.pos, format!("{what}: {err}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_told_apart() {
        assert_eq!(
            parse_target("sip:trunk_2134"),
            Ok(Target::Trunk("trunk_2134".into()))
        );
        assert_eq!(
            parse_target("sip:agent1@10.0.0.7:5060"),
            Ok(Target::Uri("sip:agent1@10.0.0.7:5060".into()))
        );
        assert_eq!(
            parse_target("sips:bot.partner.example.com;transport=tls"),
            Ok(Target::Uri(
                "sips:bot.partner.example.com;transport=tls".into()
            ))
        );
        assert_eq!(
            parse_target("sip:[2001:db8::1]:5060"),
            Ok(Target::Uri("sip:[2001:db8::1]:5060".into()))
        );
        assert_eq!(
            parse_target("+918047112233"),
            Ok(Target::Number("+918047112233".into()))
        );
    }

    #[test]
    fn bad_targets_are_refused() {
        for bad in [
            "agent1",
            "+12",
            "+0123456789",
            "sip:a@",
            "sip:a b@host",
            "sip:host:99999",
            "sip:host?x=y",
            "sip:[zz::1]",
            "sip:-bad-.com",
            "tel:+918047112233",
        ] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }
}
