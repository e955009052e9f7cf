//! The process's logs and, for `serve` with `[telemetry] otlp_endpoint`, the export of its
//! spans over OTLP: one `tracing` subscriber with an env filter (RUST_LOG), the log lines
//! (text, coloured only on a terminal without NO_COLOR, or JSON with `[log] format =
//! "json"`) and the OpenTelemetry layer.

use std::io::IsTerminal;

use anyhow::Context;
use loket_server::config::{LogFormat, TelemetryConfig};
use opentelemetry::trace::TracerProvider;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::{filter_fn, Filtered};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// The spans of one event's hops (`loket-server`: `trace.rs` lists them). They exist for the
/// trace exported over OTLP; the log lines leave them out, since formatting their fields
/// for every event and delivery cost more than the rest of a delivery's tracing.
const HOP_SPANS: [&str; 5] = ["intake", "journal", "delivery", "relay", "export"];

type Lines = Box<dyn Layer<Registry> + Send + Sync>;

/// The log lines' layer, without the per-event hop spans.
fn without_hops(lines: Lines) -> Filtered<Lines, impl tracing_subscriber::layer::Filter<Registry>, Registry> {
    lines.with_filter(filter_fn(|meta| !(meta.is_span() && HOP_SPANS.contains(&meta.name()))))
}

/// Whether stderr gets ANSI colours: a terminal, and no `NO_COLOR` (https://no-color.org:
/// set and not empty).
pub fn colour() -> bool {
    colour_for(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR"))
}

fn colour_for(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// The installed subscriber's span exporter, flushed by [`Telemetry::shutdown`].
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still buffered and stops the exporter; call it inside the runtime
    /// the exporter was made in, after the gateway stopped.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(e) = provider.shutdown() {
                eprintln!("warning: exporting the last spans failed: {e}");
            }
        }
    }
}

/// Installs the process-wide subscriber. `telemetry` (for `serve`) adds the OTLP export;
/// its exporter's connection lives in the current tokio runtime.
pub fn init(default_level: &str, format: LogFormat, telemetry: Option<&TelemetryConfig>) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let lines: Lines = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(colour()).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let provider = match telemetry.and_then(|t| Some((t.otlp_endpoint.as_deref()?, t.service_name.as_str()))) {
        None => None,
        Some((endpoint, service)) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()
                .with_context(|| format!("cannot set up the OTLP exporter to {endpoint}"))?;
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(Resource::builder().with_service_name(service.to_owned()).build())
                    .build(),
            )
        }
    };
    if let Some(provider) = &provider {
        // The relay's spans have derived ids and go through the global tracer (see
        // loket-server's trace.rs); everything else through the tracing layer.
        opentelemetry::global::set_tracer_provider(provider.clone());
    }
    let spans = provider.as_ref().map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("loket")));
    tracing_subscriber::registry().with(without_hops(lines)).with(spans).with(filter).init();
    Ok(Telemetry { provider })
}

#[cfg(test)]
mod tests {
    use super::colour_for;

    #[test]
    fn no_color_set_and_not_empty_turns_colour_off() {
        assert!(colour_for(true, None));
        assert!(colour_for(true, Some("".into())), "an empty NO_COLOR does not count");
        assert!(!colour_for(true, Some("1".into())));
        assert!(!colour_for(false, None), "never on a pipe or file");
    }
}
