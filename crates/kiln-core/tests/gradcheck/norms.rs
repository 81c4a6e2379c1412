//! Gradchecks for the normalisation and loss ops.

use super::*;
use kiln_core::ops::{CrossEntropyOpts, Reduction};

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

    // Cross-entropy: (B, T, V) logits, one ignored target, every reduction, label smoothing.
    let logits = input(&[2, 3, 5], -2.0, 2.0, 105);
    let targets = Tensor::from_vec(vec![0i64, 4, -100, 2, 1, 3], &[2, 3], &dev()).unwrap();
    for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        for label_smoothing in [0.0, 0.1] {
            let opts = CrossEntropyOpts { label_smoothing, reduction, ..Default::default() };
            check(|t| t[0].cross_entropy(&t[1], opts), &[logits.clone(), targets.clone()]);
        }
    }
}

#[test]
fn all() {
    cases();
}
