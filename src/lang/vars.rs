//! The call's variables that expressions read (docs/architecture.md §3): `call.*`, `connect.*`,
//! `passthru.*`, `refer.*`.

use std::sync::Arc;

use rhai::{Dynamic, EvalAltResult, Map, Scope};

use super::expr::{Reads, Template};

/// The variables of one call, updated as applets run.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    /// `call.sid`, `call.from`, `call.to`, `call.direction`, `call.custom_field`.
    pub call: Map,
    /// `call.headers`: the INVITE's headers, shared with the call's [`CallInfo`]; the
    /// map expressions read is made when a [`Vars::scope_for`] is (a rhai map of a dozen
    /// headers held for a whole call was a tenth of a held call's memory).
    pub call_headers: CallHeaders,
    /// `connect.status`, `connect.duration`, `connect.dialed`.
    pub connect: Map,
    /// `passthru.status`, `passthru.body`, `passthru.select`.
    pub passthru: Map,
    /// `refer.to`, `refer.headers`.
    pub refer: Map,
}

/// Facts about a call that do not change while it runs.
#[derive(Debug, Clone, Default)]
pub struct CallInfo {
    /// The call's sid.
    pub sid: String,
    /// The caller's number.
    pub from: String,
    /// The dialled number.
    pub to: String,
    /// `incoming`, `outbound-dial` or `outbound-api`.
    pub direction: String,
    /// Free text the partner attached to the call.
    pub custom_field: String,
    /// The partner's trunk, on a partner's call to the PSTN (its
    /// `X-Callflow-TrunkSid`).
    pub trunk: Option<String>,
    /// The account the call belongs to (its trunk's), if any.
    pub account: Option<String>,
    /// The inbound INVITE's headers.
    pub headers: CallHeaders,
}

/// Headers the flow's expressions read as `call.headers`.
pub trait HeaderList: std::fmt::Debug + Send + Sync {
    /// Calls `f` with each header's name and value, in order.
    fn each(&self, f: &mut dyn FnMut(&str, &str));
}

impl HeaderList for Vec<(String, String)> {
    fn each(&self, f: &mut dyn FnMut(&str, &str)) {
        for (n, v) in self {
            f(n, v);
        }
    }
}

/// A call's headers, shared by whatever keeps them (the call's request itself, for
/// an inbound call: no copy is made).
#[derive(Debug, Clone)]
pub struct CallHeaders(pub Arc<dyn HeaderList>);

impl Default for CallHeaders {
    fn default() -> Self {
        CallHeaders(Arc::new(Vec::new()))
    }
}

impl Vars {
    /// Variables for a new call.
    pub fn new(info: &CallInfo) -> Vars {
        let mut call = Map::new();
        call.insert("sid".into(), info.sid.clone().into());
        call.insert("from".into(), info.from.clone().into());
        call.insert("to".into(), info.to.clone().into());
        call.insert("direction".into(), info.direction.clone().into());
        call.insert("custom_field".into(), info.custom_field.clone().into());
        Vars {
            call,
            call_headers: info.headers.clone(),
            ..Vars::default()
        }
    }

    /// `call.*` with `call.headers` (names in lower case).
    fn call_map(&self) -> Map {
        let mut headers = Map::new();
        self.call_headers.0.each(&mut |n, v| {
            headers.insert(n.to_ascii_lowercase().into(), v.into());
        });
        let mut call = self.call.clone();
        call.insert("headers".into(), headers.into());
        call
    }

    /// Renders templates against these variables, making their scope only when a
    /// template has an expression in it.
    pub fn renderer(&self) -> Renderer<'_> {
        Renderer {
            vars: self,
            scope: Scope::new(),
            has: Reads::default(),
        }
    }

    /// A scope holding the variables in `reads`, for an expression that reads those.
    pub fn scope_for(&self, reads: Reads) -> Scope<'static> {
        let mut scope = Scope::new();
        self.fill(&mut scope, reads);
        scope
    }

    /// Adds the variables in `reads` to `scope`.
    fn fill(&self, scope: &mut Scope<'static>, reads: Reads) {
        if reads.has("call") {
            scope.push_constant("call", self.call_map());
        }
        for (name, map) in [
            ("connect", &self.connect),
            ("passthru", &self.passthru),
            ("refer", &self.refer),
        ] {
            if reads.has(name) {
                scope.push_constant(name, map.clone());
            }
        }
    }

    /// Records a passthru answer: status, the body parsed as JSON (whatever its
    /// content type) and its `select` field.
    pub fn set_passthru(&mut self, status: u16, body: &[u8]) {
        self.passthru.clear();
        self.passthru
            .insert("status".into(), Dynamic::from(i64::from(status)));
        let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let select = json
            .as_ref()
            .and_then(|j| j.get("select"))
            .map(|s| match s {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_default();
        let body = json
            .and_then(|j| rhai::serde::to_dynamic(j).ok())
            .unwrap_or(Dynamic::UNIT);
        self.passthru.insert("body".into(), body);
        self.passthru.insert("select".into(), select.into());
    }

    /// Records a connect's result.
    pub fn set_connect(&mut self, status: &str, duration_secs: u64, dialed: &str) {
        self.connect.insert("status".into(), status.into());
        self.connect
            .insert("duration".into(), Dynamic::from(duration_secs as i64));
        self.connect.insert("dialed".into(), dialed.into());
    }

    /// Records a REFER's target and `X-` headers.
    pub fn set_refer(&mut self, to: &str, headers: &[(String, String)]) {
        self.refer.insert("to".into(), to.into());
        let mut h = Map::new();
        for (n, v) in headers {
            h.insert(n.clone().into(), v.clone().into());
        }
        self.refer.insert("headers".into(), h.into());
    }
}

/// Renders templates with a call's variables: the rhai scope gets each variable (the
/// `call` map with its headers, `connect`, `passthru`, `refer`) when the first
/// template that reads it is rendered, and shares it with the next ones.
pub struct Renderer<'a> {
    /// The variables.
    vars: &'a Vars,
    /// Their scope, as far as it is made.
    scope: Scope<'static>,
    /// The variables in the scope.
    has: Reads,
}

impl Renderer<'_> {
    /// Renders `template`.
    pub fn render(&mut self, template: &Template) -> Result<String, Box<EvalAltResult>> {
        if template.is_static() {
            return Ok(template.literal_text());
        }
        let missing = template.reads().without(self.has);
        if !missing.is_empty() {
            self.vars.fill(&mut self.scope, missing);
            self.has = self.has.union(missing);
        }
        template.render(&mut self.scope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The renderer's scope gets each variable when a template first reads it, and
    /// keeps it for the next templates.
    #[test]
    fn a_renderer_adds_variables_as_templates_read_them() {
        let info = CallInfo {
            to: "+9180".into(),
            headers: CallHeaders(Arc::new(vec![("X-Lang".to_string(), "hi".to_string())])),
            ..CallInfo::default()
        };
        let mut vars = Vars::new(&info);
        vars.set_connect("busy", 0, "sip:a@b");
        let mut r = vars.renderer();
        let t = |s: &str| Template::compile(s).unwrap();
        assert_eq!(r.render(&t("${connect.status}")).unwrap(), "busy");
        assert_eq!(r.render(&t("plain")).unwrap(), "plain");
        assert_eq!(
            r.render(&t(
                "${call.to}/${call.headers[\"x-lang\"]}/${connect.dialed}"
            ))
            .unwrap(),
            "+9180/hi/sip:a@b"
        );
        assert!(r.has.has("call") && !r.has.has("refer"));
    }
}
