//! Switchcase: evaluate a rhai expression over the call's variables and branch on its
//! value. Outcomes: one per case, and `default` (required).

use async_trait::async_trait;

use super::{Applet, Branch, Context, DecodeContext};
use crate::lang::decode::{self, MapReader};
use crate::lang::diagnostic::Diagnostics;
use crate::lang::expr::Expr;
use crate::lang::yaml::Node;
use crate::runtime::Step;

/// The kind's name in flow files.
pub const NAME: &str = "switchcase";

/// The keys its body may hold.
pub const KEYS: [&str; 3] = ["value", "cases", "default"];

/// The expression used when the flow names none.
pub const DEFAULT_VALUE: &str = "passthru.select";

/// The outcome taken when no case matches.
pub const DEFAULT_OUTCOME: &str = "default";

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

#[async_trait]
impl Applet for Switchcase {
    /// Decodes a switchcase body.
    fn decode(body: &Node, cx: DecodeContext<'_>, d: &mut Diagnostics) -> Option<Switchcase> {
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
                described: DEFAULT_OUTCOME.to_string(),
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

    fn takes_transitions() -> Result<(), &'static str> {
        Err("branches by its cases and default")
    }

    fn kind(&self) -> &'static str {
        NAME
    }

    fn summary(&self) -> String {
        format!("switchcase {}", self.value.source)
    }

    fn waits(&self) -> bool {
        false
    }

    /// Every branch, cases first, then the default.
    fn branches(&self) -> Vec<Branch> {
        self.cases
            .iter()
            .chain(std::iter::once(&self.default))
            .cloned()
            .collect()
    }

    /// The case whose value equals the expression's, else `default` (also when the
    /// expression fails on the live call; the trace says why).
    async fn run(&self, cx: &mut Context<'_>) -> Step {
        let mut scope = cx.vars.scope_for(self.value.reads);
        let value = match self.value.eval(&mut scope) {
            Ok(v) if v.is_unit() => String::new(),
            Ok(v) => v.to_string(),
            Err(e) => {
                cx.step.notes.push(format!(
                    "value '{}' failed: {e}; taking default",
                    self.value.source
                ));
                return Step::outcome(DEFAULT_OUTCOME);
            }
        };
        cx.step.notes.push(format!("value = {value:?}"));
        match self.cases.iter().find(|c| c.outcome == value) {
            Some(c) => Step::outcome(c.outcome.clone()),
            None => Step::outcome(DEFAULT_OUTCOME),
        }
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
                described: format!("case '{value}'"),
            }),
            None => ok = false,
        }
    }
    ok.then_some(out)
}
