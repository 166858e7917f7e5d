//! SIP methods, extension methods included (so that the engine can answer 405/501
//! instead of failing to parse).

use std::fmt;

use super::error::ParseError;
use super::uri::is_token_byte;

/// A request method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE
    Invite,
    /// ACK
    Ack,
    /// BYE
    Bye,
    /// CANCEL
    Cancel,
    /// OPTIONS
    Options,
    /// REGISTER
    Register,
    /// INFO (RFC 6086)
    Info,
    /// UPDATE (RFC 3311)
    Update,
    /// REFER (RFC 3515)
    Refer,
    /// NOTIFY (RFC 6665)
    Notify,
    /// SUBSCRIBE (RFC 6665)
    Subscribe,
    /// MESSAGE (RFC 3428)
    Message,
    /// PRACK (RFC 3262)
    Prack,
    /// PUBLISH (RFC 3903)
    Publish,
    /// Any other token.
    Other(String),
}

const KNOWN: &[(&str, Method)] = &[
    ("INVITE", Method::Invite),
    ("ACK", Method::Ack),
    ("BYE", Method::Bye),
    ("CANCEL", Method::Cancel),
    ("OPTIONS", Method::Options),
    ("REGISTER", Method::Register),
    ("INFO", Method::Info),
    ("UPDATE", Method::Update),
    ("REFER", Method::Refer),
    ("NOTIFY", Method::Notify),
    ("SUBSCRIBE", Method::Subscribe),
    ("MESSAGE", Method::Message),
    ("PRACK", Method::Prack),
    ("PUBLISH", Method::Publish),
];

impl Method {
    /// Parses a method token (methods are case-sensitive, RFC 3261 §7.1).
    pub fn parse(s: &str) -> Result<Method, ParseError> {
        if let Some((_, m)) = KNOWN.iter().find(|(name, _)| *name == s) {
            return Ok(m.clone());
        }
        if s.is_empty() || !s.bytes().all(is_token_byte) {
            return Err(ParseError::StartLine(format!(
                "bad method '{}'",
                s.escape_default()
            )));
        }
        Ok(Method::Other(s.to_string()))
    }

    /// The method's name.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Other(s) => s,
            known => KNOWN
                .iter()
                .find(|(_, m)| m == known)
                .map_or("", |(name, _)| name),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
