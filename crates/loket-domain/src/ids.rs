use std::fmt;
use std::str::FromStr;

use crate::Error;

/// A chain partner, as named in its client certificate and in `source` (e.g. `dtv`, `kmar`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartnerId(String);

impl PartnerId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PartnerId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(Error::InvalidPartnerId(s.to_owned()))
        }
    }
}

impl fmt::Display for PartnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A case, identified by its V-number ("vreemdelingennummer"): ten digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CaseId(String);

impl CaseId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for CaseId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        if s.len() == 10 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(Error::InvalidCaseId(s.to_owned()))
        }
    }
}

impl fmt::Display for CaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partner_ids() {
        assert!("dtv".parse::<PartnerId>().is_ok());
        assert!("care-1".parse::<PartnerId>().is_ok());
        assert!("".parse::<PartnerId>().is_err());
        assert!("DTV".parse::<PartnerId>().is_err());
        assert!("a/b".parse::<PartnerId>().is_err());
        assert!("x".repeat(33).parse::<PartnerId>().is_err());
    }

    #[test]
    fn case_ids() {
        assert!("0123456789".parse::<CaseId>().is_ok());
        assert!("012345678".parse::<CaseId>().is_err());
        assert!("01234567890".parse::<CaseId>().is_err());
        assert!("01234567a9".parse::<CaseId>().is_err());
        assert!("０１２３４５６７８９".parse::<CaseId>().is_err());
    }
}
