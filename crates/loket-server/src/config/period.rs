//! A length of time in the configuration, written the way people do: `"7d"`, `"30days"`,
//! `"12h"`, `"1y"` (humantime's units; a year is 365.25 days).

use std::time::Duration;

use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period(pub Duration);

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(text.trim()).map(Period).map_err(|e| {
            serde::de::Error::custom(format!("{text:?} is not a period like \"90s\", \"12h\", \"7d\" or \"1y\": {e}"))
        })
    }
}

impl Period {
    pub const fn days(n: u64) -> Period {
        Period(Duration::from_secs(n * 86_400))
    }
}
