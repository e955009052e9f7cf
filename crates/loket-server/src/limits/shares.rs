//! Fair shares of the gateway-wide limit of publishes in flight (`admission.rs`): first
//! come, first served lets the partner with the most calls arriving take every place that
//! frees, so one abusive partner crowds out the others. Each partner is counted by what
//! its connection presented (`limits/connections.rs`: a certificate's CN or OIN, resolved
//! once per connection; on an insecure gateway the `x-loket-partner` header).
//!
//! The limit is shared by the partners with publishes in flight or refused within
//! [`DEMAND_WINDOW`] (a refused partner still wants its share: without it, an incumbent
//! that fills the limit would take every freed place before a newcomer could). A partner
//! below its share (limit / sharing partners) gets any free place; one at or above it
//! only while a share's worth of places stays free for the others (work-conserving: alone,
//! or beside partners that want little, a partner may use more than its share; the
//! admission's latency control then grows the limit while the latency allows).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a refused partner counts among those sharing the limit; longer than the
/// advised retry (`retry_after_ms`, 500 by default), so a partner that honours it is
/// still counted when it comes back.
const DEMAND_WINDOW: Duration = Duration::from_secs(2);
/// Partners tracked at most; beyond them (only possible with the insecure header, which
/// anyone can set to anything) a caller shares the unidentified partner's entry.
const MAX_PARTNERS: usize = 256;

/// Why a publish was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Every place is taken.
    Limit,
    /// The partner holds its share and less than a share's worth is free.
    Share,
}

impl Refusal {
    /// The `reason` label of `loket_publish_admission_refused_total`.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Limit => "limit",
            Refusal::Share => "share",
        }
    }
}

/// Whether one more publish of a partner holding `mine` of the `in_flight` places may be
/// admitted under `limit`, shared by `sharing` partners (the caller included).
pub(crate) fn decide(limit: u32, in_flight: u32, mine: u32, sharing: usize) -> Result<(), Refusal> {
    if in_flight >= limit {
        return Err(Refusal::Limit);
    }
    let share = (limit / u32::try_from(sharing.max(1)).unwrap_or(u32::MAX)).max(1);
    let free_after = limit - in_flight - 1;
    if mine < share || free_after >= share {
        Ok(())
    } else {
        Err(Refusal::Share)
    }
}

#[derive(Default)]
struct Share {
    in_flight: u32,
    refused_at: Option<Instant>,
}

/// Each partner's publishes in flight and its last refusal.
#[derive(Default)]
pub(crate) struct Shares {
    partners: HashMap<Arc<str>, Share>,
}

impl Shares {
    /// Takes one of `in_flight` places under `limit` for `partner` (the key it is counted
    /// under is returned, to hand back to [`Shares::release`]), or refuses it.
    pub fn take(&mut self, partner: Arc<str>, limit: u32, in_flight: u32, now: Instant) -> Result<Arc<str>, Refusal> {
        self.partners
            .retain(|_, s| s.in_flight > 0 || s.refused_at.is_some_and(|t| now.duration_since(t) < DEMAND_WINDOW));
        let partner = if self.partners.contains_key(&partner) || self.partners.len() < MAX_PARTNERS {
            partner
        } else {
            Arc::from("")
        };
        let known = self.partners.get(&partner);
        let sharing = self.partners.len() + usize::from(known.is_none());
        let mine = known.map_or(0, |s| s.in_flight);
        let decided = decide(limit, in_flight, mine, sharing);
        let share = self.partners.entry(partner.clone()).or_default();
        match decided {
            Ok(()) => {
                share.in_flight += 1;
                Ok(partner)
            }
            Err(refusal) => {
                share.refused_at = Some(now);
                Err(refusal)
            }
        }
    }

    /// Gives back a place taken by [`Shares::take`] for `partner`.
    pub fn release(&mut self, partner: &str) {
        if let Some(share) = self.partners.get_mut(partner) {
            share.in_flight = share.in_flight.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_its_share_a_partner_gets_any_free_place_and_at_it_only_while_a_share_stays_free() {
        // 12 places, 3 partners: a share is 4.
        assert_eq!(decide(12, 11, 3, 3), Ok(()), "below its share: the last free place");
        assert_eq!(decide(12, 12, 0, 3), Err(Refusal::Limit), "no place free");
        assert_eq!(decide(12, 7, 4, 3), Ok(()), "at its share, 4 stay free after it");
        assert_eq!(decide(12, 8, 4, 3), Err(Refusal::Share), "at its share, only 3 would stay free");
        assert_eq!(decide(12, 4, 8, 3), Ok(()), "beyond its share while others want little");
        // Alone, a partner may take every place.
        assert_eq!(decide(12, 11, 11, 1), Ok(()));
        // More partners than places: a share is still one place.
        assert_eq!(decide(4, 2, 0, 10), Ok(()));
        assert_eq!(decide(4, 2, 1, 10), Ok(()), "at its share, one place stays free after it");
        assert_eq!(decide(4, 3, 1, 10), Err(Refusal::Share));
    }

    #[test]
    fn a_refused_newcomer_counts_among_the_sharers_and_the_incumbent_makes_room() {
        let now = Instant::now();
        let mut shares = Shares::default();
        let hog: Arc<str> = Arc::from("dvo");
        let newcomer: Arc<str> = Arc::from("dtv");
        // Alone, the hog fills all 8 places.
        let mut held = 0;
        for _ in 0..8 {
            shares.take(hog.clone(), 8, held, now).unwrap();
            held += 1;
        }
        assert_eq!(shares.take(newcomer.clone(), 8, held, now), Err(Refusal::Limit));
        // Two of the hog's publishes finish; it is now over its share (4) and refused,
        // while the newcomer gets the freed places.
        shares.release(&hog);
        shares.release(&hog);
        held -= 2;
        assert_eq!(shares.take(hog.clone(), 8, held, now), Err(Refusal::Share));
        shares.take(newcomer.clone(), 8, held, now).unwrap();
        shares.take(newcomer.clone(), 8, held + 1, now).unwrap();
        // Once the newcomer is gone and its refusal is old, the hog may take everything again.
        shares.release(&newcomer);
        shares.release(&newcomer);
        let later = now + DEMAND_WINDOW;
        assert_eq!(shares.take(hog.clone(), 8, held, later), Ok(hog.clone()));
    }

    #[test]
    fn past_the_partners_tracked_callers_share_the_unidentified_entry() {
        let now = Instant::now();
        let mut shares = Shares::default();
        for i in 0..MAX_PARTNERS {
            shares.take(Arc::from(format!("p{i}").as_str()), 10_000, i as u32, now).unwrap();
        }
        let key = shares.take(Arc::from("one-more"), 10_000, MAX_PARTNERS as u32, now).unwrap();
        assert_eq!(&*key, "");
        assert_eq!(shares.partners.len(), MAX_PARTNERS + 1);
    }
}
