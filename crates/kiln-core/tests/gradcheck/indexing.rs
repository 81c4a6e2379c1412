//! Gradchecks for gathers: index_select (dims 0, 1 and −1, repeated ids, every id dtype) and the
//! embedding lookup built on it.

use super::*;

/// Runs every check of this family (called by its own test and by the coverage test).
pub fn cases() {
    let x = input(&[5, 4], -1.0, 1.0, 201);
    // Dim 0 with repeated ids: the backward must accumulate row 3 three times.
    let ids = Tensor::from_vec(vec![3i64, 0, 3, 4, 3], &[5], &dev()).unwrap();
    check(|t| t[0].index_select(0, &t[1]), &[x.clone(), ids.clone()]);
    // Dim 1 with repeated i32 ids.
    let cols = Tensor::from_vec(vec![1i32, 1, 2], &[3], &dev()).unwrap();
    check(|t| t[0].index_select(1, &t[1]), &[x.clone(), cols]);
    // 3-D input, middle dim, u8 ids of rank 2 (flattened).
    let x3 = input(&[2, 4, 3], -1.0, 1.0, 202);
    let ids8 = Tensor::from_vec(vec![3u8, 0, 0, 2], &[2, 2], &dev()).unwrap();
    check(|t| t[0].index_select(1, &t[1]), &[x3.clone(), ids8]);
    // Last dim by negative index.
    let last = Tensor::from_vec(vec![2i64, 2, 0, 1, 2], &[5], &dev()).unwrap();
    check(|t| t[0].index_select(-1, &t[1]), &[x3.clone(), last]);
    // Embedding (V, C) with (B, T) token ids, tokens repeated within and across rows.
    let tokens = Tensor::from_vec(vec![1i64, 2, 1, 0, 4, 4], &[2, 3], &dev()).unwrap();
    check(|t| Tensor::embedding(&t[0], &t[1]), &[x.clone(), tokens]);
}

#[test]
fn all() {
    cases();
}
