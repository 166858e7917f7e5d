//! `callflow.yaml`: every key optional; the defaults run on one machine with no other
//! service (README.md lists every key; docs/architecture.md §6).
//!
//! Values are parsed into their types once, when the file is loaded: durations,
//! addresses, URIs, CIDR blocks, numbers and failover statuses. A bad value refuses
//! the start (or the reload) with the file, line, column and key's name.

use std::fmt::Display;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

use crate::lang::duration::parse_duration;
use crate::sip::transport::Listen;
use crate::sip::{Host, SipUri, Uri};

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// SIP listeners, TLS, advertised address.
    pub sip: SipConfig,
    /// The HTTP API.
    #[serde(default)]
    pub api: Option<ApiConfig>,
    /// Where accounts and what the API creates are kept: `sqlite://FILE` or
    /// `postgres://…` (absent in a file: no store).
    #[serde(default, deserialize_with = "store_key")]
    pub store: Option<StoreConfig>,
    /// The directory (or file) of flows, relative to the configuration file.
    pub flows: PathBuf,
    /// PSTN carriers.
    pub carriers: Vec<CarrierConfig>,
    /// Partner trunks.
    pub trunks: Vec<TrunkConfig>,
    /// Webhook settings.
    pub webhooks: WebhookConfig,
    /// Custom header prefixes reserved for the platform.
    pub reserved_header_prefixes: Vec<String>,
    /// Calls from partners to the PSTN.
    pub outbound: OutboundConfig,
    /// Where calls' media goes: `none` (SDP pass-through, the default) or anchored
    /// in rtpengine.
    #[serde(deserialize_with = "media_key")]
    pub media: Option<MediaConfig>,
    /// Where recordings are written.
    pub recordings: RecordingsConfig,
    /// The engine's worker threads (default 1: one thread carries well over 1,000
    /// calls/s, and a second costs a quarter more CPU per call in wake-ups between
    /// the two; BENCHMARKS.md). With 1, the engine runs on the thread that runs
    /// `serve` ([`crate::server::runtime`]). Read at start; a reload does not change it.
    #[serde(deserialize_with = "workers")]
    pub workers: usize,
}

/// `media: { rtpengine: [...], timeout, ng_timeout }`.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaConfig {
    /// rtpengines' ng addresses with their weights.
    pub rtpengine: Vec<RtpengineConfig>,
    /// A bridged call whose RTP stopped this long is hung up (default 60 s).
    pub timeout: Duration,
    /// How long an ng request waits for its answer before the next rtpengine is
    /// tried (default 1 s).
    pub ng_timeout: Duration,
}

/// One rtpengine: `udp://host:port`, or `{ url, weight }`.
#[derive(Debug, Clone, PartialEq)]
pub struct RtpengineConfig {
    /// Its ng address, `host:port`.
    pub address: String,
    /// Its share of new calls (default 1).
    pub weight: u32,
}

/// `recordings: { dir, url }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingsConfig {
    /// Where WAV files are written, relative to the configuration file.
    pub dir: PathBuf,
    /// The base of RecordingUrl (default `http://<api.listen>`).
    pub url: Option<String>,
}

impl Default for RecordingsConfig {
    fn default() -> Self {
        RecordingsConfig {
            dir: PathBuf::from("recordings"),
            url: None,
        }
    }
}

/// `outbound:` — calls from a trunk's partner to the PSTN through the carriers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// How long a carrier may take to answer before the next one is tried.
    #[serde(deserialize_with = "duration")]
    pub ring_timeout: Duration,
    /// Final statuses on which the next carrier is tried: codes (`503`) or classes
    /// (`5xx`).
    #[serde(deserialize_with = "list")]
    pub failover: Vec<StatusPattern>,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        OutboundConfig {
            ring_timeout: Duration::from_secs(60),
            failover: vec![
                StatusPattern::Code(408),
                StatusPattern::Class(5),
                StatusPattern::Class(6),
            ],
        }
    }
}

impl OutboundConfig {
    /// Whether a carrier's final `status` sends the call to the next carrier.
    pub fn fails_over(&self, status: u16) -> bool {
        self.failover.iter().any(|p| p.matches(status))
    }
}

/// A final status, or a class of them, in `outbound.failover`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusPattern {
    /// One status, 300 to 699.
    Code(u16),
    /// A class: `5xx` is 5.
    Class(u16),
}

impl StatusPattern {
    /// Whether `status` is this one or in this class.
    pub fn matches(self, status: u16) -> bool {
        match self {
            StatusPattern::Code(c) => c == status,
            StatusPattern::Class(c) => status / 100 == c,
        }
    }
}

impl FromStr for StatusPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<StatusPattern, String> {
        let class = s
            .strip_suffix("xx")
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|c| (3..=6).contains(c) && s.len() == 3);
        let code = s
            .parse::<u16>()
            .ok()
            .filter(|c| (300..700).contains(c) && s.len() == 3);
        match (class, code) {
            (Some(c), _) => Ok(StatusPattern::Class(c)),
            (_, Some(c)) => Ok(StatusPattern::Code(c)),
            _ => Err(format!("'{s}' is not a status (503) or a class (5xx)")),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sip: SipConfig::default(),
            api: Some(ApiConfig::default()),
            store: Some(StoreConfig {
                url: "sqlite://callflow.db".into(),
                retention: DEFAULT_RETENTION,
            }),
            flows: PathBuf::from("flows"),
            carriers: Vec::new(),
            trunks: Vec::new(),
            webhooks: WebhookConfig::default(),
            reserved_header_prefixes: crate::lang::headers::DEFAULT_RESERVED_PREFIXES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            outbound: OutboundConfig::default(),
            media: None,
            recordings: RecordingsConfig::default(),
            workers: 1,
        }
    }
}

/// `sip:`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// `udp://ADDR:PORT`, `tcp://…`, `tls://…`.
    #[serde(deserialize_with = "list")]
    pub listen: Vec<Listen>,
    /// Certificate and key for tls:// listeners, CA bundle for outbound TLS.
    pub tls: Option<TlsFiles>,
    /// The address put in Via and Contact, for NAT.
    #[serde(deserialize_with = "optional")]
    pub advertised_address: Option<Host>,
    /// How often trunk destinations and carriers are pinged with OPTIONS (null: never).
    #[serde(deserialize_with = "optional_duration")]
    pub options_interval: Option<Duration>,
    /// What an INVITE from a source that is neither a carrier nor a trunk's address
    /// gets when no trunk authenticates by digest: nothing, or one stateless 403.
    pub unknown_sources: UnknownSources,
    /// Limits on what one source may send before it is blocked.
    pub shield: ShieldSettings,
    /// The digest realm challenges name. Passwords are hashed with it: credentials
    /// created over the API must be created again after it changes.
    pub realm: String,
}

/// `sip.shield:` (read at start; a reload does not change it).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShieldSettings {
    /// Packets a second from one source (carriers and trunks' addresses exempt).
    pub requests_per_second: u32,
    /// Failed authentications a minute, per source and per user name.
    pub auth_failures_per_minute: u32,
    /// The first block; it doubles each time a source is blocked again, up to 1h.
    #[serde(deserialize_with = "duration")]
    pub block: Duration,
}

impl Default for ShieldSettings {
    fn default() -> Self {
        let d = crate::sip::shield::ShieldConfig::default();
        ShieldSettings {
            requests_per_second: d.per_second,
            auth_failures_per_minute: d.auth_failures,
            block: d.block,
        }
    }
}

impl ShieldSettings {
    /// As the shield takes them.
    pub fn shield(&self) -> crate::sip::shield::ShieldConfig {
        crate::sip::shield::ShieldConfig {
            per_second: self.requests_per_second,
            auth_failures: self.auth_failures_per_minute,
            block: self.block,
        }
    }
}

/// `sip.unknown_sources:`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownSources {
    /// No answer at all (a scanner learns nothing; a spoofed source gets nothing).
    #[default]
    Drop,
    /// One 403, sent statelessly.
    Reject,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: vec![
                Listen {
                    transport: crate::sip::Transport::Udp,
                    addr: SocketAddr::from(([127, 0, 0, 1], 5060)),
                },
                Listen {
                    transport: crate::sip::Transport::Tcp,
                    addr: SocketAddr::from(([127, 0, 0, 1], 5060)),
                },
            ],
            tls: None,
            advertised_address: None,
            options_interval: Some(Duration::from_secs(30)),
            unknown_sources: UnknownSources::Drop,
            shield: ShieldSettings::default(),
            realm: crate::routing::DEFAULT_REALM.to_string(),
        }
    }
}

/// `sip.tls:`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// Certificate chain, PEM.
    pub cert: Option<PathBuf>,
    /// Private key, PEM.
    pub key: Option<PathBuf>,
    /// CA bundle for verifying servers we connect to.
    pub ca: Option<PathBuf>,
}

/// `api:`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Listening address of the HTTP API.
    #[serde(deserialize_with = "parsed")]
    pub listen: SocketAddr,
    /// The operator's token for `/v2/accounts` and `/v2/carriers` (else the
    /// `CALLFLOW_ADMIN_TOKEN` environment variable; neither: those answer 404).
    pub admin_token: Option<String>,
}

impl ApiConfig {
    /// The admin token: the file's, else `CALLFLOW_ADMIN_TOKEN`'s, never empty.
    pub fn admin_token(&self) -> Option<String> {
        self.admin_token
            .clone()
            .or_else(|| std::env::var("CALLFLOW_ADMIN_TOKEN").ok())
            .filter(|t| !t.is_empty())
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_token: None,
        }
    }
}

/// A PSTN carrier.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarrierConfig {
    /// Its name, for logs.
    pub name: String,
    /// Where calls to the PSTN go, e.g. `sip:10.1.0.1:5060;transport=tcp`.
    #[serde(deserialize_with = "sip_uri")]
    pub uri: SipUri,
    /// Source addresses its INVITEs come from (CIDR).
    #[serde(default, deserialize_with = "cidrs")]
    pub addresses: Vec<IpNet>,
    /// Lower is tried first.
    #[serde(default)]
    pub priority: u32,
    /// Most simultaneous calls.
    pub max_channels: Option<u32>,
}

/// A partner trunk.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkConfig {
    /// Its id, as in `sip:<trunk_sid>`.
    pub sid: String,
    /// The partner's SIP endpoints: a URI (priority in list order), or
    /// `{ uri, priority, weight }` (lower priority first; weight shares calls among
    /// equal priorities, RFC 2782 style).
    #[serde(default)]
    pub destinations: Vec<DestinationConfig>,
    /// Where the partner's outbound INVITEs may come from (CIDR).
    #[serde(default, deserialize_with = "cidrs")]
    pub whitelisted_ips: Vec<IpNet>,
    /// Its phone numbers.
    #[serde(default)]
    pub numbers: Vec<NumberConfig>,
    /// Most simultaneous calls.
    pub max_channels: Option<u32>,
    /// Most new calls per second.
    pub max_cps: Option<u32>,
    /// Request-URI user on calls to the trunk, instead of the dialled number.
    pub external_alias: Option<String>,
    /// Digest credentials: the partner may authenticate instead of calling from a
    /// whitelisted address.
    pub credentials: Option<Credentials>,
    /// E.164 prefixes the trunk's calls may reach through the carriers (empty: any).
    #[serde(default, deserialize_with = "prefixes")]
    pub allowed_destinations: Vec<String>,
    /// Longest call of the trunk (default 4h).
    #[serde(default, deserialize_with = "optional_duration")]
    pub max_call_duration: Option<Duration>,
    /// Whether its digest credentials may be answered with MD5 (SHA-256 only by
    /// default, RFC 8760).
    #[serde(default)]
    pub allow_md5: bool,
    /// With media anchored in rtpengine: `tls` (default) gives SRTP towards the
    /// destinations reached over TLS, `required` towards every destination.
    #[serde(default)]
    pub srtp: SrtpMode,
    /// The codecs the trunk takes, by encoding name (`PCMA`, `PCMU`); empty: both.
    /// telephone-event is always offered.
    #[serde(default)]
    pub codecs: Vec<String>,
}

/// When a trunk's legs get SRTP (media anchored in rtpengine).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SrtpMode {
    /// Towards destinations reached over TLS.
    #[default]
    Tls,
    /// Towards every destination.
    Required,
}

/// A trunk's digest credentials.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// The username.
    pub username: String,
    /// The password.
    pub password: String,
}

/// A trunk destination.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DestinationConfig {
    /// Just the URI.
    Uri(#[serde(deserialize_with = "sip_uri")] SipUri),
    /// URI, priority and weight.
    Weighted {
        /// The SIP URI.
        #[serde(deserialize_with = "sip_uri")]
        uri: SipUri,
        /// Lower is tried first.
        #[serde(default)]
        priority: u16,
        /// Share among destinations of the same priority.
        #[serde(default)]
        weight: u16,
    },
}

impl DestinationConfig {
    /// The URI.
    pub fn uri(&self) -> &SipUri {
        match self {
            DestinationConfig::Uri(u) | DestinationConfig::Weighted { uri: u, .. } => u,
        }
    }
}

/// A number of a trunk.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumberConfig {
    /// E.164.
    pub number: String,
    /// What an inbound call to it does.
    pub mode: NumberMode,
    /// The flow, for mode `flow`.
    pub flow: Option<String>,
}

/// What an inbound call to a number does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NumberMode {
    /// Run the number's flow.
    Flow,
    /// Connect straight to the trunk's destinations.
    Pstn,
}

/// `webhooks:`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Default timeout of webhook requests.
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
    /// Most dynamic-URL requests after unanswered attempts.
    pub max_attempts_after_fetch: u32,
    /// Whether flows uploaded by accounts may call loopback, private and link-local
    /// addresses (the operator's internal services). Off by default.
    pub allow_private: bool,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            timeout: Duration::from_secs(5),
            max_attempts_after_fetch: 5,
            allow_private: false,
        }
    }
}

/// A configuration that could not be loaded, with where.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{0}: cannot read: {1}")]
    Read(PathBuf, std::io::Error),
    /// YAML or a type is wrong.
    #[error("{file}:{line}:{col}: error: {message}")]
    Syntax {
        /// The file.
        file: PathBuf,
        /// Line, from 1.
        line: usize,
        /// Column, from 1.
        col: usize,
        /// What is wrong.
        message: String,
    },
    /// A value is invalid.
    #[error("{0}: error: {1}")]
    Invalid(PathBuf, String),
}

impl Config {
    /// Reads and checks a configuration file. Relative paths in it (flows, TLS files)
    /// are relative to the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_path_buf(), e))?;
        let mut config = Self::parse(&text, path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.rebase(base);
        Ok(config)
    }

    /// Parses configuration text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| {
                let (line, col) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
                ConfigError::Syntax {
                    file: path.to_path_buf(),
                    line,
                    col,
                    message: name_key(
                        e.to_string().split(" at line ").next().unwrap_or(""),
                        text,
                        line,
                    ),
                }
            })?
        };
        config
            .check()
            .map_err(|m| ConfigError::Invalid(path.to_path_buf(), m))?;
        Ok(config)
    }

    fn rebase(&mut self, base: &Path) {
        let join = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        join(&mut self.flows);
        join(&mut self.recordings.dir);
        if let Some(store) = &mut self.store
            && let Some(path) = store.url.strip_prefix("sqlite://")
        {
            let (file, query) = path
                .split_once('?')
                .map_or((path, None), |(f, q)| (f, Some(q)));
            if Path::new(file).is_relative() && !file.starts_with(':') {
                let joined = base.join(file).display().to_string();
                store.url = match query {
                    Some(q) => format!("sqlite://{joined}?{q}"),
                    None => format!("sqlite://{joined}"),
                };
            }
        }
        if let Some(tls) = &mut self.sip.tls {
            for p in [&mut tls.cert, &mut tls.key, &mut tls.ca]
                .into_iter()
                .flatten()
            {
                join(p);
            }
        }
    }

    /// Checks values serde cannot: addresses, numbers, URIs, uniqueness.
    fn check(&self) -> Result<(), String> {
        let mut sids = std::collections::HashSet::new();
        let mut numbers = std::collections::HashSet::new();
        for (i, t) in self.trunks.iter().enumerate() {
            if !sids.insert(&t.sid) {
                return Err(format!("trunks[{i}]: sid '{}' is used twice", t.sid));
            }
            for (j, n) in t.numbers.iter().enumerate() {
                if !crate::lang::number::is_e164(&n.number) {
                    return Err(format!(
                        "trunks[{i}].numbers[{j}]: '{}' is not an E.164 number",
                        n.number
                    ));
                }
                if !numbers.insert(&n.number) {
                    return Err(format!(
                        "trunks[{i}].numbers[{j}]: {} is used twice",
                        n.number
                    ));
                }
                if n.mode == NumberMode::Flow && n.flow.is_none() {
                    return Err(format!("trunks[{i}].numbers[{j}]: mode flow needs 'flow'"));
                }
            }
            for c in &t.codecs {
                if !["PCMA", "PCMU"].iter().any(|k| k.eq_ignore_ascii_case(c)) {
                    return Err(format!(
                        "trunks[{i}].codecs: '{c}' is not a codec callflow carries (PCMA, PCMU)"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// serde names only the map that holds a value it could not convert (`sip: '…' is
/// not …`); a value callflow refused (its message starts with the quoted value) gets
/// its own key added: the key written before that value, on the first line from the
/// error's position that holds it (`sip.listen: …`).
fn name_key(message: &str, text: &str, line: usize) -> String {
    let Some((path, rest)) = message.split_once(": ") else {
        return message.to_string();
    };
    let Some(value) = rest
        .strip_prefix('\'')
        .and_then(|r| r.split_once('\''))
        .map(|(v, _)| v)
        .filter(|v| !v.is_empty())
    else {
        return message.to_string();
    };
    let is_key_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let key = text
        .lines()
        .skip(line.saturating_sub(1))
        .find_map(|row| row.find(value).map(|at| &row[..at]))
        .and_then(|before| before.rsplit_once(':'))
        .map(|(k, _)| {
            k.trim_end()
                .rsplit(|c: char| !is_key_char(c))
                .next()
                .unwrap_or("")
        });
    match key {
        Some(k) if !k.is_empty() && !path.ends_with(k) => format!("{path}.{k}: {rest}"),
        _ => message.to_string(),
    }
}

/// How long call records are kept when the configuration does not say: 90 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(90 * 86_400);

/// `store:`: a URL, or `{ url, retention }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// `sqlite://FILE` or `postgres://…`.
    pub url: String,
    /// Call records older than this are deleted (`90d`, `12h`, …).
    pub retention: Duration,
}

fn media_key<'de, D: Deserializer<'de>>(d: D) -> Result<Option<MediaConfig>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum One {
        Url(String),
        Weighted { url: String, weight: u32 },
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Rtpengines {
        rtpengine: Vec<One>,
        timeout: Option<String>,
        ng_timeout: Option<String>,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Word(String),
        Map(Rtpengines),
    }
    let err = serde::de::Error::custom;
    let map = match Option::<Raw>::deserialize(d)? {
        None => return Ok(None),
        Some(Raw::Word(w)) if w == "none" => return Ok(None),
        Some(Raw::Word(w)) => {
            return Err(err(format!(
                "media is 'none' or {{ rtpengine: [udp://host:port, ...] }}, not '{w}'"
            )));
        }
        Some(Raw::Map(m)) => m,
    };
    if map.rtpengine.is_empty() {
        return Err(err("media.rtpengine names no rtpengine".to_string()));
    }
    let mut rtpengine = Vec::new();
    for one in map.rtpengine {
        let (url, weight) = match one {
            One::Url(u) => (u, 1),
            One::Weighted { url, weight } => (url, weight),
        };
        let address = url
            .strip_prefix("udp://")
            .filter(|a| {
                a.rsplit_once(':')
                    .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            })
            .ok_or_else(|| err(format!("rtpengine '{url}': expected udp://host:port")))?;
        rtpengine.push(RtpengineConfig {
            address: address.to_string(),
            weight,
        });
    }
    let dur = |v: Option<String>, default: u64| -> Result<Duration, D::Error> {
        match v {
            None => Ok(Duration::from_secs(default)),
            Some(s) => parse_duration(s.trim()).map_err(|e| err(format!("'{s}': {e}"))),
        }
    };
    Ok(Some(MediaConfig {
        rtpengine,
        timeout: dur(map.timeout, 60)?,
        ng_timeout: dur(map.ng_timeout, 1)?,
    }))
}

fn store_key<'de, D: Deserializer<'de>>(d: D) -> Result<Option<StoreConfig>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Url(String),
        Full {
            url: String,
            retention: Option<String>,
        },
    }
    let Some(raw) = Option::<Raw>::deserialize(d)? else {
        return Ok(None);
    };
    let (url, retention) = match raw {
        Raw::Url(url) => (url, None),
        Raw::Full { url, retention } => (url, retention),
    };
    let retention = match retention {
        None => DEFAULT_RETENTION,
        Some(r) => {
            parse_retention(&r).map_err(|e| serde::de::Error::custom(format!("'{r}': {e}")))?
        }
    };
    Ok(Some(StoreConfig { url, retention }))
}

/// `90d`, or a duration such as `12h`; at least a second.
fn parse_retention(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Some(days) = s.strip_suffix('d') {
        return days
            .parse::<u64>()
            .ok()
            .filter(|d| (1..=36_500).contains(d))
            .map(|d| Duration::from_secs(d * 86_400))
            .ok_or_else(|| "days must be from 1 to 36500".to_string());
    }
    parse_duration(s)
}

/// Parses a SIP URI from the configuration.
pub fn parse_sip_uri(s: &str) -> Result<SipUri, String> {
    match Uri::parse(s) {
        Ok(Uri::Sip(u)) => Ok(u),
        Ok(_) => Err(format!("'{s}' is not a sip: or sips: URI")),
        Err(e) => Err(format!("'{s}': {e}")),
    }
}

/// Parses `10.0.0.0/8`, `2001:db8::/32` or a bare address (a /32 or /128).
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("'{s}' is not an address or CIDR block"))
}

/// A string parsed with `parse`; its error becomes serde's, which carries the key's
/// path and position.
fn with<'de, D, T, E: Display>(d: D, parse: impl Fn(&str) -> Result<T, E>) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    let s = String::deserialize(d)?;
    parse(s.trim()).map_err(|e| serde::de::Error::custom(format!("'{s}': {e}")))
}

fn parsed<'de, D: Deserializer<'de>, T: FromStr<Err: Display>>(d: D) -> Result<T, D::Error> {
    with(d, str::parse::<T>)
}

fn list<'de, D: Deserializer<'de>, T: FromStr<Err: Display>>(d: D) -> Result<Vec<T>, D::Error> {
    let items = Vec::<String>::deserialize(d)?;
    items
        .iter()
        .map(|s| {
            s.trim()
                .parse::<T>()
                .map_err(|e| serde::de::Error::custom(format!("'{s}': {e}")))
        })
        .collect()
}

fn workers<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    with(d, |s| match s.parse::<usize>() {
        Ok(n @ 1..=256) => Ok(n),
        _ => Err("workers must be a number from 1 to 256"),
    })
}

fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Host>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) => Host::parse(s.trim()).map(Some).map_err(|e| {
            serde::de::Error::custom(format!("'{s}' is not an address or host name: {e}"))
        }),
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    with(d, parse_duration)
}

fn optional_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) => parse_duration(s.trim())
            .map(Some)
            .map_err(|e| serde::de::Error::custom(format!("'{s}': {e}"))),
    }
}

fn prefixes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let list = Vec::<String>::deserialize(d)?;
    for p in &list {
        if !crate::lang::number::is_e164_prefix(p) {
            return Err(serde::de::Error::custom(format!(
                "'{p}' is not an E.164 prefix such as +91"
            )));
        }
    }
    Ok(list)
}

fn sip_uri<'de, D: Deserializer<'de>>(d: D) -> Result<SipUri, D::Error> {
    let s = String::deserialize(d)?;
    parse_sip_uri(s.trim()).map_err(serde::de::Error::custom)
}

fn cidrs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| parse_cidr(s.trim()).map_err(serde::de::Error::custom))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_settings_are_typed_and_a_bad_one_is_located() {
        let text = "sip:\n  unknown_sources: reject\n  realm: example.net\n  shield: { requests_per_second: 50, auth_failures_per_minute: 3, block: 2m }\ntrunks:\n  - sid: t\n    allowed_destinations: [\"+91\", \"+1\"]\n    max_call_duration: 30m\n";
        let c = Config::parse(text, Path::new("c.yaml")).unwrap();
        assert_eq!(c.sip.unknown_sources, UnknownSources::Reject);
        assert_eq!(c.sip.realm, "example.net");
        assert_eq!(c.sip.shield.block, Duration::from_secs(120));
        assert_eq!(c.trunks[0].allowed_destinations, ["+91", "+1"]);
        assert_eq!(
            c.trunks[0].max_call_duration,
            Some(Duration::from_secs(1800))
        );
        let bad = "trunks:\n  - sid: t\n    allowed_destinations: [\"91\"]\n";
        let e = Config::parse(bad, Path::new("c.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("c.yaml:2:") && e.contains("trunks[0].allowed_destinations: '91' is not"),
            "{e}"
        );
        let c = Config::parse("", Path::new("c.yaml")).unwrap();
        assert_eq!(c.sip.unknown_sources, UnknownSources::Drop);
        assert_eq!(c.sip.realm, "sip");
    }

    #[test]
    fn media_is_none_or_rtpengines_and_a_bad_one_is_located() {
        let c = Config::parse("media: none\n", Path::new("c.yaml")).unwrap();
        assert_eq!(c.media, None);
        assert_eq!(c.recordings.dir, PathBuf::from("recordings"));
        let text = "media: { rtpengine: [\"udp://127.0.0.1:2223\", { url: \"udp://10.0.0.2:2223\", weight: 3 }], timeout: 30s }\nrecordings: { dir: rec, url: \"https://cf.example.com\" }\ntrunks:\n  - sid: t\n    srtp: required\n    codecs: [PCMA]\n";
        let c = Config::parse(text, Path::new("c.yaml")).unwrap();
        let m = c.media.unwrap();
        assert_eq!(m.rtpengine.len(), 2);
        assert_eq!(m.rtpengine[1].address, "10.0.0.2:2223");
        assert_eq!(m.rtpengine[1].weight, 3);
        assert_eq!(
            (m.timeout, m.ng_timeout),
            (Duration::from_secs(30), Duration::from_secs(1))
        );
        assert_eq!(c.trunks[0].srtp, SrtpMode::Required);
        assert_eq!(c.recordings.url.as_deref(), Some("https://cf.example.com"));
        for (bad, says) in [
            ("media: rtpengine\n", "media is 'none' or"),
            (
                "media: { rtpengine: [\"tcp://1.2.3.4:2223\"] }\n",
                "expected udp://host:port",
            ),
            ("media: { rtpengine: [] }\n", "names no rtpengine"),
            ("workers: 0\n", "workers must be a number from 1 to 256"),
            ("workers: many\n", "workers must be a number from 1 to 256"),
            (
                "trunks:\n  - sid: t\n    codecs: [opus]\n",
                "'opus' is not a codec",
            ),
        ] {
            let e = Config::parse(bad, Path::new("c.yaml"))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("c.yaml") && e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn defaults_and_design_example() {
        let c = Config::parse("", Path::new("c.yaml")).unwrap();
        assert_eq!(c.sip.listen.len(), 2);
        let text = r#"
sip:
  listen: [udp://127.0.0.1:5060, tcp://127.0.0.1:5060]
  advertised_address: 203.0.113.5
api: { listen: 127.0.0.1:8080 }
store: sqlite://callflow.db
flows: flows/
carriers:
  - { name: telco-a, uri: "sip:10.1.0.1:5060;transport=tcp", addresses: [10.1.0.1/32], priority: 1, max_channels: 500 }
trunks:
  - sid: trunk_2134
    destinations: ["sip:bot.partner.example.com:5061;transport=tls"]
    whitelisted_ips: [203.0.113.10/32]
    numbers:
      - { number: "+918047112233", mode: flow, flow: bot-to-agent }
      - { number: "+918047112234", mode: pstn }
    max_channels: 100
    max_cps: 10
    external_alias: "+918047112233"
webhooks: { timeout: 5s, max_attempts_after_fetch: 5 }
reserved_header_prefixes: [X-Callflow-]
"#;
        let c = Config::parse(text, Path::new("c.yaml")).unwrap();
        assert_eq!(c.trunks[0].numbers[1].mode, NumberMode::Pstn);
    }

    #[test]
    fn errors_name_file_and_place() {
        let e = Config::parse("sip:\n  lisen: []\n", Path::new("c.yaml")).unwrap_err();
        let s = e.to_string();
        assert!(
            s.starts_with("c.yaml:2:3: error: sip: unknown field `lisen`"),
            "{s}"
        );
        let e = Config::parse(
            "trunks:\n  - sid: t\n    numbers: [{ number: \"12\", mode: pstn }]\n",
            Path::new("c.yaml"),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "c.yaml: error: trunks[0].numbers[0]: '12' is not an E.164 number"
        );
    }

    #[test]
    fn bad_values_are_refused_at_load_with_the_key() {
        let cases = [
            (
                "sip:\n  advertised_address: \"not a host!\"\n",
                "sip.advertised_address",
                2,
            ),
            (
                "sip:\n  options_interval: soon\n",
                "sip.options_interval",
                2,
            ),
            ("sip:\n  listen: [\"udp://nowhere\"]\n", "sip.listen", 2),
            ("webhooks:\n  timeout: 5 parsecs\n", "webhooks.timeout", 2),
            ("outbound:\n  failover: [\"7xx\"]\n", "outbound.failover", 2),
            (
                "carriers:\n  - name: a\n    uri: \"http://x\"\n",
                "carriers[0].uri",
                2,
            ),
            (
                "trunks:\n  - sid: t\n    whitelisted_ips: [\"10.0.0.300\"]\n",
                "trunks[0].whitelisted_ips",
                2,
            ),
        ];
        for (text, key, line) in cases {
            let e = Config::parse(text, Path::new("c.yaml"))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&format!("c.yaml:{line}:")) && e.contains(key),
                "{text:?} gave {e}"
            );
        }
        let c = Config::parse(
            "sip: { advertised_address: 203.0.113.5, options_interval: null }\noutbound: { ring_timeout: 20s, failover: [\"486\", \"5xx\"] }\n",
            Path::new("c.yaml"),
        )
        .unwrap();
        assert_eq!(c.sip.advertised_address, Host::parse("203.0.113.5").ok());
        assert_eq!(c.sip.options_interval, None);
        assert_eq!(c.outbound.ring_timeout, Duration::from_secs(20));
        assert!(c.outbound.fails_over(486) && c.outbound.fails_over(503));
        assert!(!c.outbound.fails_over(408));
    }
}
