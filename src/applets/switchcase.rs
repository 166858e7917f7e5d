//! Switchcase: evaluate a rhai expression over the call's variables and branch on its
//! value. Outcomes: one per case, and `default` (required).

use super::DecodeContext;
use crate::flow::decode::{self, MapReader};
use crate::flow::diagnostic::Diagnostics;
use crate::flow::expr::Expr;
use crate::flow::yaml::{Node, Pos};

/// The keys its body may hold.
pub const KEYS: [&str; 3] = ["value", "cases", "default"];

/// The expression used when the flow names none.
pub const DEFAULT_VALUE: &str = "passthru.select";

/// The outcome taken when no case matches.
pub const DEFAULT_OUTCOME: &str = "default";

/// A transition written inside the applet's body: a case or the default.
#[derive(Debug, Clone)]
pub struct Branch {
    /// The case value (or `default`), which is also the outcome's name.
    pub outcome: String,
    /// The applet it goes to.
    pub target: String,
    /// Where the target is written.
    pub pos: Pos,
}

/// The parameters of a switchcase applet.
#[derive(Debug, Clone)]
pub struct Switchcase {
    /// The expression whose value selects the case.
    pub value: Expr,
    /// Case values and where they go, in the order written.
    pub cases: Vec<Branch>,
    /// Where to go when no case matches.
    pub default: Branch,
}

impl Switchcase {
    /// Decodes a switchcase body.
    pub fn decode(body: &Node, cx: DecodeContext<'_>, d: &mut Diagnostics) -> Option<Switchcase> {
        let what = format!("switchcase applet '{}'", cx.applet);
        let mut m = MapReader::new(body, &what, d)?;
        let value = match m.take("value") {
            Some((_, v)) => decode::expr(v, "value", d),
            None => Expr::compile(DEFAULT_VALUE).ok(),
        };
        let cases = match m.take("cases") {
            Some((_, v)) => cases(v, d),
            None => Some(Vec::new()),
        };
        let default = match m.take("default") {
            Some((_, v)) => decode::string(v, "default", d).map(|t| Branch {
                outcome: DEFAULT_OUTCOME.to_string(),
                target: t.to_string(),
                pos: v.pos,
            }),
            None => {
                d.error(body.pos, format!("{what} has no 'default': it is required"));
                None
            }
        };
        m.finish(d, &KEYS, &what);
        Some(Switchcase {
            value: value?,
            cases: cases?,
            default: default?,
        })
    }

    /// Every branch, cases first, then the default.
    pub fn branches(&self) -> impl Iterator<Item = &Branch> {
        self.cases.iter().chain(std::iter::once(&self.default))
    }
}

fn cases(node: &Node, d: &mut Diagnostics) -> Option<Vec<Branch>> {
    let m = MapReader::new(node, "cases", d)?;
    let mut out = Vec::new();
    let mut ok = true;
    for (value, key, target) in m.rest() {
        if value == DEFAULT_OUTCOME {
            d.error(
                key.pos,
                "a case may not be named 'default': write the default branch under 'default'",
            );
            ok = false;
            continue;
        }
        match decode::string(target, &format!("case '{value}'"), d) {
            Some(t) => out.push(Branch {
                outcome: value.to_string(),
                target: t.to_string(),
                pos: target.pos,
            }),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// Runs the applet: the case whose value equals the expression's, else `default`
/// (also when the expression fails on the live call; the trace says why).
pub fn run<C: crate::flow::executor::CallControl, H: crate::flow::executor::Http>(
    s: &Switchcase,
    rt: &mut crate::flow::executor::Runtime<'_, C, H>,
) -> crate::flow::executor::Step {
    use crate::flow::executor::Step;
    let mut scope = rt.vars.scope();
    let value = match s.value.eval(&mut scope) {
        Ok(v) if v.is_unit() => String::new(),
        Ok(v) => v.to_string(),
        Err(e) => {
            rt.step.notes.push(format!(
                "value '{}' failed: {e}; taking default",
                s.value.source
            ));
            return Step::Outcome(DEFAULT_OUTCOME.into());
        }
    };
    rt.step.notes.push(format!("value = {value:?}"));
    match s.cases.iter().find(|c| c.outcome == value) {
        Some(c) => Step::Outcome(c.outcome.clone()),
        None => Step::Outcome(DEFAULT_OUTCOME.into()),
    }
}
