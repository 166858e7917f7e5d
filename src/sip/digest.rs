//! Digest authentication of requests (RFC 3261 §22.4, RFC 7616's computation, RFC 8760
//! for SHA-256 in SIP): challenges offering SHA-256 and MD5, and checking answers.
//!
//! Nonces are stateless: a timestamp and an HMAC-like tag of it under a secret made at
//! start, so any node that shares the secret could check them and none has to remember
//! them; a nonce older than [`NONCE_LIFETIME`] is refused as stale.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use md5::Md5;
use sha2::{Digest, Sha256};

use super::header::Name;
use super::message::Message;
use super::uri::Uri;

/// How long a nonce stays valid: long enough to answer a challenge, short enough
/// that a captured one is soon worthless.
pub const NONCE_LIFETIME: Duration = Duration::from_secs(60);

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

/// Issues and checks digest challenges for one realm. Nonces are stateless (a time
/// and a keyed hash of it and the source address, so a nonce is good only from the
/// address it was sent to); the highest nonce count seen per nonce is remembered
/// while the nonce lives, so a captured Authorization cannot be replayed.
#[derive(Debug, Clone)]
pub struct Authenticator {
    realm: String,
    secret: String,
    /// Whether challenges offer MD5 after SHA-256 (some trunk takes it).
    md5: bool,
    /// Nonce → (highest nc accepted, when the nonce was issued).
    counts: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, (u32, u64)>>>,
}

impl Authenticator {
    /// An authenticator for `realm` with a fresh random secret.
    pub fn new(realm: &str) -> Authenticator {
        Authenticator {
            realm: realm.to_string(),
            secret: format!("{:032x}", rand::random::<u128>()),
            md5: true,
            counts: std::sync::Arc::default(),
        }
    }

    /// The same authenticator (its secret and nonce counts), offering MD5 in its
    /// challenges or not.
    pub fn offering_md5(&self, md5: bool) -> Authenticator {
        Authenticator {
            md5,
            ..self.clone()
        }
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// A nonce issued at `ts` to `source`, unique by `salt`: `ts.salt.tag`.
    fn nonce_at(&self, ts: u64, salt: u64, source: IpAddr) -> String {
        let tag = Algorithm::Sha256.hash(&format!("{ts}:{salt}:{source}:{}", self.secret));
        format!("{ts:x}.{salt:x}.{}", &tag[..32])
    }

    /// When `nonce` was issued to `source`, if this authenticator issued it.
    fn nonce_issued(&self, nonce: &str, source: IpAddr) -> Option<u64> {
        let mut parts = nonce.split('.');
        let ts = u64::from_str_radix(parts.next()?, 16).ok()?;
        let salt = u64::from_str_radix(parts.next()?, 16).ok()?;
        let expected = self.nonce_at(ts, salt, source);
        constant_time_eq(expected.as_bytes(), nonce.as_bytes()).then_some(ts)
    }

    /// Takes nonce count `nc` of `nonce` (issued at `issued`) if it is higher than any
    /// taken before.
    fn take_count(&self, nonce: &str, nc: u32, issued: u64) -> bool {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if counts.len() > 4096 {
            let oldest = Self::now().saturating_sub(NONCE_LIFETIME.as_secs());
            counts.retain(|_, (_, at)| *at >= oldest);
        }
        let last = counts.entry(nonce.to_string()).or_insert((0, issued));
        if nc <= last.0 {
            return false;
        }
        last.0 = nc;
        true
    }

    /// The WWW-Authenticate values of a challenge to `source`: SHA-256, then MD5
    /// when some trunk takes it (RFC 8760 §2.4: the preferred algorithm first).
    pub fn challenge(&self, stale: bool, source: IpAddr) -> Vec<String> {
        let nonce = self.nonce_at(Self::now(), rand::random::<u64>(), source);
        let algorithms: &[Algorithm] = if self.md5 {
            &[Algorithm::Sha256, Algorithm::Md5]
        } else {
            &[Algorithm::Sha256]
        };
        algorithms
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

    /// Checks `request`'s Authorization, sent from `source`, against `username` and
    /// `password`.
    pub fn check(
        &self,
        request: &Message,
        source: IpAddr,
        username: &str,
        password: &str,
    ) -> Verdict {
        let secret = DigestSecret::from_password(username, &self.realm, password);
        self.check_secrets(request, source, std::slice::from_ref(&secret), true)
    }

    /// Checks `request`'s Authorization, sent from `source`, against the secret of
    /// the user it names. The answer must be for this request's URI, to a nonce issued
    /// to `source` and still fresh, with qop=auth and a nonce count above any used
    /// before with that nonce.
    pub fn check_secrets(
        &self,
        request: &Message,
        source: IpAddr,
        secrets: &[DigestSecret],
        allow_md5: bool,
    ) -> Verdict {
        let Some(value) = request.header(&Name::parse("Authorization")) else {
            return Verdict::Challenge(self.challenge(false, source));
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
        if algorithm == Algorithm::Md5 && !allow_md5 {
            return Verdict::Refused("MD5 is not allowed for this trunk".into());
        }
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
        let Some(issued) = self.nonce_issued(nonce, source) else {
            return Verdict::Challenge(self.challenge(false, source));
        };
        if Self::now().saturating_sub(issued) > NONCE_LIFETIME.as_secs() {
            return Verdict::Challenge(self.challenge(true, source));
        }
        let for_this_request = Uri::parse(uri).ok().as_ref() == request.request_uri();
        if !for_this_request {
            return Verdict::Refused("the answer is for another Request-URI".into());
        }
        let method = request
            .method()
            .map(|m| m.as_str().to_string())
            .unwrap_or_default();
        let ha1 = secret.ha1(algorithm);
        let ha2 = algorithm.hash(&format!("{method}:{uri}"));
        let (Some(qop), Some(nc), Some(cnonce)) = (get("qop"), get("nc"), get("cnonce")) else {
            return Verdict::Refused("qop=auth, nc and cnonce are required".into());
        };
        if !qop.eq_ignore_ascii_case("auth") {
            return Verdict::Refused(format!("unsupported qop {qop}"));
        }
        let Some(count) = u32::from_str_radix(nc, 16).ok().filter(|_| nc.len() == 8) else {
            return Verdict::Refused("malformed nonce count".into());
        };
        let expected = algorithm.hash(&format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}"));
        if !constant_time_eq(
            expected.as_bytes(),
            response.to_ascii_lowercase().as_bytes(),
        ) {
            return Verdict::Refused("wrong credentials".into());
        }
        if !self.take_count(nonce, count, issued) {
            return Verdict::Refused("replayed nonce count".into());
        }
        Verdict::Ok
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

    const SRC: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));

    fn request(auth: Option<&str>) -> Message {
        let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
        let text = format!(
            "INVITE sip:+919999999999@callflow SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nFrom: <sip:+918047112233@p>;tag=1\r\nTo: <sip:+919999999999@callflow>\r\nCall-ID: c\r\nCSeq: 2 INVITE\r\n{auth}\r\n"
        );
        Message::parse(text.as_bytes(), Framing::Datagram).unwrap()
    }

    fn answer(a: &Authenticator, alg: Algorithm, user: &str, pass: &str) -> String {
        answer_for(a, alg, user, pass, "sip:+919999999999@callflow", "00000001")
    }

    fn answer_for(
        a: &Authenticator,
        alg: Algorithm,
        user: &str,
        pass: &str,
        uri: &str,
        nc: &str,
    ) -> String {
        let Verdict::Challenge(ch) = a.check(&request(None), SRC, user, pass) else {
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
        let ha1 = alg.hash(&format!("{user}:callflow:{pass}"));
        let ha2 = alg.hash(&format!("INVITE:{uri}"));
        let resp = alg.hash(&format!("{ha1}:{nonce}:{nc}:abc:auth:{ha2}"));
        format!(
            "Digest username=\"{user}\", realm=\"callflow\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\", algorithm={}, qop=auth, nc={nc}, cnonce=\"abc\"",
            alg.name()
        )
    }

    #[test]
    fn sha256_and_md5_answers_are_checked() {
        let a = Authenticator::new("callflow");
        for alg in [Algorithm::Sha256, Algorithm::Md5] {
            let good = answer(&a, alg, "partner", "s3cret");
            assert!(matches!(
                a.check(&request(Some(&good)), SRC, "partner", "wrong"),
                Verdict::Refused(_)
            ));
            assert_eq!(
                a.check(&request(Some(&good)), SRC, "partner", "s3cret"),
                Verdict::Ok
            );
        }
    }

    #[test]
    fn forged_and_foreign_nonces_are_challenged_again() {
        let a = Authenticator::new("callflow");
        let b = Authenticator::new("callflow");
        let from_b = answer(&b, Algorithm::Sha256, "partner", "s3cret");
        assert!(matches!(
            a.check(&request(Some(&from_b)), SRC, "partner", "s3cret"),
            Verdict::Challenge(_)
        ));
    }

    #[test]
    fn a_captured_answer_cannot_be_replayed_moved_or_reused_elsewhere() {
        let a = Authenticator::new("callflow");
        let good = answer(&a, Algorithm::Sha256, "partner", "s3cret");
        let ok = |auth: &str, src: IpAddr| a.check(&request(Some(auth)), src, "partner", "s3cret");
        assert_eq!(ok(&good, SRC), Verdict::Ok);
        // The same header again: its nonce count was used.
        assert!(matches!(ok(&good, SRC), Verdict::Refused(r) if r.contains("replayed")));
        // From another address: that nonce was not issued there.
        let other = IpAddr::V4(std::net::Ipv4Addr::new(10, 9, 9, 9));
        let next = answer_for(
            &a,
            Algorithm::Sha256,
            "partner",
            "s3cret",
            "sip:+919999999999@callflow",
            "00000001",
        );
        assert!(matches!(ok(&next, other), Verdict::Challenge(_)));
        // For another Request-URI (another number): refused.
        let elsewhere = answer_for(
            &a,
            Algorithm::Sha256,
            "partner",
            "s3cret",
            "sip:+442071234567@callflow",
            "00000002",
        );
        assert!(matches!(ok(&elsewhere, SRC), Verdict::Refused(r) if r.contains("Request-URI")));
        // Without qop (RFC 2069 style): refused.
        let bare = good.replace(", qop=auth, nc=00000001, cnonce=\"abc\"", "");
        assert!(matches!(ok(&bare, SRC), Verdict::Refused(_)));
        // A higher nonce count with the same nonce is accepted once.
        let third = answer_for(
            &a,
            Algorithm::Sha256,
            "partner",
            "s3cret",
            "sip:+919999999999@callflow",
            "00000003",
        );
        assert_eq!(ok(&third, SRC), Verdict::Ok);
        assert!(matches!(ok(&third, SRC), Verdict::Refused(_)));
    }
}
