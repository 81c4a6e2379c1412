//! Gradchecks for fused attention: plain, causal (T ≠ S), additive broadcast mask, grouped-query,
//! dropout, on shapes spanning several 64-wide tiles in both directions.

use super::*;
use kiln_core::ops::AttentionOpts;

fn sdpa(t: &[Tensor], mask: Option<&Tensor>, opts: AttentionOpts) -> kiln_core::Result<Tensor> {
    Tensor::scaled_dot_product_attention(&t[0], &t[1], &t[2], mask, &opts)
}

/// Runs every check of this family (called by its own test and by the coverage test).
pub fn cases() {
    // Small heads, many tiles: T = 70 queries, S = 70 or 75 keys (two tiles each way).
    let q = input(&[1, 2, 70, 3], -1.0, 1.0, 301);
    let k = input(&[1, 2, 70, 3], -1.0, 1.0, 302);
    let v = input(&[1, 2, 70, 3], -1.0, 1.0, 303);
    check(|t| sdpa(t, None, AttentionOpts::new()), &[q.clone(), k.clone(), v.clone()]);
    check(|t| sdpa(t, None, AttentionOpts::causal()), &[q.clone(), k.clone(), v.clone()]);
    let k2 = input(&[1, 2, 75, 3], -1.0, 1.0, 304);
    let v2 = input(&[1, 2, 75, 3], -1.0, 1.0, 305);
    check(|t| sdpa(t, None, AttentionOpts::causal()), &[q.clone(), k2.clone(), v2.clone()]);
    // Additive padding-style mask broadcast from (B, 1, 1, S).
    let mvals: Vec<f64> = (0..75).map(|j| if j % 7 == 3 { -1e9 } else { 0.1 * (j % 3) as f64 }).collect();
    let mask = Tensor::from_f64(&mvals, &[1, 1, 1, 75], DType::F64, &dev()).unwrap();
    check(|t| sdpa(t, Some(&mask), AttentionOpts::new()), &[q.clone(), k2.clone(), v2.clone()]);
    // Grouped-query attention: 4 query heads over 2 kv heads, with an explicit scale.
    let q4 = input(&[2, 4, 9, 4], -1.0, 1.0, 306);
    let kg = input(&[2, 2, 11, 4], -1.0, 1.0, 307);
    let vg = input(&[2, 2, 11, 4], -1.0, 1.0, 308);
    let opts = AttentionOpts { causal: true, scale: Some(0.3), ..AttentionOpts::new() };
    check(|t| sdpa(t, None, opts), &[q4.clone(), kg.clone(), vg.clone()]);
    // Grouped-query attention spanning two tiles each way (two key-tile groups each sum their
    // partial dQ), with a dropout mask on top.
    let qw = input(&[1, 4, 66, 2], -1.0, 1.0, 309);
    let kw = input(&[1, 2, 70, 2], -1.0, 1.0, 310);
    let vw = input(&[1, 2, 70, 2], -1.0, 1.0, 311);
    check(|t| sdpa(t, None, AttentionOpts::causal()), &[qw.clone(), kw.clone(), vw.clone()]);
    let opts = AttentionOpts { dropout_p: 0.3, seed: 4, ..AttentionOpts::new() };
    check(|t| sdpa(t, None, opts), &[qw, kw, vw]);
    // Dropout: deterministic for a seed, so finite differences see the same mask.
    let opts = AttentionOpts { dropout_p: 0.2, seed: 9, ..AttentionOpts::causal() };
    check(|t| sdpa(t, None, opts), &[q4, kg, vg]);
    // Packed projection (B, T, (H + 2·Hkv)·D) → (B, T, H·D): 4 query heads over 2 kv heads, T = 67
    // (two tiles), causal, then with dropout.
    let qkv = input(&[2, 67, 16], -1.0, 1.0, 312);
    check(|t| Tensor::packed_attention(&t[0], 4, 2, None, &AttentionOpts::causal()), &[qkv.clone()]);
    let opts = AttentionOpts { dropout_p: 0.2, seed: 5, ..AttentionOpts::causal() };
    check(|t| Tensor::packed_attention(&t[0], 4, 2, None, &opts), &[qkv]);
}

#[test]
fn all() {
    cases();
}
