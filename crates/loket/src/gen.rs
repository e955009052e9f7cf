//! `loket gen`: the synthetic message log of `loket_messagelog::generate`, to a file or
//! standard output.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use loket_messagelog::{generate, Gaps, GenOptions};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::cli::GenArgs;

pub fn run(args: GenArgs) -> anyhow::Result<ExitCode> {
    let rates = [
        ("--missing-rate", args.missing_rate),
        ("--invalid-rate", args.invalid_rate),
        ("--late-baggage-rate", args.late_baggage_rate),
        ("--missing-features-rate", args.missing_features_rate),
        ("--no-consent-rate", args.no_consent_rate),
    ];
    for (name, rate) in rates {
        anyhow::ensure!((0.0..=1.0).contains(&rate), "{name} {rate}: must be between 0 and 1");
    }
    let start = OffsetDateTime::parse(&args.start, &Rfc3339)
        .with_context(|| format!("--start {:?} is not an RFC 3339 time", args.start))?
        .unix_timestamp();
    let options = GenOptions {
        seed: args.seed,
        cases: args.cases,
        missing_rate: args.missing_rate,
        invalid_rate: args.invalid_rate,
        start,
        first_case: args.first_case,
        gaps: Gaps {
            late_baggage: args.late_baggage_rate,
            missing_features: args.missing_features_rate,
            no_consent: args.no_consent_rate,
        },
    };
    let generated = match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            let mut out = std::io::BufWriter::new(file);
            let n = generate(&options, &mut out)?;
            out.flush().context("cannot write the generated log")?;
            n
        }
        None => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let n = generate(&options, &mut out)?;
            out.flush().context("cannot write the generated log")?;
            n
        }
    };
    if let Some(path) = &args.planted {
        let text = serde_json::to_string_pretty(&generated.planted).context("cannot encode what was planted")?;
        std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))?;
    }
    eprintln!("generated {} events for {} cases (seed {})", generated.events, args.cases, args.seed);
    Ok(ExitCode::SUCCESS)
}
