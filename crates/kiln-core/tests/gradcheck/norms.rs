//! Gradchecks for the normalisation and loss ops (layer_norm, rms_norm, cross_entropy) and dropout.

use super::*;
use kiln_core::ops::{CrossEntropyOpts, Reduction};

/// Runs every check of this family (called by its own test and by the coverage test).
pub fn cases() {
    // LayerNorm: every combination of the optional affine parameters, 2-D and 3-D inputs.
    let x = input(&[4, 6], -2.0, 2.0, 101);
    let w = input(&[6], 0.5, 1.5, 102);
    let b = input(&[6], -0.5, 0.5, 103);
    check(|t| t[0].layer_norm(Some(&t[1]), Some(&t[2]), 1e-5), &[x.clone(), w.clone(), b.clone()]);
    check(|t| t[0].layer_norm(None, None, 1e-5), std::slice::from_ref(&x));
    check(|t| t[0].layer_norm(Some(&t[1]), None, 1e-5), &[x.clone(), w.clone()]);
    check(|t| t[0].layer_norm(None, Some(&t[1]), 1e-5), &[x.clone(), b.clone()]);
    let x3 = input(&[2, 3, 6], -2.0, 2.0, 104);
    check(|t| t[0].layer_norm(Some(&t[1]), Some(&t[2]), 1e-5), &[x3.clone(), w.clone(), b.clone()]);
    // Only the weight requires a gradient here (x enters as a constant): exercises the `None` path.
    check(|t| x3.layer_norm(Some(&t[0]), None, 1e-5), std::slice::from_ref(&w));

    // RMSNorm with and without weight.
    check(|t| t[0].rms_norm(Some(&t[1]), 1e-6), &[x3.clone(), w.clone()]);
    check(|t| t[0].rms_norm(None, 1e-6), std::slice::from_ref(&x3));
    check(|t| t[0].rms_norm(Some(&t[1]), 1e-6), &[x.clone(), w.clone()]);

    // Cross-entropy: (B, T, V) logits, one ignored target, every reduction, label smoothing.
    let logits = input(&[2, 3, 5], -2.0, 2.0, 105);
    let targets = Tensor::from_vec(vec![0i64, 4, -100, 2, 1, 3], &[2, 3], &dev()).unwrap();
    for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        for label_smoothing in [0.0, 0.1] {
            let opts = CrossEntropyOpts { label_smoothing, reduction, ..Default::default() };
            check(|t| t[0].cross_entropy(&t[1], opts), &[logits.clone(), targets.clone()]);
        }
    }
    // (N, V) logits with i32 targets, a custom ignore_index and strong smoothing.
    let logits2 = input(&[4, 7], -3.0, 3.0, 106);
    let t32 = Tensor::from_vec(vec![6i32, 0, 3, 0], &[4], &dev()).unwrap();
    let opts = CrossEntropyOpts { ignore_index: Some(0), label_smoothing: 0.3, reduction: Reduction::Mean };
    check(|t| t[0].cross_entropy(&t[1], opts), &[logits2.clone(), t32.clone()]);
    let opts = CrossEntropyOpts { ignore_index: None, label_smoothing: 0.0, reduction: Reduction::Sum };
    check(|t| t[0].cross_entropy(&t[1], opts), &[logits2.clone(), t32]);

    // Dropout with a fixed seed (the mask is deterministic, so finite differences see a fixed
    // linear map), on 2-D and 3-D inputs.
    check(|t| t[0].dropout(0.3, 42, true), std::slice::from_ref(&x));
    check(|t| t[0].dropout(0.5, 7, true), std::slice::from_ref(&x3));
}

#[test]
fn all() {
    cases();
}

/// Fused RoPE with arbitrary tables (so the backward is checked as the transposed Jacobian, not
/// only for true rotations), over (B, H, T, D) and (T, D) inputs.
pub fn rope_cases() {
    let x = input(&[2, 3, 4, 6], -2.0, 2.0, 111);
    let (c, s) = (input(&[4, 6], -1.0, 1.0, 112), input(&[4, 6], -1.0, 1.0, 113));
    let (c, s) = (c.detach(), s.detach());
    check(|t| t[0].rope(&c, &s), std::slice::from_ref(&x));
    let x2 = input(&[4, 6], -2.0, 2.0, 114);
    check(|t| t[0].rope(&c, &s), std::slice::from_ref(&x2));
}
