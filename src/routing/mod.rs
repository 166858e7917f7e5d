//! Routing data: numbers to flows or trunks, trunks and their destinations, carriers
//! and the addresses they call from (DESIGN.md §1, §5, §6).
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

use crate::config::{Config, DestinationConfig, NumberMode, cidr, sip_uri};
use crate::flow::Flow;
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
    /// Digest username and password, when the trunk may authenticate.
    pub credentials: Option<(String, String)>,
}

/// What an inbound number does.
#[derive(Debug, Clone)]
pub enum NumberTarget {
    /// Runs this flow.
    Flow(Arc<Flow>),
    /// Goes straight to the trunk's destinations.
    Pstn,
}

/// A number and its trunk.
#[derive(Debug, Clone)]
pub struct NumberRoute {
    /// The trunk that owns the number.
    pub trunk: Arc<Trunk>,
    /// What a call to it does.
    pub target: NumberTarget,
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
    Forbidden(String),
}

/// The routing table.
#[derive(Debug, Default)]
pub struct Routing {
    carriers: Vec<Carrier>,
    trunks: HashMap<String, Arc<Trunk>>,
    numbers: HashMap<String, NumberRoute>,
    flows: HashMap<String, Arc<Flow>>,
    /// For `callflow simulate`: any trunk sid resolves to a stand-in trunk.
    simulated: bool,
    /// What the OPTIONS pings found.
    health: Arc<health::Health>,
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
        weighted_order(items)
    }
}

/// Orders `(priority, weight, item)`: lower priority first; within a priority, RFC
/// 2782's weighted random selection (weight-0 entries first, then each pick with a
/// chance proportional to its weight).
pub fn weighted_order<T>(mut items: Vec<(u16, u16, T)>) -> Vec<T> {
    items.sort_by_key(|i| i.0);
    let mut out = Vec::with_capacity(items.len());
    while !items.is_empty() {
        let priority = items[0].0;
        let end = items.iter().take_while(|i| i.0 == priority).count();
        let mut group: Vec<_> = items.drain(..end).collect();
        group.sort_by_key(|i| i.1 != 0);
        while !group.is_empty() {
            let total: u32 = group.iter().map(|i| u32::from(i.1)).sum();
            let pick = if total == 0 {
                0
            } else {
                rand::random_range(0..=total)
            };
            let mut running = 0;
            let at = group
                .iter()
                .position(|i| {
                    running += u32::from(i.1);
                    running >= pick
                })
                .unwrap_or(0);
            out.push(group.remove(at).2);
        }
    }
    out
}

impl Routing {
    /// Builds the table; a number whose flow is not loaded is an error.
    pub fn build(config: &Config, flows: Vec<Flow>) -> Result<Routing, String> {
        Self::build_with_health(config, flows, Arc::default())
    }

    /// Builds the table sharing `health` (kept across reloads).
    pub fn build_with_health(
        config: &Config,
        flows: Vec<Flow>,
        health: Arc<health::Health>,
    ) -> Result<Routing, String> {
        let flows: HashMap<String, Arc<Flow>> = flows
            .into_iter()
            .map(|f| (f.id.clone(), Arc::new(f)))
            .collect();
        let mut carriers = Vec::new();
        for c in &config.carriers {
            carriers.push(Carrier {
                name: c.name.clone(),
                uri: sip_uri(&c.uri)?,
                addresses: c
                    .addresses
                    .iter()
                    .map(|a| cidr(a))
                    .collect::<Result<_, _>>()?,
                priority: c.priority,
                max_channels: c.max_channels,
            });
        }
        carriers.sort_by_key(|c| c.priority);
        let mut trunks = HashMap::new();
        let mut numbers = HashMap::new();
        for t in &config.trunks {
            let trunk = Arc::new(Trunk {
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
                        sip_uri(d.uri()).map(|u| (priority, weight, u))
                    })
                    .collect::<Result<_, _>>()?,
                whitelisted: t
                    .whitelisted_ips
                    .iter()
                    .map(|a| cidr(a))
                    .collect::<Result<_, _>>()?,
                external_alias: t.external_alias.clone(),
                max_channels: t.max_channels,
                max_cps: t.max_cps,
                credentials: t
                    .credentials
                    .as_ref()
                    .map(|c| (c.username.clone(), c.password.clone())),
            });
            for n in &t.numbers {
                let target = match (n.mode, &n.flow) {
                    (NumberMode::Pstn, _) => NumberTarget::Pstn,
                    (NumberMode::Flow, Some(id)) => {
                        NumberTarget::Flow(flows.get(id).cloned().ok_or_else(|| {
                            format!("number {}: flow '{id}' is not loaded", n.number)
                        })?)
                    }
                    (NumberMode::Flow, None) => {
                        return Err(format!("number {}: mode flow needs 'flow'", n.number));
                    }
                };
                numbers.insert(
                    n.number.clone(),
                    NumberRoute {
                        trunk: trunk.clone(),
                        target,
                    },
                );
            }
            trunks.insert(t.sid.clone(), trunk);
        }
        Ok(Routing {
            carriers,
            trunks,
            numbers,
            flows,
            simulated: false,
            health,
        })
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
        let Some(trunk) = self
            .trunks
            .values()
            .find(|t| t.whitelisted.iter().any(|n| n.contains(&source)))
        else {
            return Inbound::Forbidden(format!(
                "{source} is neither a carrier nor a whitelisted trunk address"
            ));
        };
        let caller = normalise(caller);
        let owns = self
            .numbers
            .get(&caller)
            .is_some_and(|r| r.trunk.sid == trunk.sid);
        if !owns {
            return Inbound::Forbidden(format!(
                "caller id {caller} is not a number of trunk {}",
                trunk.sid
            ));
        }
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

    /// Whether `source` is one of a carrier's addresses.
    pub fn is_carrier(&self, source: IpAddr) -> bool {
        self.carriers
            .iter()
            .any(|c| c.addresses.iter().any(|n| n.contains(&source)))
    }

    /// Routing for `callflow simulate`: every trunk sid names a stand-in trunk with
    /// one destination `sip:<sid>.simulated`, and one stand-in carrier.
    pub fn simulated() -> Routing {
        let carrier = Carrier {
            name: "simulated".into(),
            uri: SipUri::new(
                None,
                crate::sip::Host::Domain("pstn.simulated".into()),
                None,
            ),
            addresses: Vec::new(),
            priority: 0,
            max_channels: None,
        };
        Routing {
            carriers: vec![carrier],
            simulated: true,
            ..Routing::default()
        }
    }

    /// A trunk by sid.
    pub fn trunk(&self, sid: &str) -> Option<Arc<Trunk>> {
        match self.trunks.get(sid) {
            Some(t) => Some(t.clone()),
            None if self.simulated => Some(Arc::new(Trunk {
                sid: sid.to_string(),
                destinations: vec![(
                    0,
                    0,
                    SipUri::new(
                        None,
                        crate::sip::Host::Domain(format!("{sid}.simulated")),
                        None,
                    ),
                )],
                whitelisted: Vec::new(),
                external_alias: None,
                max_channels: None,
                max_cps: None,
                credentials: None,
            })),
            None => None,
        }
    }

    /// The carriers, by priority.
    pub fn carriers(&self) -> &[Carrier] {
        &self.carriers
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
}

/// The number in a Request-URI user part, as E.164: visual separators removed, a
/// leading `+` added when missing.
pub fn normalise(user: &str) -> String {
    let digits: String = user
        .chars()
        .filter(|c| !matches!(c, '-' | '.' | '(' | ')' | ' '))
        .collect();
    match digits.strip_prefix('+') {
        Some(_) => digits,
        None => format!("+{digits}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_first_then_weight_shares() {
        let mut heavy_first = 0;
        for _ in 0..2000 {
            let order = weighted_order(vec![
                (20, 0, "backup"),
                (10, 90, "heavy"),
                (10, 10, "light"),
            ]);
            assert_eq!(order[2], "backup", "lower priority last");
            heavy_first += usize::from(order[0] == "heavy");
        }
        // Expected 90 %; the bounds are far outside any plausible random swing.
        assert!((1600..=1960).contains(&heavy_first), "{heavy_first}");
    }

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
                Inbound::Forbidden(_) => "403",
                _ => "other",
            };
        assert_eq!(class("203.0.113.7"), "403");
        assert_eq!(class("203.0.113.8"), "out");
        assert_eq!(class("203.0.113.11"), "out");
        assert_eq!(class("203.0.113.12"), "403");
        assert_eq!(class("2001:db8::1"), "out");
        assert_eq!(class("2001:db8::2"), "403");
    }
}
