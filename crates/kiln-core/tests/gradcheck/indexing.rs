//! Gradchecks for gathers (index_select, embedding) and dropout.

use super::*;

/// Runs every check of this family (called by its own test and by the coverage test).
pub fn cases() {
    let x = input(&[5, 4], -1.0, 1.0, 201);
    let ids = Tensor::from_vec(vec![3i64, 0, 3, 4, 3], &[5], &dev()).unwrap();
    check(|t| t[0].index_select(0, &t[1]), &[x.clone(), ids.clone()]);
    let cols = Tensor::from_vec(vec![1i32, 1, 2], &[3], &dev()).unwrap();
    check(|t| t[0].index_select(1, &t[1]), &[x.clone(), cols]);
    let tokens = Tensor::from_vec(vec![1i64, 2, 1, 0, 4, 4], &[2, 3], &dev()).unwrap();
    check(|t| Tensor::embedding(&t[0], &t[1]), &[x.clone(), tokens]);
    check(|t| t[0].dropout(0.3, 42, true), &[x.clone()]);
}

#[test]
fn all() {
    cases();
}
