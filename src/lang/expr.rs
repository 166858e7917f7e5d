//! rhai expressions and `${...}` templates, compiled when a flow loads.
//!
//! Expressions read the call's variables (`call`, `connect`, `passthru`, `refer`) and
//! nothing else: the engine runs with strict variables, so a misspelt root name is a
//! compile error, and with operation, depth and size limits, so an expression cannot
//! spin or eat memory on a live call.

use std::fmt;
use std::sync::{Arc, OnceLock};

use rhai::{AST, Dynamic, Engine, EvalAltResult, ParseErrorType, Scope};

/// The variables an expression may read; each is an object map at run time.
pub const VARIABLES: [&str; 4] = ["call", "connect", "passthru", "refer"];

/// Which of the [`VARIABLES`] an expression reads, found in its compiled form, so
/// that a scope holds only those (making `call` copies the call's headers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reads(u8);

impl Reads {
    /// Whether `name` (one of [`VARIABLES`]) is read.
    pub fn has(self, name: &str) -> bool {
        Self::bit(name).is_some_and(|b| self.0 & b != 0)
    }

    /// These and `other`.
    pub fn union(self, other: Reads) -> Reads {
        Reads(self.0 | other.0)
    }

    /// These without `other`.
    pub fn without(self, other: Reads) -> Reads {
        Reads(self.0 & !other.0)
    }

    /// Whether nothing is read.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    fn bit(name: &str) -> Option<u8> {
        VARIABLES.iter().position(|v| *v == name).map(|i| 1 << i)
    }

    /// The variables `ast` reads (function bodies included). The engine compiles
    /// with strict variables, so every read is by one of these names.
    fn of(ast: &AST) -> Reads {
        let mut reads = Reads::default();
        ast.walk(&mut |path: &[rhai::ASTNode]| {
            if let Some(rhai::ASTNode::Expr(rhai::Expr::Variable(v, ..))) = path.last()
                && let Some(b) = Self::bit(v.1.as_str())
            {
                reads.0 |= b;
            }
            true
        });
        reads
    }
}

/// Most operations one evaluation may perform.
const MAX_OPERATIONS: u64 = 100_000;

/// The shared, sandboxed engine.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut e = Engine::new();
        e.set_strict_variables(true);
        e.set_max_operations(MAX_OPERATIONS);
        e.set_max_expr_depths(32, 32);
        e.set_max_string_size(64 * 1024);
        e.set_max_array_size(10_000);
        e.set_max_map_size(10_000);
        e.disable_symbol("eval");
        // rhai reserves `call` (for function pointers), but the call's variables are
        // named `call.*` in docs/architecture.md §3: read the word as a plain identifier.
        #[allow(deprecated)] // volatile, not deprecated
        e.on_parse_token(|token, _, _| match token {
            rhai::Token::Reserved(s) if s.as_str() == "call" => rhai::Token::Identifier(s),
            other => other,
        });
        e
    })
}

/// A scope holding every variable name, for compiling. They are pushed as variables,
/// not constants, so that the optimiser does not fold in these empty stand-ins.
fn compile_scope() -> Scope<'static> {
    let mut scope = Scope::new();
    for name in VARIABLES {
        scope.push(name, rhai::Map::new());
    }
    scope
}

/// Why an expression did not compile, with its place inside the expression text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    /// Line inside the expression, from 1.
    pub line: usize,
    /// Column inside the expression's line, from 1.
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

/// A compiled rhai expression.
#[derive(Clone)]
pub struct Expr {
    /// The expression as written.
    pub source: String,
    ast: Arc<AST>,
    /// The variables it reads.
    pub reads: Reads,
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Expr({:?})", self.source)
    }
}

impl Expr {
    /// Compiles `source` as a single rhai expression over the call's variables.
    pub fn compile(source: &str) -> Result<Expr, ExprError> {
        if source.trim().is_empty() {
            return Err(ExprError {
                line: 1,
                col: 1,
                message: "empty expression".into(),
            });
        }
        match engine().compile_expression_with_scope(&compile_scope(), source) {
            Ok(ast) => Ok(Expr {
                source: source.to_string(),
                reads: Reads::of(&ast),
                ast: Arc::new(ast),
            }),
            Err(err) => {
                let pos = err.position();
                let message = match err.err_type() {
                    ParseErrorType::VariableUndefined(name) => format!(
                        "unknown variable '{name}': expressions can read {}",
                        VARIABLES.join(", ")
                    ),
                    other => other.to_string(),
                };
                Err(ExprError {
                    line: pos.line().unwrap_or(1),
                    col: pos.position().unwrap_or(1),
                    message,
                })
            }
        }
    }

    /// Evaluates the expression with `scope` holding the call's variables.
    pub fn eval(&self, scope: &mut Scope) -> Result<Dynamic, Box<EvalAltResult>> {
        engine().eval_ast_with_scope::<Dynamic>(scope, &self.ast)
    }
}

/// One piece of a template.
#[derive(Debug, Clone)]
pub enum Part {
    /// Text copied as it is.
    Literal(String),
    /// A `${...}` expression, replaced by its value.
    Expr(Expr),
}

/// A string with `${...}` expressions in it, such as a header value or a URL.
#[derive(Debug, Clone)]
pub struct Template {
    /// The template as written.
    pub source: String,
    /// Its pieces, in order.
    pub parts: Vec<Part>,
}

/// Why a template did not compile: the character offset of the problem inside the
/// template text, and the expression error when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// Offset, in characters, of the start of the faulty `${` or expression.
    pub offset: usize,
    /// The error inside the expression (line and column relative to its start).
    pub error: ExprError,
}

impl Template {
    /// Splits `source` into literals and compiled expressions.
    pub fn compile(source: &str) -> Result<Template, TemplateError> {
        let chars: Vec<char> = source.chars().collect();
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut i = 0;
        while i < chars.len() {
            if chars[i] == '$' && chars.get(i + 1) == Some(&'{') {
                let start = i + 2;
                let Some(end) = closing_brace(&chars, start) else {
                    return Err(TemplateError {
                        offset: i,
                        error: ExprError {
                            line: 1,
                            col: 1,
                            message: "unterminated '${': add the closing '}'".into(),
                        },
                    });
                };
                let text: String = chars[start..end].iter().collect();
                let expr = Expr::compile(&text).map_err(|error| TemplateError {
                    offset: start,
                    error,
                })?;
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                parts.push(Part::Expr(expr));
                i = end + 1;
            } else {
                literal.push(chars[i]);
                i += 1;
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template {
            source: source.to_string(),
            parts,
        })
    }

    /// Whether the template holds no expression.
    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// The literal text of the template, expressions left out.
    pub fn literal_text(&self) -> String {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Literal(s) => Some(s.as_str()),
                Part::Expr(_) => None,
            })
            .collect()
    }

    /// The template with each expression replaced by `stand_in`.
    pub fn with_stand_in(&self, stand_in: &str) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Literal(s) => s.as_str(),
                Part::Expr(_) => stand_in,
            })
            .collect()
    }

    /// The variables its expressions read.
    pub fn reads(&self) -> Reads {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Expr(e) => Some(e.reads),
                Part::Literal(_) => None,
            })
            .fold(Reads::default(), Reads::union)
    }

    /// Renders the template; each expression's value is turned into text.
    pub fn render(&self, scope: &mut Scope) -> Result<String, Box<EvalAltResult>> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Expr(e) => {
                    let v = e.eval(scope)?;
                    if !v.is_unit() {
                        out.push_str(&v.to_string());
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Index of the `}` that closes an expression starting at `start`, skipping nested
/// braces and string literals.
fn closing_brace(chars: &[char], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut i = start;
    while i < chars.len() {
        let c = chars[i];
        match quote {
            Some(q) => {
                if c == '\\' {
                    i += 1;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' | '`' => quote = Some(c),
                '{' => depth += 1,
                '}' if depth == 0 => return Some(i),
                '}' => depth -= 1,
                _ => {}
            },
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope_with_from(from: &str) -> Scope<'static> {
        let mut scope = Scope::new();
        let mut call = rhai::Map::new();
        call.insert("from".into(), from.into());
        scope.push_constant("call", call);
        for name in ["connect", "passthru", "refer"] {
            scope.push_constant(name, rhai::Map::new());
        }
        scope
    }

    #[test]
    fn the_variables_an_expression_reads_are_found() {
        let reads = |src: &str| {
            let r = Expr::compile(src).unwrap().reads;
            VARIABLES
                .iter()
                .filter(|v| r.has(v))
                .copied()
                .collect::<Vec<_>>()
        };
        assert_eq!(reads("passthru.select"), ["passthru"]);
        assert_eq!(reads("call.headers[\"x-a\"] ?? \"\""), ["call"]);
        assert_eq!(
            reads("if connect.status == \"busy\" { refer.to } else { call.to }"),
            ["call", "connect", "refer"]
        );
        assert_eq!(reads("\"call\" + 1"), Vec::<&str>::new());
        assert_eq!(reads("[1, 2].map(|x| x + passthru.status)"), ["passthru"]);
        let t = Template::compile("sip:${call.to}@${connect.dialed}").unwrap();
        assert!(t.reads().has("call") && t.reads().has("connect") && !t.reads().has("refer"));
    }

    #[test]
    fn template_renders_expressions() {
        let t = Template::compile("caller ${call.from} says ${\"}\"}").unwrap();
        assert!(!t.is_static());
        let out = t.render(&mut scope_with_from("+9180")).unwrap();
        assert_eq!(out, "caller +9180 says }");
    }

    #[test]
    fn unknown_variable_is_a_compile_error() {
        let err = Expr::compile("calls.from").unwrap_err();
        assert!(
            err.message.starts_with("unknown variable 'calls'"),
            "{err:?}"
        );
    }

    #[test]
    fn unterminated_template() {
        let err = Template::compile("ab${call.from").unwrap_err();
        assert_eq!(err.offset, 2);
    }

    #[test]
    fn runaway_expression_is_stopped() {
        let e = Expr::compile("{ let x = 0; loop { x += 1; } }");
        // Either refused at compile time or stopped by the operation limit at run time.
        if let Ok(e) = e {
            assert!(e.eval(&mut scope_with_from("x")).is_err());
        }
    }
}
