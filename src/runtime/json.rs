//! The call record written as JSON straight into one buffer: what `serde_json` writes
//! for the record's `Serialize` (the same fields, in the same order, escaped the same
//! way), without its per-byte escape loop or a buffer that grows by doubling. Every
//! call logs its record, so this runs once per call (BENCHMARKS.md, session 20).

use std::fmt::Write as _;

use super::record::{CallRecord, CallbackAttempt, LegTrace, StepTrace, WebhookTrace};

/// A value that writes itself as JSON.
pub trait WriteJson {
    /// Appends the JSON text of `self` to `out`.
    fn write_json(&self, out: &mut String);
}

/// Whether `s` holds nothing a JSON string escapes (`"`, `\` and the control
/// characters below U+0020). One pass without an early exit, which the compiler
/// does many bytes at a time: a record's strings nearly never need escaping.
fn is_plain(s: &str) -> bool {
    s.bytes()
        .fold(true, |ok, b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'))
}

/// Writes `s` as a JSON string, escaped as `serde_json` escapes it.
fn string(out: &mut String, s: &str) {
    out.push('"');
    if is_plain(s) {
        out.push_str(s);
    } else {
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if u32::from(c) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", u32::from(c));
                }
                c => out.push(c),
            }
        }
    }
    out.push('"');
}

/// Writes `n` in decimal, with `itoa` as `sip::uri::write_decimal` does.
fn number(out: &mut String, n: u64) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// Writes a JSON object's fields: `,"name":` before each but the first.
struct Object<'a> {
    /// Where the object is written.
    out: &'a mut String,
    /// Whether a field has been written.
    any: bool,
}

impl<'a> Object<'a> {
    /// Opens an object in `out`.
    fn open(out: &'a mut String) -> Object<'a> {
        out.push('{');
        Object { out, any: false }
    }

    /// Writes the key of the next field; its value is written next.
    fn key(&mut self, name: &str) -> &mut String {
        if self.any {
            self.out.push(',');
        }
        self.any = true;
        self.out.push('"');
        self.out.push_str(name);
        self.out.push_str("\":");
        self.out
    }

    /// Writes a string field.
    fn str(&mut self, name: &str, value: &str) -> &mut Self {
        string(self.key(name), value);
        self
    }

    /// Writes a string field that may be `null`.
    fn opt_str(&mut self, name: &str, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => string(self.key(name), v),
            None => self.key(name).push_str("null"),
        }
        self
    }

    /// Writes a number field.
    fn num(&mut self, name: &str, value: u64) -> &mut Self {
        number(self.key(name), value);
        self
    }

    /// Writes a number field that may be `null`.
    fn opt_num(&mut self, name: &str, value: Option<u16>) -> &mut Self {
        match value {
            Some(v) => number(self.key(name), u64::from(v)),
            None => self.key(name).push_str("null"),
        }
        self
    }

    /// Writes an array field.
    fn list<T: WriteJson>(&mut self, name: &str, items: &[T]) -> &mut Self {
        let out = self.key(name);
        out.push('[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            item.write_json(out);
        }
        out.push(']');
        self
    }

    /// Closes the object.
    fn close(&mut self) {
        self.out.push('}');
    }
}

impl WriteJson for String {
    fn write_json(&self, out: &mut String) {
        string(out, self);
    }
}

impl WriteJson for WebhookTrace {
    fn write_json(&self, out: &mut String) {
        Object::open(out)
            .str("url", &self.url)
            .opt_num("status", self.status)
            .num("latency_ms", self.latency_ms)
            .opt_str("error", self.error.as_deref())
            .close();
    }
}

impl WriteJson for LegTrace {
    fn write_json(&self, out: &mut String) {
        Object::open(out)
            .str("leg_sid", &self.leg_sid)
            .str("to", &self.to)
            .str("result", &self.result)
            .num("duration_secs", self.duration_secs)
            .close();
    }
}

impl WriteJson for StepTrace {
    fn write_json(&self, out: &mut String) {
        Object::open(out)
            .str("applet", &self.applet)
            .str("kind", self.kind)
            .str("outcome", &self.outcome)
            .num("started_ms", self.started_ms)
            .num("duration_ms", self.duration_ms)
            .list("webhooks", &self.webhooks)
            .list("legs", &self.legs)
            .list("notes", &self.notes)
            .close();
    }
}

impl WriteJson for CallbackAttempt {
    fn write_json(&self, out: &mut String) {
        Object::open(out)
            .str("url", &self.url)
            .opt_num("status", self.status)
            .opt_str("error", self.error.as_deref())
            .num("at_unix", self.at_unix)
            .close();
    }
}

impl WriteJson for CallRecord {
    fn write_json(&self, out: &mut String) {
        let mut o = Object::open(out);
        o.str("call_sid", &self.call_sid)
            .opt_str("account_sid", self.account_sid.as_deref())
            .str("flow_id", &self.flow_id)
            .str("from", &self.from)
            .str("to", &self.to)
            .str("direction", &self.direction)
            .str("custom_field", &self.custom_field)
            .str("status", self.status.as_str())
            .num("created_unix", self.created_unix)
            .num("duration_secs", self.duration_secs);
        o.key("record")
            .push_str(if self.record { "true" } else { "false" });
        o.opt_str("recording_channels", self.recording_channels.as_deref())
            .opt_str("recording_url", self.recording_url.as_deref())
            .opt_str("recording_error", self.recording_error.as_deref())
            .list("steps", &self.steps)
            .list("callbacks", &self.callbacks)
            .close();
    }
}

impl CallRecord {
    /// The record as one line of JSON, as `serde_json::to_string` writes it.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(self.json_size_hint());
        self.write_json(&mut out);
        out
    }

    /// About how long the record's JSON is: its strings' lengths and room for the
    /// field names, so that writing it does not grow the buffer.
    fn json_size_hint(&self) -> usize {
        let step = |s: &StepTrace| {
            160 + s.applet.len()
                + s.outcome.len()
                + s.webhooks.iter().map(|w| 80 + w.url.len()).sum::<usize>()
                + s.legs
                    .iter()
                    .map(|l| 80 + l.leg_sid.len() + l.to.len() + l.result.len())
                    .sum::<usize>()
                + s.notes.iter().map(|n| 4 + n.len()).sum::<usize>()
        };
        400 + self.call_sid.len()
            + self.flow_id.len()
            + self.from.len()
            + self.to.len()
            + self.custom_field.len()
            + self.steps.iter().map(step).sum::<usize>()
            + self
                .callbacks
                .iter()
                .map(|c| 80 + c.url.len())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::runtime::record::CallStatus;

    /// Text with what JSON escapes mixed in: quotes, backslashes, every control
    /// character, DEL, non-ASCII and U+2028 (which serde_json leaves alone).
    fn text() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just('"'),
                Just('\\'),
                (0u32..0x20).prop_map(|c| char::from_u32(c).unwrap_or('?')),
                Just('\u{7f}'),
                Just('é'),
                Just('\u{2028}'),
                Just('🙂'),
                proptest::char::range('a', 'z'),
            ],
            0..12,
        )
        .prop_map(|cs| cs.into_iter().collect())
    }

    fn webhook() -> impl Strategy<Value = WebhookTrace> {
        (
            text(),
            proptest::option::of(any::<u16>()),
            any::<u64>(),
            proptest::option::of(text()),
        )
            .prop_map(|(url, status, latency_ms, error)| WebhookTrace {
                url,
                status,
                latency_ms,
                error,
            })
    }

    fn leg() -> impl Strategy<Value = LegTrace> {
        (text(), text(), text(), any::<u64>()).prop_map(|(leg_sid, to, result, duration_secs)| {
            LegTrace {
                leg_sid,
                to,
                result,
                duration_secs,
            }
        })
    }

    fn step() -> impl Strategy<Value = StepTrace> {
        (
            text(),
            prop_oneof![Just("connect"), Just("passthru")],
            text(),
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(webhook(), 0..3),
            proptest::collection::vec(leg(), 0..3),
            proptest::collection::vec(text(), 0..3),
        )
            .prop_map(
                |(applet, kind, outcome, started_ms, duration_ms, webhooks, legs, notes)| {
                    StepTrace {
                        applet,
                        kind,
                        outcome,
                        started_ms,
                        duration_ms,
                        webhooks,
                        legs,
                        notes,
                    }
                },
            )
    }

    fn attempt() -> impl Strategy<Value = CallbackAttempt> {
        (
            text(),
            proptest::option::of(any::<u16>()),
            proptest::option::of(text()),
            any::<u64>(),
        )
            .prop_map(|(url, status, error, at_unix)| CallbackAttempt {
                url,
                status,
                error,
                at_unix,
            })
    }

    fn record() -> impl Strategy<Value = CallRecord> {
        (
            (
                text(),
                proptest::option::of(text()),
                text(),
                text(),
                text(),
                text(),
                text(),
            ),
            (
                prop_oneof![
                    Just(CallStatus::Completed),
                    Just(CallStatus::Failed),
                    Just(CallStatus::Busy),
                    Just(CallStatus::NoAnswer),
                    Just(CallStatus::Canceled),
                ],
                any::<u64>(),
                any::<u64>(),
                any::<bool>(),
                proptest::option::of(text()),
                proptest::option::of(text()),
                proptest::option::of(text()),
            ),
            proptest::collection::vec(step(), 0..4),
            proptest::collection::vec(attempt(), 0..3),
        )
            .prop_map(|(who, how, steps, callbacks)| {
                let (call_sid, account_sid, flow_id, from, to, direction, custom_field) = who;
                let (status, created_unix, duration_secs, record, channels, url, error) = how;
                CallRecord {
                    call_sid,
                    account_sid,
                    flow_id,
                    from,
                    to,
                    direction,
                    custom_field,
                    status,
                    created_unix,
                    duration_secs,
                    record,
                    recording_channels: channels,
                    recording_url: url,
                    recording_error: error,
                    steps,
                    callbacks,
                }
            })
    }

    proptest! {
        /// Any record is written exactly as `serde_json` writes its `Serialize`.
        #[test]
        fn records_are_what_serde_json_writes(r in record()) {
            let serde = serde_json::to_string(&r).unwrap();
            prop_assert_eq!(r.to_json(), serde);
        }
    }

    /// A hand-off's record fits the size guessed for it: the buffer is not grown.
    #[test]
    fn a_usual_record_fits_its_size_hint() {
        let mut r = CallRecord {
            call_sid: "CA0123456789abcdef0123456789abcdef".into(),
            account_sid: Some("AC0123456789abcdef".into()),
            flow_id: "handoff".into(),
            from: "+919876543210".into(),
            to: "+918047112233".into(),
            direction: "inbound".into(),
            custom_field: String::new(),
            status: CallStatus::Completed,
            created_unix: 1_764_500_000,
            duration_secs: 4,
            record: false,
            recording_channels: None,
            recording_url: None,
            recording_error: None,
            steps: Vec::new(),
            callbacks: Vec::new(),
        };
        for (applet, kind) in [
            ("bot", "connect"),
            ("handoff", "passthru"),
            ("agent", "connect"),
        ] {
            let mut s = StepTrace::new(applet, kind);
            s.outcome = "completed".into();
            s.webhooks.push(WebhookTrace {
                url: "http://127.0.0.1:8080/route".into(),
                status: Some(200),
                latency_ms: 3,
                error: None,
            });
            s.legs.push(LegTrace {
                leg_sid: "CA0123456789abcdef0123456789abcdef".into(),
                to: "sip:agent@127.0.0.1:5070".into(),
                result: "answered".into(),
                duration_secs: 2,
            });
            r.steps.push(s);
        }
        let json = r.to_json();
        assert!(
            json.len() <= r.json_size_hint(),
            "{} > {}",
            json.len(),
            r.json_size_hint()
        );
        assert_eq!(json, serde_json::to_string(&r).unwrap());
    }
}
