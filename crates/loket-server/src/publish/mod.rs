//! The publish path, for unary calls and streams alike: intake checks the event
//! (`intake.rs`), the journal makes it durable, then it is counted in the quality figures
//! and the metrics and, with `ack = "kafka"`, confirmed by the relay. A refusal travels as
//! an [`Error`] value to the denial log, the rejection log, the quality figures and the
//! metrics, and becomes a gRPC status only in the service adapter.

mod intake;
mod offline;
mod stream;

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use loket_domain::time::now_micros;
use loket_domain::PartnerId;
use loket_journal::{Appended, Journal};
use tracing::Instrument;

pub(crate) use intake::{Admitted, Intake};
pub use offline::OfflineIntake;
pub(crate) use stream::publish_stream;

use crate::access::{denials, Access};
use crate::disk::DiskGuard;
use crate::http::metrics as m;
use crate::kafka::KafkaMode;
use crate::limits::Limits;
use crate::messagelog::record_rejection;
use crate::processing::{Processing, ProcessingLog};
use crate::proto::timestamp::from_micros;
use crate::proto::{PublishReply, PublishRequest};
use crate::quality::{AdmittedFacts, Quality};
use crate::trace::CallTrace;
use crate::Error;

/// What the publish path needs.
#[derive(Clone)]
pub(crate) struct Publisher {
    pub intake: Intake,
    pub journal: Journal,
    pub quality: Quality,
    pub access: Access,
    /// With `ack = "kafka"`, replies wait for the relay's confirmation.
    pub kafka: Option<KafkaMode>,
    /// Refuses publishes while the disk is low (`[journal] min_free_bytes`).
    pub disk: DiskGuard,
    /// Quotas and load shedding, checked before intake.
    pub limits: Limits,
}

/// How a publish ended, as the metrics label it.
fn outcome(result: &Result<PublishReply, Error>) -> &'static str {
    match result {
        Ok(reply) if reply.duplicate => "duplicate",
        Ok(_) => "accepted",
        Err(_) => "rejected",
    }
}

impl Publisher {
    /// Checks the event and enqueues it for the journal *now* (so a stream's events keep
    /// their order); the future resolves with the reply once it is durable. Counts the
    /// outcome in the metrics and the quality figures.
    ///
    /// First the quotas and the load shedding (`limits/`): a call over them is refused
    /// before any work. Admitted, the event holds a place in the partner's in-flight
    /// quota until its reply, and a refused one until its entry in the rejection log is
    /// durable: a partner sending invalid events is slowed like any other. `rate_charged`:
    /// the partner's rate quota was charged already (a unary publish, in `limits/guard.rs`).
    pub fn start(
        &self,
        partner: &PartnerId,
        req: PublishRequest,
        call: &CallTrace,
        rate_charged: bool,
    ) -> Pin<Box<dyn Future<Output = Result<PublishReply, Error>> + Send + 'static>> {
        let permit = match self.limits.admit_publish(partner, rate_charged) {
            Ok(permit) => permit,
            Err(refusal) => return Box::pin(std::future::ready(Err(refusal))),
        };
        let started = Instant::now();
        let started_micros = now_micros();
        let claimed = req.event.as_ref().map(|e| e.r#type.as_str()).unwrap_or_default();
        let claimed_type = self.intake.profile.short_type(claimed).to_owned();
        // Only known types become labels and buckets: a client cannot invent series.
        let event_type = self.intake.registry.resolve(&claimed_type, None).is_ok().then_some(claimed_type);
        let publisher = self.clone();
        let partner = partner.clone();
        let id = req.event.as_ref().map(|e| e.id.as_str()).unwrap_or_default();
        let intake = tracing::info_span!("intake", partner = %partner, id, r#type = claimed);
        // A low disk refuses before intake: nothing of the event is written, not even to
        // the rejection log.
        let admitted = self.disk.check().and_then(|()| self.intake.admit(&partner, req.event.as_ref(), call, &intake));
        let stored = match admitted {
            Ok(admitted) => {
                let dataschema = admitted.event.dataschema.clone();
                let facts = AdmittedFacts::of(&admitted);
                let processed = Processed::of(&admitted);
                let journal = tracing::info_span!(parent: &intake, "journal");
                Ok((self.journal.submit(admitted.event).instrument(journal), dataschema, facts, processed))
            }
            Err(refusal) => {
                // Enqueued now, so the rejection log keeps the stream's order.
                let journalled = record_rejection(&self.journal, &partner, req.event.as_ref(), &refusal);
                let id = req.event.as_ref().map(|e| e.id.clone()).unwrap_or_default();
                Err((refusal, id, journalled))
            }
        };
        // Spawned so that the figures and metrics count the event even when the caller
        // hangs up (dropping the reply future) after it was submitted to the journal.
        let counted = tokio::spawn(
            async move {
                let result = match stored {
                    Ok((future, dataschema, facts, processed)) => match future.await {
                        Ok(appended) => {
                            publisher.quality.accepted(&facts, &appended);
                            if !appended.duplicate {
                                let log = &publisher.access.processing;
                                processed.record(log, &partner, appended.sequence, started_micros);
                            }
                            publisher.confirmed(appended, dataschema, facts.flagged).await
                        }
                        Err(e) => Err(Error::from(e)),
                    },
                    Err((refusal, id, journalled)) => {
                        if let Some(journalled) = journalled {
                            journalled.await;
                        }
                        let kind = "publish-refused";
                        let event_type = event_type.as_deref().unwrap_or_default();
                        denials::record_refusal(&publisher.access, kind, partner.as_str(), &refusal, &id, event_type)
                            .await;
                        // A full disk says nothing about the partner's data quality.
                        if !event_type.is_empty() && !matches!(refusal, Error::DiskLow { .. }) {
                            publisher.quality.rejected(&partner, event_type, &refusal, now_micros());
                        }
                        Err(refusal)
                    }
                };
                let outcome = outcome(&result);
                let labels = [
                    ("partner", partner.to_string()),
                    ("type", event_type.unwrap_or_else(|| "unknown".to_owned())),
                    ("outcome", outcome.to_owned()),
                ];
                metrics::counter!(m::PUBLISH_TOTAL, &labels).increment(1);
                metrics::histogram!(m::PUBLISH_DURATION, "outcome" => outcome).record(started.elapsed().as_secs_f64());
                drop(permit);
                result
            }
            .instrument(intake),
        );
        Box::pin(async move {
            counted.await.unwrap_or_else(|e| {
                tracing::error!(error = %e, "publish task failed");
                Err(Error::TaskFailed(e.to_string()))
            })
        })
    }

    /// The reply to an event the journal holds, once Kafka confirmed it where that is asked.
    async fn confirmed(
        &self,
        appended: Appended,
        dataschema: String,
        flagged_rules: Vec<String>,
    ) -> Result<PublishReply, Error> {
        if let Some(kafka) = &self.kafka {
            kafka.confirm(appended.sequence).await?;
        }
        Ok(PublishReply {
            flagged_rules,
            sequence: appended.sequence,
            duplicate: appended.duplicate,
            completeness: appended.completeness,
            missing_expected: appended.missing_expected,
            dataschema,
            received_at: Some(from_micros(appended.received_at_micros)),
        })
    }
}

#[cfg(test)]
mod tests;

/// What the processing log needs of an admitted event, kept before the journal takes it.
struct Processed {
    event_type: String,
    id: String,
    subject: String,
    traceparent: String,
    publisher_span: String,
}

impl Processed {
    fn of(admitted: &Admitted) -> Self {
        let e = &admitted.event;
        Processed {
            event_type: e.event_type.clone(),
            id: e.id.clone(),
            subject: e.subject.clone(),
            traceparent: e.traceparent.clone(),
            publisher_span: admitted.publisher_span.clone(),
        }
    }

    /// Records the accepted publish: the intake's span, under the publisher's.
    fn record(self, log: &ProcessingLog, partner: &PartnerId, sequence: u64, started_micros: i64) {
        log.record(Processing {
            operation: "publish",
            channel: "grpc",
            partner: partner.as_str(),
            event_type: &self.event_type,
            event_id: &self.id,
            sequence,
            subject: &self.subject,
            traceparent: &self.traceparent,
            parent_span: self.publisher_span,
            started_micros,
        });
    }
}
