//! What can be wrong with a SIP message.

/// A message that could not be parsed, or lacks what RFC 3261 requires of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Nothing but white space.
    #[error("empty message")]
    Empty,
    /// Larger than the transport accepts.
    #[error("message of {0} bytes is over the limit")]
    TooLarge(usize),
    /// The header section ended before the blank line (stream transports: wait for more).
    #[error("incomplete message")]
    Incomplete,
    /// The start line and headers are not UTF-8.
    #[error("header section is not UTF-8")]
    NotUtf8,
    /// The request or status line is malformed.
    #[error("bad start line: {0}")]
    StartLine(String),
    /// A header line is malformed.
    #[error("bad header line {line}: {reason}")]
    HeaderLine {
        /// Line number inside the message, from 1.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// More header lines than allowed.
    #[error("more than {0} headers")]
    TooManyHeaders(usize),
    /// A required header is missing.
    #[error("missing {0} header")]
    Missing(&'static str),
    /// A header's value is malformed.
    #[error("bad {name} header: {reason}")]
    Header {
        /// The header's name.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Content-Length is missing where required, malformed, or disagrees with the body.
    #[error("bad Content-Length: {0}")]
    ContentLength(String),
    /// A URI is malformed.
    #[error("bad URI: {0}")]
    Uri(String),
    /// A URI scheme callflow does not handle.
    #[error("unsupported URI scheme '{0}'")]
    UnsupportedScheme(String),
}
