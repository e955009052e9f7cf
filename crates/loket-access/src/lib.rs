//! Who may see what. Pure logic, no I/O, so that every delivery path (the embedded gRPC
//! subscription, a Kafka fan-out) applies the same rules through the same function:
//!
//! - [`Policy`]: per partner its certificate identity (common name or OIN), the types it may publish and, per
//!   type it may receive, which fields (allow- or deny-list of JSON pointers). Deny by
//!   default. Compiled from [`PartnerConfig`]s and checked against the schemas.
//! - [`redact`]: applies a [`FieldRule`] to a payload and names what it removed.
//! - [`ConsentBook`]: the `medical-transfer-consent` state per case, and whether it covers
//!   a recipient at a moment.
//! - [`Policy::view`]: one stored event as one subscriber may see it ([`Verdict`]).
//! - [`SubscriberScan`]: a subscriber's stream as a deterministic function of the journal
//!   in order: medical events without covering consent are withheld and released when a
//!   covering consent arrives. Medical data goes only to its addressee, under the consent
//!   it names; consent forms count only from a consent registrar, and a form belongs to
//!   the registrar that published it.
//! - [`Pseudonymiser`]: what an integration tester may see of the message log: V-numbers
//!   and free text replaced by keyed pseudonyms that keep every outcome.

mod config;
mod consent;
mod pointer;
mod policy;
mod pseudonym;
mod redact;
mod scan;

pub use config::{AccessConfig, FieldsConfig, PartnerConfig, Roles};
pub use consent::{Consent, ConsentBook, Uncovered, CONSENT_TYPE};
pub use pointer::Pointer;
pub use policy::{is_oin, FieldRule, MedicalChecks, Policy, SubscribeRefusal, Verdict};
pub use pseudonym::{Pseudonymised, Pseudonymiser};
pub use redact::redact;
pub use scan::{EventFacts, Need, Step, SubscriberScan};
