//! Routing data: numbers to flows or trunks, trunks and their destinations, carriers
//! and the addresses they call from (docs/architecture.md §1, §5, §6).
//!
//! One immutable [`Routing`] is built from the configuration and the loaded flows; a
//! call keeps the `Arc` it started with, so a later reload cannot change a call in
//! progress.

pub mod health;
pub mod limits;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::applets::connect::{Connect, Dial, Target};
use crate::applets::{AppletRef, Hangup};
use crate::config::{Config, DestinationConfig, NumberMode, OutboundConfig};
use crate::flow::{Flow, Transition};
use crate::lang::number::normalise;
use crate::sip::digest::DigestSecret;

/// The realm of the digest challenges trunks answer.
pub const DEFAULT_REALM: &str = "sip";
use crate::runtime::{CarrierRoute, Channel, Directory, DirectoryError, TrunkRoute};
use crate::sip::SipUri;

/// A PSTN carrier.
#[derive(Debug, Clone)]
pub struct Carrier {
    /// Its name.
    pub name: String,
    /// Where PSTN calls go.
    pub uri: SipUri,
    /// Where its INVITEs come from.
    pub addresses: Vec<IpNet>,
    /// Lower first.
    pub priority: u32,
    /// Most simultaneous calls.
    pub max_channels: Option<u32>,
}

/// A partner trunk.
#[derive(Debug, Clone)]
pub struct Trunk {
    /// Its id.
    pub sid: String,
    /// The partner's endpoints: (priority, weight, URI).
    pub destinations: Vec<(u16, u16, SipUri)>,
    /// Where the partner's INVITEs may come from.
    pub whitelisted: Vec<IpNet>,
    /// Request-URI user on calls to the trunk.
    pub external_alias: Option<String>,
    /// Most simultaneous calls.
    pub max_channels: Option<u32>,
    /// Most new calls per second.
    pub max_cps: Option<u32>,
    /// Digest secrets, when the trunk may authenticate.
    pub credentials: Vec<DigestSecret>,
    /// The account that owns it (`None` for the file's trunks).
    pub account: Option<String>,
    /// E.164 prefixes its calls may reach through the carriers (empty: any).
    pub allowed_destinations: Vec<String>,
    /// Its longest call.
    pub max_call_duration: std::time::Duration,
    /// Whether its credentials may be answered with MD5.
    pub allow_md5: bool,
    /// How its legs' media is offered (SRTP, codecs).
    pub media: crate::runtime::LegMedia,
}

/// The longest call of a trunk that names none: four hours.
pub const DEFAULT_MAX_CALL_DURATION: std::time::Duration = std::time::Duration::from_secs(4 * 3600);

/// A number and its trunk.
#[derive(Debug, Clone)]
pub struct NumberRoute {
    /// The trunk that owns the number.
    pub trunk: Arc<Trunk>,
    /// The flow a call to it runs: the number's own, or for a `pstn` number one
    /// built at load time that connects to the trunk and hangs up.
    pub flow: Arc<Flow>,
}

/// Where an inbound INVITE goes.
#[derive(Debug, Clone)]
pub enum Inbound {
    /// From a carrier, to a known number.
    Number {
        /// The number, normalised to E.164.
        number: String,
        /// Its route.
        route: NumberRoute,
    },
    /// From a carrier, to a number nobody has: 404.
    UnknownNumber(String),
    /// From a trunk's whitelisted address, with one of its numbers as caller id: a
    /// call to the PSTN.
    Outbound {
        /// The partner's trunk.
        trunk: Arc<Trunk>,
        /// The caller id, E.164.
        caller: String,
        /// The dialled number, E.164.
        dialled: String,
    },
    /// Not allowed: 403, with why.
    Forbidden(Refusal, String),
}

/// Why an INVITE is not allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its source is neither a carrier's nor a trunk's.
    NotWhitelisted,
    /// Its caller id is not a number of a trunk that allows its source.
    CallerId,
}

impl Refusal {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NotWhitelisted => "not_whitelisted",
            Refusal::CallerId => "caller_id",
        }
    }
}

/// The routing table.
#[derive(Debug, Default)]
pub struct Routing {
    carriers: Vec<Carrier>,
    trunks: HashMap<String, Arc<Trunk>>,
    numbers: HashMap<String, NumberRoute>,
    flows: HashMap<String, Arc<Flow>>,
    /// Calls to the PSTN: ring timeout and failover statuses.
    outbound: OutboundConfig,
    /// What the OPTIONS pings found (kept across reloads).
    health: Arc<health::Health>,
    /// Channel and rate counters (kept across reloads).
    limits: Arc<limits::Limits>,
    /// Accounts' call caps, by sid.
    accounts: HashMap<String, AccountLimits>,
}

/// An account's call caps (`None`: no cap).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccountLimits {
    /// Most calls in progress at once.
    pub max_concurrent_calls: Option<u32>,
    /// Most calls started in one UTC day.
    pub max_calls_per_day: Option<u32>,
}

/// What outlives a reload: the pings' findings and the limits' counters.
#[derive(Debug, Clone, Default)]
pub struct Kept {
    /// What the OPTIONS pings found.
    pub health: Arc<health::Health>,
    /// Channel and rate counters.
    pub limits: Arc<limits::Limits>,
}

/// Why a routing table could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    /// A number names a flow that is not loaded.
    #[error("number {number}: flow '{flow}' is not loaded")]
    NoFlow {
        /// The number.
        number: String,
        /// The flow it names.
        flow: String,
    },
    /// A number in flow mode names no flow.
    #[error("number {0}: mode flow needs 'flow'")]
    FlowMissing(String),
}

impl Trunk {
    /// The destinations for one call: by priority, and within a priority in an order
    /// drawn by weight (RFC 2782), so calls spread as the weights say.
    pub fn ordered_destinations(&self) -> Vec<SipUri> {
        let items = self
            .destinations
            .iter()
            .map(|(p, w, u)| (*p, *w, u.clone()))
            .collect();
        crate::sip::srv::weighted_order(items)
    }
}

impl Routing {
    /// Builds the table; a number whose flow is not loaded is an error.
    pub fn build(config: &Config, flows: Vec<Flow>) -> Result<Routing, RoutingError> {
        Self::build_keeping(config, flows, Kept::default())
    }

    /// Builds the table, keeping the pings' findings and the limits' counters.
    pub fn build_keeping(
        config: &Config,
        flows: Vec<Flow>,
        kept: Kept,
    ) -> Result<Routing, RoutingError> {
        Self::build_with(config, Extra::default(), flows, kept)
    }

    /// Builds the table from the configuration's trunks and `stored` ones (from the
    /// management API's store). A number configured in the file wins over the same
    /// number in the store; a stored number whose flow is not loaded is left out, with
    /// a warning, rather than refusing the whole table.
    pub fn build_with(
        config: &Config,
        stored: Extra,
        flows: Vec<Flow>,
        kept: Kept,
    ) -> Result<Routing, RoutingError> {
        let flows: HashMap<String, Arc<Flow>> = flows
            .into_iter()
            .map(|f| (f.id.clone(), Arc::new(f)))
            .collect();
        let mut carriers: Vec<Carrier> = config
            .carriers
            .iter()
            .map(|c| Carrier {
                name: c.name.clone(),
                uri: c.uri.clone(),
                addresses: c.addresses.clone(),
                priority: c.priority,
                max_channels: c.max_channels,
            })
            .collect();
        for c in stored.carriers {
            if carriers.iter().any(|f: &Carrier| f.name == c.name) {
                tracing::warn!(carrier = %c.name, "carrier defined in the file and the store; the file's stays");
                continue;
            }
            carriers.push(c);
        }
        carriers.sort_by_key(|c| c.priority);
        let mut trunks = HashMap::new();
        let mut numbers = HashMap::new();
        let realm = &config.sip.realm;
        let specs = config
            .trunks
            .iter()
            .map(|t| TrunkSpec::from_config(t, realm));
        for spec in specs.chain(stored.trunks) {
            if trunks.contains_key(&spec.trunk.sid) {
                tracing::warn!(trunk = %spec.trunk.sid, "trunk sid defined twice; the first stays");
                continue;
            }
            let trunk = Arc::new(spec.trunk);
            let pstn = Arc::new(pstn_flow(&trunk.sid));
            for n in spec.numbers {
                let flow = match (n.mode, &n.flow) {
                    (NumberMode::Pstn, _) => Some(pstn.clone()),
                    (NumberMode::Flow, Some(id)) => flows.get(id).cloned(),
                    (NumberMode::Flow, None) => None,
                };
                let Some(flow) = flow else {
                    if spec.from_file {
                        return Err(match n.flow {
                            Some(flow) => RoutingError::NoFlow {
                                number: n.number,
                                flow,
                            },
                            None => RoutingError::FlowMissing(n.number),
                        });
                    }
                    tracing::warn!(number = %n.number, flow = ?n.flow, "stored number's flow is not loaded; left out");
                    continue;
                };
                if numbers.contains_key(&n.number) {
                    tracing::warn!(number = %n.number, "number of two trunks; the first stays");
                    continue;
                }
                let route = NumberRoute {
                    trunk: trunk.clone(),
                    flow,
                };
                numbers.insert(n.number, route);
            }
            trunks.insert(trunk.sid.clone(), trunk);
        }
        Ok(Routing {
            carriers,
            trunks,
            numbers,
            flows,
            outbound: config.outbound.clone(),
            health: kept.health,
            limits: kept.limits,
            accounts: stored.accounts,
        })
    }

    /// Account `sid`'s call caps.
    pub fn account_limits(&self, sid: &str) -> AccountLimits {
        self.accounts.get(sid).copied().unwrap_or_default()
    }

    /// What a reload keeps from this table.
    pub fn kept(&self) -> Kept {
        Kept {
            health: self.health.clone(),
            limits: self.limits.clone(),
        }
    }

    /// The channel and rate counters.
    pub fn limits(&self) -> &limits::Limits {
        &self.limits
    }

    /// Calls to the PSTN: ring timeout and failover statuses.
    pub fn outbound(&self) -> &OutboundConfig {
        &self.outbound
    }

    /// Classifies an INVITE from `source` to the Request-URI user `dialled`, with
    /// the caller id `caller` (the From user).
    pub fn inbound(&self, source: IpAddr, dialled: &str, caller: &str) -> Inbound {
        if self.is_carrier(source) {
            let number = normalise(dialled);
            return match self.numbers.get(&number) {
                Some(route) => Inbound::Number {
                    number,
                    route: route.clone(),
                },
                None => Inbound::UnknownNumber(number),
            };
        }
        let allows = |t: &Trunk| t.whitelisted.iter().any(|n| n.contains(&source));
        if !self.trunks.values().any(|t| allows(t)) {
            return Inbound::Forbidden(
                Refusal::NotWhitelisted,
                format!("{source} is neither a carrier nor a whitelisted trunk address"),
            );
        }
        // Several trunks may allow the same address (partners behind one SBC): the
        // caller id picks the trunk, and must be one of that trunk's numbers.
        let caller = normalise(caller);
        let Some(trunk) = self
            .numbers
            .get(&caller)
            .map(|r| &r.trunk)
            .filter(|t| allows(t))
        else {
            let mut sids: Vec<&str> = self
                .trunks
                .values()
                .filter(|t| allows(t))
                .map(|t| t.sid.as_str())
                .collect();
            sids.sort_unstable();
            return Inbound::Forbidden(
                Refusal::CallerId,
                format!(
                    "caller id {caller} is not a number of trunk {}",
                    sids.join(", ")
                ),
            );
        };
        Inbound::Outbound {
            trunk: trunk.clone(),
            caller,
            dialled: normalise(dialled),
        }
    }

    /// The trunk that owns the number `caller`.
    pub fn trunk_for_caller(&self, caller: &str) -> Option<Arc<Trunk>> {
        self.numbers
            .get(&normalise(caller))
            .map(|r| r.trunk.clone())
    }

    /// The carrier `source` belongs to.
    pub fn carrier_of(&self, source: IpAddr) -> Option<&Carrier> {
        self.carriers
            .iter()
            .find(|c| c.addresses.iter().any(|n| n.contains(&source)))
    }

    /// Whether `source` is a carrier's or a trunk's whitelisted address.
    pub fn is_known_source(&self, source: IpAddr) -> bool {
        self.is_carrier(source)
            || self
                .trunks
                .values()
                .any(|t| t.whitelisted.iter().any(|n| n.contains(&source)))
    }

    /// Whether some trunk with credentials takes MD5 (challenges then offer it).
    pub fn md5_offered(&self) -> bool {
        self.trunks
            .values()
            .any(|t| t.allow_md5 && !t.credentials.is_empty())
    }

    /// Whether some trunk authenticates its calls with digest credentials.
    pub fn has_digest_trunks(&self) -> bool {
        self.trunks.values().any(|t| !t.credentials.is_empty())
    }

    /// Whether `source` is one of a carrier's addresses.
    pub fn is_carrier(&self, source: IpAddr) -> bool {
        self.carriers
            .iter()
            .any(|c| c.addresses.iter().any(|n| n.contains(&source)))
    }

    /// A trunk by sid.
    pub fn trunk(&self, sid: &str) -> Option<Arc<Trunk>> {
        self.trunks.get(sid).cloned()
    }

    /// The trunks `account` owns.
    pub fn trunks_of(&self, account: &str) -> Vec<Arc<Trunk>> {
        self.trunks
            .values()
            .filter(|t| t.account.as_deref() == Some(account))
            .cloned()
            .collect()
    }

    /// The carriers to try, by priority, those found down by pings left out (unless
    /// all are).
    pub fn usable_carriers(&self) -> Vec<Carrier> {
        self.health.usable(self.carriers.clone(), |c| &c.uri)
    }

    /// A trunk's destinations for one call, ordered by priority and weight, those
    /// found down by pings left out (unless all are).
    pub fn usable_destinations(&self, trunk: &Trunk) -> Vec<SipUri> {
        self.health.usable(trunk.ordered_destinations(), |u| u)
    }

    /// What the pings found.
    pub fn health(&self) -> &Arc<health::Health> {
        &self.health
    }

    /// Every URI worth pinging: trunk destinations and carriers.
    pub fn ping_targets(&self) -> Vec<SipUri> {
        let mut seen = std::collections::HashSet::new();
        self.trunks
            .values()
            .flat_map(|t| t.destinations.iter().map(|d| d.2.clone()))
            .chain(self.carriers.iter().map(|c| c.uri.clone()))
            .filter(|u| seen.insert(health::key(u)))
            .collect()
    }

    /// A loaded flow by id.
    pub fn flow(&self, id: &str) -> Option<Arc<Flow>> {
        self.flows.get(id).cloned()
    }

    /// Every loaded flow, by id.
    pub fn flows(&self) -> Vec<Arc<Flow>> {
        let mut all: Vec<Arc<Flow>> = self.flows.values().cloned().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }
}

/// What the store adds to the file's trunks and carriers.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    /// Trunks created over the API.
    pub trunks: Vec<TrunkSpec>,
    /// Carriers created over the API.
    pub carriers: Vec<Carrier>,
    /// Accounts' call caps, by sid.
    pub accounts: HashMap<String, AccountLimits>,
}

/// A number of a trunk, as the file or the store gives it.
#[derive(Debug, Clone)]
pub struct NumberSpec {
    /// E.164.
    pub number: String,
    /// A flow, or straight to the trunk.
    pub mode: NumberMode,
    /// The flow, in flow mode.
    pub flow: Option<String>,
}

/// A trunk and its numbers, from the configuration file or the store.
#[derive(Debug, Clone)]
pub struct TrunkSpec {
    /// The trunk.
    pub trunk: Trunk,
    /// Its numbers.
    pub numbers: Vec<NumberSpec>,
    /// Whether it comes from `callflow.yaml` (an error in it refuses the table).
    pub from_file: bool,
}

impl TrunkSpec {
    /// A trunk of `callflow.yaml`; its passwords are hashed for `realm`.
    pub fn from_config(t: &crate::config::TrunkConfig, realm: &str) -> TrunkSpec {
        TrunkSpec {
            trunk: trunk(t, realm),
            numbers: t
                .numbers
                .iter()
                .map(|n| NumberSpec {
                    number: n.number.clone(),
                    mode: n.mode,
                    flow: n.flow.clone(),
                })
                .collect(),
            from_file: true,
        }
    }
}

/// A trunk as routing keeps it, from its configuration.
fn trunk(t: &crate::config::TrunkConfig, realm: &str) -> Trunk {
    Trunk {
        sid: t.sid.clone(),
        destinations: t
            .destinations
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let (priority, weight) = match d {
                    DestinationConfig::Uri(_) => (u16::try_from(i).unwrap_or(u16::MAX), 0),
                    DestinationConfig::Weighted {
                        priority, weight, ..
                    } => (*priority, *weight),
                };
                (priority, weight, d.uri().clone())
            })
            .collect(),
        whitelisted: t.whitelisted_ips.clone(),
        external_alias: t.external_alias.clone(),
        max_channels: t.max_channels,
        max_cps: t.max_cps,
        credentials: t
            .credentials
            .iter()
            .map(|c| DigestSecret::from_password(&c.username, realm, &c.password))
            .collect(),
        account: None,
        allowed_destinations: t.allowed_destinations.clone(),
        max_call_duration: t.max_call_duration.unwrap_or(DEFAULT_MAX_CALL_DURATION),
        allow_md5: t.allow_md5,
        media: crate::runtime::LegMedia {
            srtp_required: t.srtp == crate::config::SrtpMode::Required,
            plain: false,
            codecs: t.codecs.clone(),
        },
    }
}

/// The flow a `pstn` number runs, built once per trunk as data: connect to the
/// trunk, then hang up.
pub fn pstn_flow(trunk: &str) -> Flow {
    let connect: AppletRef = Arc::new(Connect {
        dial: Dial::To(vec![Target::Trunk(trunk.to_string())]),
        ..Connect::default()
    });
    let bye: AppletRef = Arc::new(Hangup::default());
    let id: String = trunk
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    Flow::from_applets(
        &format!("pstn-{id}"),
        vec![
            ("trunk", connect, vec![(Transition::Any, "bye")]),
            ("bye", bye, Vec::new()),
        ],
    )
}

impl Directory for Routing {
    fn trunk(&self, sid: &str) -> Result<TrunkRoute, DirectoryError> {
        let trunk = self
            .trunk(sid)
            .ok_or_else(|| DirectoryError::NoTrunk(sid.to_string()))?;
        if trunk.destinations.is_empty() {
            return Err(DirectoryError::NoDestinations(sid.to_string()));
        }
        Ok(TrunkRoute {
            destinations: self.usable_destinations(&trunk),
            external_alias: trunk.external_alias.clone(),
            media: trunk.media.clone(),
        })
    }

    fn carriers(&self) -> Vec<CarrierRoute> {
        self.usable_carriers()
            .into_iter()
            .map(|c| CarrierRoute {
                name: c.name,
                uri: c.uri,
            })
            .collect()
    }

    fn carrier_channel(&self, name: &str) -> Option<Channel> {
        let max = self
            .carriers
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.max_channels);
        let permit = self
            .limits
            .acquire(&limits::carrier_key(name), max, None)
            .ok()?;
        Some(Box::new(permit))
    }

    fn fails_over(&self, status: u16) -> bool {
        self.outbound.fails_over(status)
    }
}

/// The directory as one trunk's call sees it: the routing table, with the trunk's
/// allowed destinations applied to every number dialled through the carriers.
#[derive(Debug, Clone, Copy)]
pub struct TrunkDirectory<'a> {
    /// The routing table.
    pub routing: &'a Routing,
    /// The call's trunk.
    pub trunk: &'a Trunk,
}

impl Directory for TrunkDirectory<'_> {
    fn trunk(&self, sid: &str) -> Result<TrunkRoute, DirectoryError> {
        Directory::trunk(self.routing, sid)
    }

    fn carriers(&self) -> Vec<CarrierRoute> {
        self.routing.carriers()
    }

    fn carrier_channel(&self, name: &str) -> Option<Channel> {
        self.routing.carrier_channel(name)
    }

    fn fails_over(&self, status: u16) -> bool {
        self.routing.fails_over(status)
    }

    fn destination_allowed(&self, number: &str) -> Result<(), String> {
        if crate::lang::number::allowed_by(&self.trunk.allowed_destinations, number) {
            Ok(())
        } else {
            Err(format!(
                "{number} is not in trunk {}'s allowed_destinations",
                self.trunk.sid
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_edges_v4_and_v6() {
        let config = Config::parse(
            "trunks:\n  - sid: t\n    whitelisted_ips: [203.0.113.8/30, \"2001:db8::/127\"]\n    numbers: [{ number: \"+918047112233\", mode: pstn }]\n",
            std::path::Path::new("c.yaml"),
        )
        .unwrap();
        let r = Routing::build(&config, Vec::new()).unwrap();
        let class =
            |ip: &str| match r.inbound(ip.parse().unwrap(), "+919999999999", "+918047112233") {
                Inbound::Outbound { .. } => "out",
                Inbound::Forbidden(..) => "403",
                _ => "other",
            };
        assert_eq!(class("203.0.113.7"), "403");
        assert_eq!(class("203.0.113.8"), "out");
        assert_eq!(class("203.0.113.11"), "out");
        assert_eq!(class("203.0.113.12"), "403");
        assert_eq!(class("2001:db8::1"), "out");
        assert_eq!(class("2001:db8::2"), "403");
    }

    #[test]
    fn trunks_sharing_an_address_are_told_apart_by_caller_id() {
        let config = Config::parse(
            "trunks:\n  - sid: a\n    whitelisted_ips: [10.0.0.1]\n    numbers: [{ number: \"+918047112233\", mode: pstn }]\n  - sid: b\n    whitelisted_ips: [10.0.0.1]\n    numbers: [{ number: \"+918047112234\", mode: pstn }]\n",
            std::path::Path::new("c.yaml"),
        )
        .unwrap();
        let r = Routing::build(&config, Vec::new()).unwrap();
        let trunk =
            |caller: &str| match r.inbound("10.0.0.1".parse().unwrap(), "+919999999999", caller) {
                Inbound::Outbound { trunk, .. } => trunk.sid.clone(),
                Inbound::Forbidden(_, why) => why,
                _ => "other".into(),
            };
        assert_eq!(trunk("+918047112233"), "a");
        assert_eq!(trunk("+918047112234"), "b");
        assert_eq!(
            trunk("+918047112235"),
            "caller id +918047112235 is not a number of trunk a, b"
        );
    }
}
