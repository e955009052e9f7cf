/// Where a new subscription starts reading the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    /// The first stored event.
    Earliest,
    /// Only events stored after the subscription starts.
    Latest,
    /// The event with this sequence number and everything after it.
    Sequence(u64),
    /// The first event the gateway received at or after this instant (Unix microseconds).
    Time(i64),
}
