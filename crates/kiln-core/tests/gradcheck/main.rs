//! Finite-difference gradient checks (f64) for every differentiable op in `kiln_core::ops::OPS`,
//! with random shapes, broadcasting and strided (non-contiguous) inputs. The last test fails if
//! any op in the table is not exercised by some check. Op families live in the submodules, each
//! with a `cases()` the coverage test calls.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cloned_ref_to_slice_refs)] // tests fail loudly by design

use kiln_core::gradcheck::{gradcheck, GradcheckOpts};
use kiln_core::ops::OPS;
use kiln_core::{DType, Device, Result, Tensor};
use std::collections::BTreeSet;
use std::sync::Mutex;

mod attention;
mod indexing;
mod norms;

static COVERED: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());

pub fn dev() -> Device {
    kiln_cpu::cpu()
}

/// Uniform f64 input in `[lo, hi)`.
pub fn input(shape: &[usize], lo: f64, hi: f64, seed: u64) -> Tensor {
    Tensor::rand(shape, lo, hi, DType::F64, seed, &dev()).unwrap()
}

/// Runs a check both with contiguous and with transposed (strided) inputs, recording coverage.
pub fn check(f: impl Fn(&[Tensor]) -> Result<Tensor>, inputs: &[Tensor]) {
    check_with(GradcheckOpts::default(), f, inputs)
}

/// [`check`] with explicit tolerances.
pub fn check_with(base: GradcheckOpts, f: impl Fn(&[Tensor]) -> Result<Tensor>, inputs: &[Tensor]) {
    for noncontiguous in [false, true] {
        let opts = GradcheckOpts { noncontiguous, ..base };
        let rep = gradcheck(&f, inputs, opts).unwrap_or_else(|e| panic!("noncontiguous={noncontiguous}: {e}"));
        assert!(rep.checked > 0, "nothing was checked");
        COVERED.lock().unwrap().extend(rep.ops);
    }
}

#[test]
fn unary_ops() {
    let x = input(&[3, 4], -2.0, 2.0, 1);
    let pos = input(&[3, 4], 0.5, 2.0, 2);
    check(|t| t[0].neg(), &[x.clone()]);
    check(|t| t[0].exp(), &[x.clone()]);
    check(|t| t[0].log(), &[pos.clone()]);
    check(|t| t[0].sqrt(), &[pos.clone()]);
    check(|t| t[0].tanh(), &[x.clone()]);
    check(|t| t[0].abs(), &[pos.clone()]);
    check(|t| t[0].sqr(), &[x.clone()]);
    check(|t| t[0].recip(), &[pos.clone()]);
    check(|t| t[0].relu(), &[pos.clone()]);
    check(|t| t[0].neg()?.relu(), &[pos.clone()]);
    check(|t| t[0].gelu(), &[x.clone()]);
    check(|t| t[0].gelu_tanh(), &[x.clone()]);
    check(|t| t[0].silu(), &[x.clone()]);
    check(|t| t[0].sigmoid(), &[x.clone()]);
    check(|t| t[0].powf(2.5), &[pos.clone()]);
    check(|t| t[0].affine(-1.5, 0.25), &[x.clone()]);
}

#[test]
fn binary_ops_broadcasting() {
    let a = input(&[2, 3, 4], -1.0, 1.0, 3);
    let b = input(&[3, 1], 0.5, 1.5, 4);
    let c = input(&[4], -1.0, 1.0, 5);
    check(|t| t[0].add(&t[1]), &[a.clone(), b.clone()]);
    check(|t| t[0].sub(&t[1]), &[c.clone(), a.clone()]);
    check(|t| t[0].mul(&t[1]), &[a.clone(), b.clone()]);
    check(|t| t[0].div(&t[1]), &[a.clone(), b.clone()]);
    check(|t| t[0].maximum(&t[1]), &[a.clone(), c.clone()]);
    check(|t| t[0].minimum(&t[1]), &[a.clone(), c.clone()]);
}

#[test]
fn select_and_cast() {
    let a = input(&[3, 4], -1.0, 1.0, 6);
    let b = input(&[4], -1.0, 1.0, 7);
    check(
        |t| {
            let mask = t[0].cmp_scalar(0.0, kiln_core::backend::CmpOp::Gt)?;
            mask.where_cond(&t[0], &t[1])
        },
        &[a.clone(), b.clone()],
    );
    // The f32 round trip quantises to ~6e-8 relative: a wide step keeps that noise below atol.
    let f32_opts = GradcheckOpts { eps: 1e-2, atol: 1e-4, rtol: 1e-4, noncontiguous: false };
    check_with(f32_opts, |t| t[0].to_dtype(DType::F32)?.to_dtype(DType::F64), &[a.clone()]);
}

#[test]
fn reductions() {
    let x = input(&[3, 4, 5], -1.0, 1.0, 8);
    check(|t| t[0].sum(&[1], false), &[x.clone()]);
    check(|t| t[0].sum(&[0, 2], true), &[x.clone()]);
    check(|t| t[0].mean(&[-1], false), &[x.clone()]);
    check(|t| t[0].max(&[1], false), &[x.clone()]);
    check(|t| t[0].min(&[0, 2], true), &[x.clone()]);
    check(|t| t[0].sum_all(), &[x.clone()]);
}

#[test]
fn matmul_batched_and_broadcast() {
    let a = input(&[2, 3, 4], -1.0, 1.0, 9);
    let b = input(&[2, 4, 5], -1.0, 1.0, 10);
    let w = input(&[4, 5], -1.0, 1.0, 11);
    check(|t| t[0].matmul(&t[1]), &[a.clone(), b.clone()]);
    check(|t| t[0].matmul(&t[1]), &[a.clone(), w.clone()]);
    check(|t| t[0].t()?.contiguous()?.t()?.matmul(&t[1]), &[a.clone(), w.clone()]);
    let bias = input(&[4], -1.0, 1.0, 12);
    let wt = input(&[4, 4], -1.0, 1.0, 13);
    check(|t| t[0].linear(&t[1], Some(&t[2])), &[a.clone(), wt, bias]);
}

#[test]
fn views_and_movement() {
    let x = input(&[2, 3, 4], -1.0, 1.0, 14);
    let y = input(&[2, 2, 4], -1.0, 1.0, 15);
    check(|t| t[0].reshape(&[6, 4]), &[x.clone()]);
    check(|t| t[0].permute(&[2, 0, 1])?.contiguous(), &[x.clone()]);
    check(|t| t[0].narrow(1, 1, 2), &[x.clone()]);
    check(|t| t[0].unsqueeze(1)?.broadcast_as(&[2, 5, 3, 4]), &[x.clone()]);
    check(|t| t[0].narrow(1, 0, 1)?.squeeze(1), &[x.clone()]);
    check(|t| Tensor::cat(&[&t[0], &t[1]], 1), &[x.clone(), y.clone()]);
    check(|t| Ok(t[0].split(&[1, 2], 1)?[1].clone()), &[x.clone()]);
}

#[test]
fn fused_softmax() {
    let x = input(&[3, 7], -3.0, 3.0, 16);
    check(|t| t[0].softmax(), &[x.clone()]);
    check(|t| t[0].log_softmax(), &[x.clone()]);
}

/// Every op of `OPS` must have been gradchecked. Runs the other checks first, in this thread, so
/// the coverage set is complete regardless of test order.
#[test]
fn every_op_is_gradchecked() {
    unary_ops();
    binary_ops_broadcasting();
    select_and_cast();
    reductions();
    matmul_batched_and_broadcast();
    views_and_movement();
    fused_softmax();
    norms::cases();
    norms::rope_cases();
    attention::cases();
    indexing::cases();
    let covered = COVERED.lock().unwrap().clone();
    let missing: Vec<_> = OPS.iter().filter(|op| !covered.contains(*op)).collect();
    assert!(missing.is_empty(), "ops without a gradcheck: {missing:?}");
}
