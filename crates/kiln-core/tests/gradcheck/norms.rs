//! Gradchecks for the normalisation and loss ops.

use super::*;

/// Runs every check of this family (called by its own test and by the coverage test).
pub fn cases() {
    let x = input(&[4, 6], -2.0, 2.0, 101);
    let w = input(&[6], 0.5, 1.5, 102);
    let b = input(&[6], -0.5, 0.5, 103);
    check(|t| t[0].layer_norm(Some(&t[1]), Some(&t[2]), 1e-5), &[x.clone(), w.clone(), b.clone()]);
    check(|t| t[0].layer_norm(None, None, 1e-5), &[x.clone()]);
    check(|t| t[0].layer_norm(None, Some(&t[1]), 1e-5), &[x.clone(), b.clone()]);
    let x3 = input(&[2, 3, 6], -2.0, 2.0, 104);
    check(|t| t[0].rms_norm(Some(&t[1]), 1e-6), &[x3.clone(), w.clone()]);
    check(|t| t[0].rms_norm(None, 1e-6), &[x3.clone()]);
}

#[test]
fn all() {
    cases();
}
