//! Digest authentication of requests (RFC 3261 §22.4, RFC 7616's computation, RFC 8760
//! for SHA-256 in SIP): challenges offering SHA-256 and MD5, and checking answers.
//!
//! Nonces are stateless: a timestamp and an HMAC-like tag of it under a secret made at
//! start, so any node that shares the secret could check them and none has to remember
//! them; a nonce older than [`NONCE_LIFETIME`] is refused as stale.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use md5::Md5;
use sha2::{Digest, Sha256};

use super::header::Name;
use super::message::Message;

/// How long a nonce stays valid.
pub const NONCE_LIFETIME: Duration = Duration::from_secs(300);

/// The hash algorithms offered, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// SHA-256 (RFC 8760).
    Sha256,
    /// MD5 (RFC 3261).
    Md5,
}

impl Algorithm {
    fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Md5 => "MD5",
        }
    }

    fn hash(self, data: &str) -> String {
        match self {
            Algorithm::Sha256 => hex::encode(Sha256::digest(data.as_bytes())),
            Algorithm::Md5 => hex::encode(Md5::digest(data.as_bytes())),
        }
    }
}

/// What verifying a user's digest answers needs, without the password: the user name
/// and HA1 (`H(user:realm:password)`) for each algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestSecret {
    /// The user name.
    pub username: String,
    /// MD5(user:realm:password), hex.
    pub ha1_md5: String,
    /// SHA-256(user:realm:password), hex.
    pub ha1_sha256: String,
}

impl DigestSecret {
    /// The secret of `username` with `password` in `realm`.
    pub fn from_password(username: &str, realm: &str, password: &str) -> DigestSecret {
        let a1 = format!("{username}:{realm}:{password}");
        DigestSecret {
            username: username.to_string(),
            ha1_md5: Algorithm::Md5.hash(&a1),
            ha1_sha256: Algorithm::Sha256.hash(&a1),
        }
    }

    fn ha1(&self, algorithm: Algorithm) -> &str {
        match algorithm {
            Algorithm::Md5 => &self.ha1_md5,
            Algorithm::Sha256 => &self.ha1_sha256,
        }
    }
}

/// What checking a request's credentials gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The credentials are right.
    Ok,
    /// No credentials, or a stale nonce: send these WWW-Authenticate values with 401.
    Challenge(Vec<String>),
    /// Wrong credentials: refuse (403), saying why.
    Refused(String),
}

/// Issues and checks digest challenges for one realm.
#[derive(Debug, Clone)]
pub struct Authenticator {
    realm: String,
    secret: String,
}

impl Authenticator {
    /// An authenticator for `realm` with a fresh random secret.
    pub fn new(realm: &str) -> Authenticator {
        Authenticator {
            realm: realm.to_string(),
            secret: format!("{:032x}", rand::random::<u128>()),
        }
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    fn nonce_at(&self, ts: u64) -> String {
        let tag = Algorithm::Sha256.hash(&format!("{ts}:{}", self.secret));
        format!("{ts:x}.{}", &tag[..32])
    }

    fn nonce_fresh(&self, nonce: &str) -> bool {
        let Some((ts, _)) = nonce.split_once('.') else {
            return false;
        };
        let Ok(ts) = u64::from_str_radix(ts, 16) else {
            return false;
        };
        self.nonce_at(ts) == nonce && Self::now().saturating_sub(ts) <= NONCE_LIFETIME.as_secs()
    }

    /// The WWW-Authenticate values of a challenge: SHA-256 first, then MD5.
    pub fn challenge(&self, stale: bool) -> Vec<String> {
        let nonce = self.nonce_at(Self::now());
        [Algorithm::Sha256, Algorithm::Md5]
            .iter()
            .map(|a| {
                format!(
                    "Digest realm=\"{}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{}",
                    self.realm,
                    a.name(),
                    if stale { ", stale=true" } else { "" }
                )
            })
            .collect()
    }

    /// The realm challenges name.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Checks `request`'s Authorization against `username` and `password`.
    pub fn check(&self, request: &Message, username: &str, password: &str) -> Verdict {
        let secret = DigestSecret::from_password(username, &self.realm, password);
        self.check_secrets(request, std::slice::from_ref(&secret))
    }

    /// Checks `request`'s Authorization against the secret of the user it names.
    pub fn check_secrets(&self, request: &Message, secrets: &[DigestSecret]) -> Verdict {
        let Some(value) = request.header(&Name::parse("Authorization")) else {
            return Verdict::Challenge(self.challenge(false));
        };
        let Some(p) = parse_params(value) else {
            return Verdict::Refused("malformed Authorization".into());
        };
        let get = |k: &str| {
            p.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.as_str())
        };
        let algorithm = match get("algorithm").unwrap_or("MD5") {
            a if a.eq_ignore_ascii_case("SHA-256") => Algorithm::Sha256,
            a if a.eq_ignore_ascii_case("MD5") => Algorithm::Md5,
            other => return Verdict::Refused(format!("unsupported algorithm {other}")),
        };
        let secret = secrets
            .iter()
            .find(|s| get("username") == Some(s.username.as_str()));
        let Some(secret) = secret.filter(|_| get("realm") == Some(self.realm.as_str())) else {
            return Verdict::Refused("unknown username or realm".into());
        };
        let (Some(nonce), Some(uri), Some(response)) = (get("nonce"), get("uri"), get("response"))
        else {
            return Verdict::Refused("incomplete Authorization".into());
        };
        if !self.nonce_fresh(nonce) {
            return Verdict::Challenge(self.challenge(true));
        }
        let method = request
            .method()
            .map(|m| m.as_str().to_string())
            .unwrap_or_default();
        let ha1 = secret.ha1(algorithm);
        let ha2 = algorithm.hash(&format!("{method}:{uri}"));
        let expected = match get("qop") {
            Some(qop) if qop.eq_ignore_ascii_case("auth") => {
                let (Some(nc), Some(cnonce)) = (get("nc"), get("cnonce")) else {
                    return Verdict::Refused("qop=auth without nc or cnonce".into());
                };
                algorithm.hash(&format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}"))
            }
            Some(other) => return Verdict::Refused(format!("unsupported qop {other}")),
            None => algorithm.hash(&format!("{ha1}:{nonce}:{ha2}")),
        };
        if constant_time_eq(
            expected.as_bytes(),
            response.to_ascii_lowercase().as_bytes(),
        ) {
            Verdict::Ok
        } else {
            Verdict::Refused("wrong credentials".into())
        }
    }
}

/// Compares two byte strings in time that depends only on their length.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `Digest a="b", c=d` → [(a, b), (c, d)].
fn parse_params(value: &str) -> Option<Vec<(String, String)>> {
    let rest = value.trim().strip_prefix("Digest")?.trim();
    let mut out = Vec::new();
    for part in super::header::split_list(rest) {
        let (k, v) = part.split_once('=')?;
        out.push((k.trim().to_string(), v.trim().trim_matches('"').to_string()));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::Framing;

    fn request(auth: Option<&str>) -> Message {
        let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
        let text = format!(
            "INVITE sip:+919999999999@callflow SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nFrom: <sip:+918047112233@p>;tag=1\r\nTo: <sip:+919999999999@callflow>\r\nCall-ID: c\r\nCSeq: 2 INVITE\r\n{auth}\r\n"
        );
        Message::parse(text.as_bytes(), Framing::Datagram).unwrap()
    }

    fn answer(a: &Authenticator, alg: Algorithm, user: &str, pass: &str) -> String {
        let Verdict::Challenge(ch) = a.check(&request(None), user, pass) else {
            panic!()
        };
        let nonce = ch[0]
            .split("nonce=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string();
        let uri = "sip:+919999999999@callflow";
        let ha1 = alg.hash(&format!("{user}:callflow:{pass}"));
        let ha2 = alg.hash(&format!("INVITE:{uri}"));
        let resp = alg.hash(&format!("{ha1}:{nonce}:00000001:abc:auth:{ha2}"));
        format!(
            "Digest username=\"{user}\", realm=\"callflow\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\", algorithm={}, qop=auth, nc=00000001, cnonce=\"abc\"",
            alg.name()
        )
    }

    #[test]
    fn sha256_and_md5_answers_are_checked() {
        let a = Authenticator::new("callflow");
        for alg in [Algorithm::Sha256, Algorithm::Md5] {
            let good = answer(&a, alg, "partner", "s3cret");
            assert_eq!(
                a.check(&request(Some(&good)), "partner", "s3cret"),
                Verdict::Ok
            );
            assert!(matches!(
                a.check(&request(Some(&good)), "partner", "wrong"),
                Verdict::Refused(_)
            ));
        }
    }

    #[test]
    fn forged_and_foreign_nonces_are_challenged_again() {
        let a = Authenticator::new("callflow");
        let b = Authenticator::new("callflow");
        let from_b = answer(&b, Algorithm::Sha256, "partner", "s3cret");
        assert!(matches!(
            a.check(&request(Some(&from_b)), "partner", "s3cret"),
            Verdict::Challenge(_)
        ));
    }
}
