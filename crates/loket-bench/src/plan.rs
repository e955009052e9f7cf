//! What a run does: how much of each arm (the plan: the command line's figures, or tiny
//! ones for a smoke run) and which arms (`--arms`).

use std::time::Duration;

use crate::BenchArgs;

/// The arm that runs only when named.
const SOAK: &str = "soak";

pub struct Plan {
    /// Cases of the generated corpus, when no `--corpus` is given.
    pub corpus_cases: u32,
    pub events: u64,
    /// Events of the two Kafka arms: a development broker takes them far slower.
    pub kafka_events: u64,
    pub replay_events: u64,
    pub latency_run: Duration,
    pub rates: Vec<u64>,
    /// Offered load of the fixed-rate Kafka arm: below what the broker takes.
    pub kafka_rate: u64,
    pub concurrency: usize,
    pub soak_run: Duration,
    pub soak_rate: u64,
    pub soak_retention: String,
    /// How long the overload arm offers three times the saturation rate.
    pub overload_run: Duration,
}

impl Plan {
    pub fn new(args: &BenchArgs) -> Self {
        if args.smoke {
            Self {
                corpus_cases: 40,
                events: 300,
                kafka_events: 300,
                replay_events: 500,
                latency_run: Duration::from_millis(500),
                rates: vec![200],
                kafka_rate: 50,
                concurrency: 8,
                soak_run: Duration::from_secs(6),
                soak_rate: 100,
                soak_retention: "2s".to_owned(),
                overload_run: Duration::from_secs(1),
            }
        } else {
            Self {
                corpus_cases: 2000,
                events: args.events,
                kafka_events: args.kafka_events,
                replay_events: args.replay_events,
                latency_run: Duration::from_secs(args.latency_seconds),
                rates: args.rates.clone(),
                kafka_rate: args.kafka_rate,
                concurrency: args.concurrency,
                soak_run: Duration::from_secs(args.soak_minutes * 60),
                soak_rate: args.soak_rate,
                soak_retention: args.soak_retention.clone(),
                overload_run: Duration::from_secs(10),
            }
        }
    }

    /// Every arm this plan can run, in the order they run.
    fn arms(&self) -> Vec<String> {
        let mut arms: Vec<String> =
            ["validate", "journal", "transport-unary", "transport-stream", "gateway-unary", "gateway-stream"]
                .map(str::to_owned)
                .into();
        arms.extend(self.rates.iter().map(|r| format!("gateway-at-{r}/s")));
        arms.push(crate::arms::publish::SATURATION_ARM.to_owned());
        arms.push(format!("gateway-kafka-at-{}/s", self.kafka_rate));
        arms.extend(
            ["gateway-kafka", "rdkafka-raw", "replay", "memory", "recovery", "journal-read", "overload", SOAK]
                .map(str::to_owned),
        );
        arms
    }
}

/// The arms to run: all, or those whose names start with an entry of `--arms`.
pub struct Selection(Vec<String>);

impl Selection {
    pub fn new(args: &BenchArgs, plan: &Plan) -> anyhow::Result<Self> {
        let all = plan.arms();
        for a in &args.arms {
            if !all.iter().any(|arm| arm.starts_with(a.as_str())) {
                anyhow::bail!("--arms {a:?} names no arm; the arms are {}", all.join(", "));
            }
        }
        // The soak arm runs for minutes: only when named.
        let picked = |arm: &String| {
            (args.arms.is_empty() && arm != SOAK) || args.arms.iter().any(|a| arm.starts_with(a.as_str()))
        };
        Ok(Self(all.iter().filter(|a| picked(a)).cloned().collect()))
    }

    /// Whether an arm whose name starts with `prefix` runs (a whole name: whether it runs).
    pub fn runs(&self, prefix: &str) -> bool {
        self.0.iter().any(|a| a.starts_with(prefix))
    }

    /// Whether the arm of exactly this name runs (where its name prefixes another's).
    pub fn has(&self, arm: &str) -> bool {
        self.0.iter().any(|a| a == arm)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// `loket bench` as the binary declares it.
    #[derive(Parser)]
    struct Bench {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn selection(arms: &str) -> anyhow::Result<Selection> {
        let args = Bench::parse_from(["bench", "--arms", arms, "--rates", "100,1000"]).args;
        Selection::new(&args, &Plan::new(&args))
    }

    #[test]
    fn arms_are_picked_by_name_or_prefix() {
        let s = selection("gateway-stream,rdkafka").unwrap();
        assert_eq!(s.0, ["gateway-stream", "rdkafka-raw"]);
        let s = selection("gateway").unwrap();
        assert_eq!(
            s.0,
            [
                "gateway-unary",
                "gateway-stream",
                "gateway-at-100/s",
                "gateway-at-1000/s",
                "gateway-at-70%",
                "gateway-kafka-at-200/s",
                "gateway-kafka"
            ]
        );
        assert!(s.runs("gateway-at-") && !s.runs("transport-") && !s.runs("rdkafka-raw"));
        let s = selection("gateway-at-100/s").unwrap();
        assert_eq!(s.0, ["gateway-at-100/s"]);
    }

    #[test]
    fn an_entry_that_names_no_arm_is_refused_with_the_arms() {
        let err = selection("gateway,kafka").err().unwrap().to_string();
        assert!(err.contains("\"kafka\"") && err.contains("gateway-kafka, rdkafka-raw"), "{err}");
    }
}
