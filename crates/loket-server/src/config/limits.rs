//! `[limits]`: per-partner quotas (with overrides per partner) and the gateway's load
//! shedding threshold.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Events a partner may publish per second (accepted or refused alike), as a token
    /// bucket refilled at this rate; 0 means no rate quota.
    #[serde(default = "default_events_per_second")]
    pub events_per_second: u32,
    /// Events a partner may publish at once above the rate (the bucket's size).
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// Events of one partner being checked or stored at once, over all its calls and
    /// streams (a refusal counts until it is queued for the rejection log).
    #[serde(default = "default_in_flight")]
    pub in_flight: u32,
    /// Subscriber streams a partner may have open at once.
    #[serde(default = "default_subscriptions")]
    pub subscriptions: u32,
    /// Named subscriptions (durable cursors) a partner may keep.
    #[serde(default = "default_named_subscriptions")]
    pub named_subscriptions: u32,
    /// Journal queue depth (events and rejections waiting for the writer) above which new
    /// publishes are refused at once with RESOURCE_EXHAUSTED (reason OVERLOADED) rather
    /// than queued; 0 turns load shedding off.
    #[serde(default = "default_shed_queue_depth")]
    pub shed_queue_depth: usize,
    /// Events per second the whole gateway admits (a token bucket over every partner, one
    /// second deep); beyond it publishes are refused at once with RESOURCE_EXHAUSTED
    /// (reason OVERLOADED), so that the accepted ones keep their latency when the CPU is
    /// the bottleneck (the journal queue then never fills). Set it to about what
    /// `loket bench` measures as saturation on the machine; 0 turns it off.
    #[serde(default)]
    pub gateway_events_per_second: u32,
    /// Unary publishes the whole gateway serves at once (from their arrival to their
    /// reply); beyond it they are refused at once with RESOURCE_EXHAUSTED (reason
    /// OVERLOADED). The gateway lowers this limit while the latency of the publishes it
    /// admits is over `publish_latency_target_ms`, and raises it back while it is under;
    /// 0 turns the limit off.
    #[serde(default = "default_gateway_in_flight")]
    pub gateway_in_flight: u32,
    /// Milliseconds: the latency of admitted unary publishes (a moving average, from
    /// their arrival to their reply) above which the gateway admits fewer at once; 0
    /// keeps `gateway_in_flight` fixed.
    #[serde(default = "default_publish_latency_target_ms")]
    pub publish_latency_target_ms: u64,
    /// Milliseconds a shed or unavailable caller is told to wait (google.rpc.RetryInfo).
    #[serde(default = "default_retry_after_ms")]
    pub retry_after_ms: u64,
    /// Seconds after which a named subscription nobody opened or acknowledged is deleted
    /// (its cursor, so its name and quota slot are free again; checked every minute, or
    /// every tenth of this when shorter); 0 keeps them forever. Default 30 days.
    #[serde(default = "default_unused_subscription_secs")]
    pub unused_subscription_secs: u64,
    /// Overrides per partner id, e.g. `[limits.partners.dtv] events_per_second = 2000`.
    #[serde(default)]
    pub partners: BTreeMap<String, PartnerLimitsConfig>,
}

/// One partner's overrides of the `[limits]` quotas; unset keys keep the defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerLimitsConfig {
    /// Events per second (0: no rate quota).
    pub events_per_second: Option<u32>,
    /// Token bucket size.
    pub burst: Option<u32>,
    /// Events in flight.
    pub in_flight: Option<u32>,
    /// Open subscriber streams.
    pub subscriptions: Option<u32>,
    /// Named subscriptions kept.
    pub named_subscriptions: Option<u32>,
}

/// The quotas in force for one partner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartnerQuotas {
    pub events_per_second: u32,
    pub burst: u32,
    pub in_flight: u32,
    pub subscriptions: u32,
    pub named_subscriptions: u32,
}

impl LimitsConfig {
    /// `partner`'s quotas: its overrides over the defaults.
    pub fn quotas(&self, partner: &str) -> PartnerQuotas {
        let o = self.partners.get(partner).cloned().unwrap_or_default();
        PartnerQuotas {
            events_per_second: o.events_per_second.unwrap_or(self.events_per_second),
            burst: o.burst.unwrap_or(self.burst),
            in_flight: o.in_flight.unwrap_or(self.in_flight),
            subscriptions: o.subscriptions.unwrap_or(self.subscriptions),
            named_subscriptions: o.named_subscriptions.unwrap_or(self.named_subscriptions),
        }
    }

    pub(crate) fn problems(&self, is_partner: impl Fn(&str) -> bool) -> Vec<String> {
        let mut problems = Vec::new();
        for partner in self.partners.keys().filter(|p| !is_partner(p)) {
            problems.push(format!("limits.partners.{partner}: not a partner in [partners]"));
        }
        for partner in std::iter::once("").chain(self.partners.keys().map(String::as_str)) {
            let q = self.quotas(partner);
            let at = if partner.is_empty() { "limits".to_owned() } else { format!("limits.partners.{partner}") };
            if q.events_per_second > 0 && q.burst == 0 {
                problems.push(format!("{at}.burst: must be greater than 0 when events_per_second is set"));
            }
            if q.in_flight == 0 {
                problems.push(format!("{at}.in_flight: must be greater than 0"));
            }
        }
        problems
    }
}

fn default_events_per_second() -> u32 {
    5_000
}
fn default_burst() -> u32 {
    10_000
}
fn default_in_flight() -> u32 {
    4_096
}
fn default_subscriptions() -> u32 {
    32
}
fn default_named_subscriptions() -> u32 {
    64
}
fn default_shed_queue_depth() -> usize {
    20_000
}
fn default_gateway_in_flight() -> u32 {
    1_024
}
fn default_publish_latency_target_ms() -> u64 {
    250
}
fn default_retry_after_ms() -> u64 {
    500
}
fn default_unused_subscription_secs() -> u64 {
    30 * 24 * 3600
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            events_per_second: default_events_per_second(),
            burst: default_burst(),
            in_flight: default_in_flight(),
            subscriptions: default_subscriptions(),
            named_subscriptions: default_named_subscriptions(),
            shed_queue_depth: default_shed_queue_depth(),
            gateway_events_per_second: 0,
            gateway_in_flight: default_gateway_in_flight(),
            publish_latency_target_ms: default_publish_latency_target_ms(),
            retry_after_ms: default_retry_after_ms(),
            unused_subscription_secs: default_unused_subscription_secs(),
            partners: BTreeMap::new(),
        }
    }
}
