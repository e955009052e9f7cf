//! The checks every named declaration gets, whether a quality rule or a handover item: a
//! name the metrics and the dashboard can carry, unique in its file, and a description
//! the quality team reads.

use std::collections::BTreeSet;

/// Notes in `problems` what is wrong with the declaration `name` (a `kind`, e.g. "rule")
/// at `at`; `names` collects the names seen so far in its scope.
pub(crate) fn check(
    at: &str,
    kind: &str,
    name: &str,
    description: &str,
    names: &mut BTreeSet<String>,
    problems: &mut Vec<String>,
) {
    if !valid_name(name) {
        problems.push(format!("{at}: the name must be 1 to 64 lowercase letters, digits or '-'"));
    }
    if !names.insert(name.to_owned()) {
        problems.push(format!("{at}: the name is used by another {kind}"));
    }
    if description.trim().is_empty() {
        problems.push(format!("{at}: the description must not be empty"));
    }
}

pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}
