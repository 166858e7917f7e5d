//! Telephone numbers as flows and configuration write them: E.164 (`+` and 7 to 15
//! digits, no leading zero), and the normalisation of a Request-URI user part.

/// Whether `s` is an E.164 number: `+` and 7 to 15 digits, the first not zero.
pub fn is_e164(s: &str) -> bool {
    s.strip_prefix('+').is_some_and(is_e164_digits)
}

/// Whether `digits` (what follows the `+`) are the digits of an E.164 number.
pub fn is_e164_digits(digits: &str) -> bool {
    (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// Whether `s` is an E.164 prefix: `+`, then 1 to 15 digits, the first not 0.
pub fn is_e164_prefix(s: &str) -> bool {
    s.strip_prefix('+').is_some_and(|d| {
        (1..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
    })
}

/// Whether `number` starts with one of `prefixes`; any number does when there are
/// none.
pub fn allowed_by(prefixes: &[String], number: &str) -> bool {
    prefixes.is_empty() || prefixes.iter().any(|p| number.starts_with(p.as_str()))
}

/// The number in a Request-URI user part, as E.164: visual separators removed, a
/// leading `+` added when missing.
pub fn normalise(user: &str) -> String {
    let mut number = String::with_capacity(user.len() + 1);
    let kept = user
        .chars()
        .filter(|c| !matches!(c, '-' | '.' | '(' | ')' | ' '));
    if kept.clone().next().is_none_or(|c| c != '+') {
        number.push('+');
    }
    number.extend(kept);
    number
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_and_normalise() {
        assert!(is_e164("+918047112233"));
        assert!(!is_e164("918047112233"));
        assert!(!is_e164("+0123456789"));
        assert!(!is_e164("+12345"));
        assert_eq!(normalise("91-80-4711 2233"), "+918047112233");
        assert_eq!(normalise("+44(20)7123"), "+44207123");
    }
}
