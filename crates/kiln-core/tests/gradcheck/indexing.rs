//! Gradchecks for the indexing ops (filled in with those ops).

#[allow(unused_imports)]
use super::*;

/// Runs every check of this family (called by its own test and by the coverage test).
pub fn cases() {}

#[test]
fn all() {
    cases();
}
