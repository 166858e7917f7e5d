//! The rules for custom `X-` headers on the legs callflow places (docs/architecture.md §3, §4).
//!
//! The same checks run when a flow compiles (for static values) and on a live call
//! (for values that come from templates or webhooks), so that a header that breaks a
//! rule never reaches the wire.

/// Most custom headers on one leg.
pub const MAX_CUSTOM_HEADERS: usize = 3;

/// Most bytes the custom headers may take in all: the sum of each name and value.
pub const MAX_CUSTOM_HEADER_BYTES: usize = 200;

/// Header prefixes reserved for callflow itself, unless the configuration says others.
pub const DEFAULT_RESERVED_PREFIXES: &[&str] = &["X-Callflow-"];

/// A custom header that breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The name does not start with `X-`.
    #[error("header name '{0}' must start with 'X-'")]
    NotExtension(String),
    /// The name is `X-` and nothing more.
    #[error("header name '{0}' needs a name after 'X-'")]
    EmptyName(String),
    /// The name starts with a prefix reserved for the platform.
    #[error("header name '{name}' uses the reserved prefix '{prefix}'")]
    Reserved {
        /// The header name.
        name: String,
        /// The reserved prefix it starts with.
        prefix: String,
    },
    /// The name holds a character outside RFC 3261's `token`.
    #[error("header name '{name}' contains {what}, which is not allowed in a header name")]
    BadNameChar {
        /// The header name.
        name: String,
        /// The character, described.
        what: String,
    },
    /// The value holds CR, LF or another control character.
    #[error("header value of '{name}' contains {what}, which is not allowed in a header value")]
    BadValueChar {
        /// The header name.
        name: String,
        /// The character, described.
        what: String,
    },
    /// More than [`MAX_CUSTOM_HEADERS`] headers.
    #[error("{0} custom headers; at most {MAX_CUSTOM_HEADERS} are allowed")]
    TooMany(usize),
    /// More than [`MAX_CUSTOM_HEADER_BYTES`] bytes in all.
    #[error("custom headers take {0} bytes; at most {MAX_CUSTOM_HEADER_BYTES} are allowed")]
    TooLong(usize),
}

/// Whether `c` may appear in a header name (RFC 3261 §25.1 `token`).
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

fn describe(c: char) -> String {
    match c {
        '\r' => "a carriage return (CR)".into(),
        '\n' => "a line feed (LF)".into(),
        ' ' => "a space".into(),
        c if c.is_control() => format!("the control character U+{:04X}", c as u32),
        c => format!("'{c}'"),
    }
}

/// Checks a custom header name against the syntax, the `X-` rule and `reserved`.
pub fn check_name<S: AsRef<str>>(name: &str, reserved: &[S]) -> Result<(), HeaderError> {
    if let Some(c) = name.chars().find(|c| !is_token_char(*c)) {
        return Err(HeaderError::BadNameChar {
            name: name.escape_default().to_string(),
            what: describe(c),
        });
    }
    if !starts_with_ignore_case(name, "x-") {
        return Err(HeaderError::NotExtension(name.to_string()));
    }
    if name.len() == 2 {
        return Err(HeaderError::EmptyName(name.to_string()));
    }
    for prefix in reserved {
        let prefix = prefix.as_ref();
        if starts_with_ignore_case(name, prefix) {
            return Err(HeaderError::Reserved {
                name: name.to_string(),
                prefix: prefix.to_string(),
            });
        }
    }
    Ok(())
}

/// Whether `s` starts with `prefix`, ASCII letters compared in either case.
fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.as_bytes()
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

/// Checks the literal text of a header value: no CR, LF or other control characters
/// (horizontal tab is allowed, as in RFC 3261's `LWS`).
pub fn check_value(name: &str, value: &str) -> Result<(), HeaderError> {
    match value.chars().find(|c| c.is_control() && *c != '\t') {
        Some(c) => Err(HeaderError::BadValueChar {
            name: name.to_string(),
            what: describe(c),
        }),
        None => Ok(()),
    }
}

/// The bytes a set of headers counts against [`MAX_CUSTOM_HEADER_BYTES`].
pub fn byte_count<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> usize {
    headers.into_iter().map(|(n, v)| n.len() + v.len()).sum()
}

/// Checks a complete set of custom headers, as they would go on the wire.
pub fn check_set<S: AsRef<str>>(
    headers: &[(String, String)],
    reserved: &[S],
) -> Result<(), HeaderError> {
    if headers.len() > MAX_CUSTOM_HEADERS {
        return Err(HeaderError::TooMany(headers.len()));
    }
    for (name, value) in headers {
        check_name(name, reserved)?;
        check_value(name, value)?;
    }
    let bytes = byte_count(headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    if bytes > MAX_CUSTOM_HEADER_BYTES {
        return Err(HeaderError::TooLong(bytes));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: &[&str] = DEFAULT_RESERVED_PREFIXES;

    #[test]
    fn names() {
        assert_eq!(check_name("X-Param1", R), Ok(()));
        assert!(matches!(
            check_name("Param1", R),
            Err(HeaderError::NotExtension(_))
        ));
        assert!(matches!(
            check_name("x-callflow-sid", R),
            Err(HeaderError::Reserved { .. })
        ));
        assert!(matches!(
            check_name("X-A B", R),
            Err(HeaderError::BadNameChar { .. })
        ));
        assert!(matches!(
            check_name("X-A\r\nB", R),
            Err(HeaderError::BadNameChar { .. })
        ));
        assert!(matches!(
            check_name("X-", R),
            Err(HeaderError::EmptyName(_))
        ));
    }

    #[test]
    fn values_and_sets() {
        assert_eq!(check_value("X-A", "a\tb ü"), Ok(()));
        assert!(check_value("X-A", "a\r\nVia: evil").is_err());
        let four: Vec<_> = (0..4)
            .map(|i| (format!("X-{i}"), "v".to_string()))
            .collect();
        assert_eq!(check_set(&four, R), Err(HeaderError::TooMany(4)));
        let long = vec![("X-A".to_string(), "v".repeat(198))];
        assert_eq!(check_set(&long, R), Err(HeaderError::TooLong(201)));
        let ok = vec![("X-A".to_string(), "v".repeat(197))];
        assert_eq!(check_set(&ok, R), Ok(()));
    }
}
