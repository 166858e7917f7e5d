//! The engine's metrics, in Prometheus' text format through `prometheus-client`:
//! counters and histograms the engine updates as it goes (calls by direction and
//! status, refused INVITEs by reason, webhook latency and failures), and values read
//! when `/metrics` is scraped (active calls, SIP messages, channels, transactions).

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A call's direction and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// `incoming`, `outbound-dial`, `outbound-api`.
    pub direction: String,
    /// `completed`, `failed`, `busy`, `no-answer`, `canceled`.
    pub status: String,
}

/// One label, `reason`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why.
    pub reason: String,
}

/// A SIP message's direction and method (requests) or class (responses).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SipLabels {
    /// `in` or `out`.
    pub direction: String,
    /// The method, or the class (`2xx`).
    pub kind: String,
}

/// One label, `trunk` (or carrier).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    /// `trunk:<sid>` or `carrier:<name>`.
    pub limit: String,
}

/// Every metric.
pub struct Metrics {
    registry: Registry,
    /// Calls ended, by direction and status.
    pub calls: Family<CallLabels, Counter>,
    /// INVITEs refused, by reason (`not_whitelisted`, `caller_id`, `limit`, `auth`).
    pub rejected: Family<ReasonLabels, Counter>,
    /// Webhook request latency, seconds.
    pub webhook_latency: Histogram,
    /// Webhook requests that got no answer (timeout, connection, body).
    pub webhook_failures: Counter,
    /// Calls in progress.
    pub active_calls: Gauge,
    /// SIP requests by method.
    pub sip_requests: Family<SipLabels, Counter>,
    /// SIP responses by class.
    pub sip_responses: Family<SipLabels, Counter>,
    /// Channels in use per trunk and carrier.
    pub channels: Family<LimitLabels, Gauge>,
    /// Transactions alive.
    pub transactions: Gauge,
    /// Packets dropped unread because their source is blocked.
    pub shield_dropped: Counter,
    /// SIP messages that broke RFC 3261, by what became of them (`answered` 400 or
    /// 505, `dropped`, `unframed`: a stream connection closed).
    pub sip_malformed: Family<ReasonLabels, Counter>,
    /// Sources blocked, by reason (`flood`, `auth_failures`).
    pub shield_blocks: Family<ReasonLabels, Counter>,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("callflow");
        let m = Metrics {
            calls: Family::default(),
            rejected: Family::default(),
            webhook_latency: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            webhook_failures: Counter::default(),
            active_calls: Gauge::default(),
            sip_requests: Family::default(),
            sip_responses: Family::default(),
            channels: Family::default(),
            transactions: Gauge::default(),
            shield_dropped: Counter::default(),
            shield_blocks: Family::default(),
            sip_malformed: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "calls",
            "Calls ended, by direction and status",
            m.calls.clone(),
        );
        registry.register(
            "rejected_invites",
            "INVITEs refused, by reason",
            m.rejected.clone(),
        );
        registry.register(
            "webhook_latency_seconds",
            "Webhook request latency",
            m.webhook_latency.clone(),
        );
        registry.register(
            "webhook_failures",
            "Webhook requests without an answer",
            m.webhook_failures.clone(),
        );
        registry.register("active_calls", "Calls in progress", m.active_calls.clone());
        registry.register(
            "sip_requests",
            "SIP requests by direction and method",
            m.sip_requests.clone(),
        );
        registry.register(
            "sip_responses",
            "SIP responses by direction and class",
            m.sip_responses.clone(),
        );
        registry.register(
            "channels_in_use",
            "Channels in use per trunk and carrier",
            m.channels.clone(),
        );
        registry.register(
            "transactions_alive",
            "SIP transactions alive, those waiting out their last timer (D, I, J, K, L) included",
            m.transactions.clone(),
        );
        registry.register(
            "shield_dropped_packets",
            "Packets dropped unread from blocked sources",
            m.shield_dropped.clone(),
        );
        registry.register(
            "shield_blocks",
            "Sources blocked, by reason",
            m.shield_blocks.clone(),
        );
        registry.register(
            "sip_malformed",
            "Malformed SIP messages, answered or dropped",
            m.sip_malformed.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Counts a refused INVITE.
    pub fn reject(&self, reason: &str) {
        self.rejected
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}
