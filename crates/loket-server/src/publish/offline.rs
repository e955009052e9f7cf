//! The intake checks without a gateway: what `Publish` would say about an event, from a
//! configuration alone (no journal, no socket). For fuzzing the intake and for tools
//! that check events before sending them.

use std::sync::Arc;

use loket_domain::PartnerId;

use super::Intake;
use crate::access::ConsentClaims;
use crate::proto::CloudEvent;
use crate::server::load_schemas_and_rules;
use crate::trace::CallTrace;
use crate::{Config, Error};

/// The intake of a gateway configured by a [`Config`].
#[derive(Clone)]
pub struct OfflineIntake {
    intake: Intake,
}

impl OfflineIntake {
    /// The schemas, rules and policy of `config`, as a starting gateway loads them.
    pub fn new(config: &Config) -> Result<Self, Error> {
        let (registry, rules) = load_schemas_and_rules(config)?;
        let policy = config.policy(&registry)?;
        Ok(Self {
            intake: Intake {
                registry: Arc::new(registry),
                policy: Arc::new(policy),
                rules,
                max_event_bytes: config.grpc.max_event_bytes,
                claims: ConsentClaims::default(),
                profile: Arc::new(config.profile()?),
            },
        })
    }

    /// Checks `event` as published by `caller`: `Ok` when the gateway would journal it
    /// (its reply's completeness and flagged rules follow from the journal), or the
    /// refusal the publisher would get.
    pub fn check(&self, caller: &str, event: Option<&CloudEvent>) -> Result<(), Error> {
        let caller: PartnerId = caller.parse().map_err(|_| Error::UnknownIdentity { identity: caller.to_owned() })?;
        // No call metadata offline, and a span of no one's: the event's own extensions
        // carry whatever trace it has.
        self.intake.admit(&caller, event, &CallTrace::default(), &tracing::Span::none()).map(drop)
    }
}
