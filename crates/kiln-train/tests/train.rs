//! Schedules against the book's numbers, clipping, and AdamW driving a least-squares fit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cloned_ref_to_slice_refs)] // tests fail loudly by design

use kiln_core::{DType, Tensor};
use kiln_train::{clip_grad_norm, AdamW, AdamWConfig, LrSchedule, NoamSchedule, WarmupCosine};

#[test]
fn noam_matches_the_reference_value() {
    // REFERENCE: d = 512, warmup 4000, step 4000 → 6.988e-4 (the peak).
    let s = NoamSchedule { d_model: 512, warmup: 4000, factor: 1.0 };
    assert!((s.lr(4000) - 6.988e-4).abs() < 1e-7, "{}", s.lr(4000));
    assert!(s.lr(2000) < s.lr(4000) && s.lr(8000) < s.lr(4000));
}

#[test]
fn warmup_cosine_shape() {
    let s = WarmupCosine { max_lr: 1e-3, min_lr: 1e-4, warmup: 100, total: 1100 };
    assert_eq!(s.lr(0), 0.0);
    assert!((s.lr(50) - 5e-4).abs() < 1e-12);
    assert!((s.lr(100) - 1e-3).abs() < 1e-12);
    assert!((s.lr(600) - 5.5e-4).abs() < 1e-12, "midpoint is the mean of max and min");
    assert_eq!(s.lr(1100), 1e-4);
    assert_eq!(s.lr(5000), 1e-4);
    assert!((101..1100).all(|t| s.lr(t + 1) <= s.lr(t)));
}

#[test]
fn clipping_scales_to_the_max_norm() {
    let dev = kiln_cpu::cpu();
    let a = Tensor::from_vec(vec![3.0f32], &[1], &dev).unwrap().requires_grad_();
    let b = Tensor::from_vec(vec![4.0f32], &[1], &dev).unwrap().requires_grad_();
    a.mul(&b).unwrap().sum_all().unwrap().backward().unwrap(); // grads: (4, 3), norm 5
    let n = clip_grad_norm(&[a.clone(), b.clone()], 1.0).unwrap();
    assert!((n - 5.0).abs() < 1e-6);
    let ga = a.grad().unwrap().to_scalar().unwrap();
    let gb = b.grad().unwrap().to_scalar().unwrap();
    assert!(((ga * ga + gb * gb).sqrt() - 1.0).abs() < 1e-5);
    assert!((ga / gb - 4.0 / 3.0).abs() < 1e-5, "direction kept");
}

#[test]
fn adamw_fits_a_linear_map_and_round_trips_state() {
    let dev = kiln_cpu::cpu();
    let x = Tensor::randn(&[64, 8], 0.0, 1.0, DType::F32, 1, &dev).unwrap();
    let w_true = Tensor::randn(&[8, 4], 0.0, 1.0, DType::F32, 2, &dev).unwrap();
    let y = x.matmul(&w_true).unwrap();
    let w = Tensor::zeros(&[8, 4], DType::F32, &dev).unwrap().requires_grad_();
    let bias = Tensor::zeros(&[4], DType::F32, &dev).unwrap().requires_grad_();
    let cfg = AdamWConfig { weight_decay: 0.0, ..Default::default() };
    let mut opt = AdamW::new(vec![("w".into(), w.clone()), ("b".into(), bias.clone())], cfg).unwrap();
    let loss =
        |w: &Tensor| x.matmul(w).unwrap().add(&bias).unwrap().sub(&y).unwrap().sqr().unwrap().mean_all().unwrap();
    let first = loss(&w).to_scalar().unwrap();
    for _ in 0..300 {
        opt.zero_grad();
        loss(&w).backward().unwrap();
        opt.step(0.05).unwrap();
    }
    let last = loss(&w).to_scalar().unwrap();
    assert!(last < first * 1e-3, "loss {first} → {last}");
    let (state, step) = opt.state();
    assert_eq!(step, 300);
    assert_eq!(state.len(), 4);
    let mut opt2 = AdamW::new(vec![("w".into(), w.clone()), ("b".into(), bias.clone())], cfg).unwrap();
    opt2.load_state(&state, step).unwrap();
    assert_eq!(opt2.state().0[0].1.to_vec::<f32>().unwrap(), state[0].1.to_vec::<f32>().unwrap());
    assert!(opt2.load_state(&state[..1], 1).is_err());
}
