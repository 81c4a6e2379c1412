//! The fused AdamW kernel against the textbook update written out in f64.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cloned_ref_to_slice_refs)] // tests fail loudly by design

use kiln_core::backend::AdamWStep;
use kiln_core::{DType, Error, Tensor};

#[test]
fn fused_adamw_matches_the_formula() {
    let dev = kiln_cpu::cpu();
    let n = 40_000; // spans several parallel chunks
    let p0 = Tensor::randn(&[200, n / 200], 0.0, 1.0, DType::F32, 1, &dev).unwrap();
    let p = p0.copy().unwrap();
    let m = Tensor::zeros(p.dims(), DType::F32, &dev).unwrap();
    let v = Tensor::zeros(p.dims(), DType::F32, &dev).unwrap();
    let (mut pr, mut mr, mut vr) = (p0.to_vec_f64().unwrap(), vec![0.0; n], vec![0.0; n]);
    for step in 1..=3u64 {
        let g = Tensor::randn(p.dims(), 0.0, 1.0, DType::F32, 10 + step, &dev).unwrap();
        let hp = AdamWStep { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1, step };
        p.adamw_step_(&m, &v, &g, &hp).unwrap();
        let gv = g.to_vec_f64().unwrap();
        for i in 0..n {
            mr[i] = 0.9 * mr[i] + 0.1 * gv[i];
            vr[i] = 0.95 * vr[i] + 0.05 * gv[i] * gv[i];
            let mh = mr[i] / (1.0 - 0.9f64.powi(step as i32));
            let vh = vr[i] / (1.0 - 0.95f64.powi(step as i32));
            pr[i] -= 1e-2 * (mh / (vh.sqrt() + 1e-8) + 0.1 * pr[i]);
        }
    }
    let got = p.to_vec_f64().unwrap();
    let worst = got.iter().zip(&pr).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-5, "max |fused − formula| = {worst}");
    // The original tensor (a separate copy) is untouched.
    assert_ne!(p0.to_vec_f64().unwrap(), got);
}

#[test]
fn adamw_rejects_mismatched_state() {
    let dev = kiln_cpu::cpu();
    let p = Tensor::zeros(&[4], DType::F32, &dev).unwrap();
    let m = Tensor::zeros(&[4], DType::F32, &dev).unwrap();
    let v = Tensor::zeros(&[5], DType::F32, &dev).unwrap();
    let hp = AdamWStep { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, step: 1 };
    assert!(matches!(p.adamw_step_(&m, &v, &p, &hp), Err(Error::ShapeMismatch { op: "adamw_step", .. })));
    assert!(matches!(p.adamw_step_(&m, &m, &p, &hp), Err(Error::Invalid { .. })));
    let v64 = Tensor::zeros(&[4], DType::F64, &dev).unwrap();
    assert!(matches!(p.adamw_step_(&m, &v64, &p, &hp), Err(Error::DTypeMismatch { .. })));
}
