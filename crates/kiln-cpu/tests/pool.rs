//! Steady-state training steps take every tensor buffer from the pool: after a warm-up step, a
//! forward + backward + AdamW step through the main fused ops allocates no new buffers.
//! (Its own test binary: the pool counters are process-wide.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cloned_ref_to_slice_refs)] // tests fail loudly by design

use kiln_core::backend::AdamWStep;
use kiln_core::ops::{AttentionOpts, CrossEntropyOpts};
use kiln_core::{DType, Tensor};
use kiln_cpu::pool;
use std::sync::Mutex;

/// The pool counters are process-wide: tests that read them run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn steady_state_steps_do_not_allocate_buffers() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dev = kiln_cpu::cpu();
    let (b, t, c, h, v) = (2, 64, 32, 4, 50);
    let wte = Tensor::randn(&[v, c], 0.0, 0.02, DType::F32, 1, &dev).unwrap().requires_grad_();
    let ln_w = Tensor::ones(&[c], DType::F32, &dev).unwrap().requires_grad_();
    let ln_b = Tensor::zeros(&[c], DType::F32, &dev).unwrap().requires_grad_();
    let w_qkv = Tensor::randn(&[3 * c, c], 0.0, 0.02, DType::F32, 2, &dev).unwrap().requires_grad_();
    let w_fc = Tensor::randn(&[4 * c, c], 0.0, 0.02, DType::F32, 3, &dev).unwrap().requires_grad_();
    let params = [wte.clone(), ln_w.clone(), ln_b.clone(), w_qkv.clone(), w_fc.clone()];
    let state: Vec<(Tensor, Tensor)> =
        params.iter().map(|p| (p.zeros_like().unwrap(), p.zeros_like().unwrap())).collect();
    let ids: Vec<i64> = (0..b * t).map(|i| (i * 7 % v) as i64).collect();
    let x_ids = Tensor::from_vec(ids.clone(), &[b, t], &dev).unwrap();
    let y_ids = Tensor::from_vec(ids.iter().map(|i| (i + 1) % v as i64).collect::<Vec<_>>(), &[b, t], &dev).unwrap();

    let step = |k: u64| {
        let x = Tensor::embedding(&wte, &x_ids).unwrap(); // (B,T,C)
        let hdn = x.layer_norm(Some(&ln_w), Some(&ln_b), 1e-5).unwrap();
        let qkv = hdn.linear(&w_qkv, None).unwrap().reshape(&[b, t, 3, h, c / h]).unwrap(); // (B,T,3,H,D)
        let qkv = qkv.permute(&[2, 0, 3, 1, 4]).unwrap(); // (3,B,H,T,D)
        let (q, kk, vv) = (
            qkv.narrow(0, 0, 1).unwrap().squeeze(0).unwrap(),
            qkv.narrow(0, 1, 1).unwrap().squeeze(0).unwrap(),
            qkv.narrow(0, 2, 1).unwrap().squeeze(0).unwrap(),
        );
        let a = Tensor::scaled_dot_product_attention(&q, &kk, &vv, None, &AttentionOpts::causal()).unwrap();
        let a = a.transpose(1, 2).unwrap().reshape(&[b, t, c]).unwrap();
        let m = x.add(&a).unwrap().linear(&w_fc, None).unwrap().gelu().unwrap().matmul(&w_fc).unwrap();
        let logits = m.matmul(&wte.t().unwrap()).unwrap().softmax().unwrap().log().unwrap();
        let loss = logits.cross_entropy(&y_ids, CrossEntropyOpts::default()).unwrap();
        loss.backward().unwrap();
        for (p, (mm, vv)) in params.iter().zip(&state) {
            let hp = AdamWStep { lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1, step: k };
            p.adamw_step_(mm, vv, &p.grad().unwrap(), &hp).unwrap();
            p.zero_grad();
        }
    };
    step(1);
    step(2);
    let warm = pool::stats();
    for k in 3..6 {
        step(k);
    }
    let after = pool::stats();
    assert!(after.hits > warm.hits, "the pool serves buffers");
    assert_eq!(after.misses, warm.misses, "steady-state steps allocated {} new buffers", after.misses - warm.misses);
}

/// The loop of the brief: matmul, bias add, GELU, softmax and sum with autodiff, at sizes above
/// the kernels' parallel thresholds.
#[test]
fn steady_state_mlp_loop_does_not_allocate_buffers() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dev = kiln_cpu::cpu();
    let (n, c) = (256, 128);
    let x = Tensor::randn(&[n, c], 0.0, 1.0, DType::F32, 11, &dev).unwrap();
    let w1 = Tensor::randn(&[c, 4 * c], 0.0, 0.05, DType::F32, 12, &dev).unwrap().requires_grad_();
    let b1 = Tensor::zeros(&[4 * c], DType::F32, &dev).unwrap().requires_grad_();
    let w2 = Tensor::randn(&[4 * c, c], 0.0, 0.05, DType::F32, 13, &dev).unwrap().requires_grad_();
    let step = || {
        let h = x.matmul(&w1).unwrap().add(&b1).unwrap().gelu().unwrap();
        let p = h.matmul(&w2).unwrap().softmax().unwrap();
        let loss = p.sqr().unwrap().sum(&[-1], false).unwrap().sum(&[0], false).unwrap();
        loss.backward().unwrap();
        let g = [w1.grad().unwrap(), b1.grad().unwrap(), w2.grad().unwrap()];
        assert!(g.iter().all(|g| g.to_vec::<f32>().unwrap().iter().all(|v| v.is_finite())));
        for p in [&w1, &b1, &w2] {
            p.zero_grad();
        }
    };
    step();
    let warm = pool::stats();
    for _ in 0..4 {
        step();
    }
    let after = pool::stats();
    assert!(after.hits >= warm.hits + 4 * 10, "the pool serves buffers: {warm:?} -> {after:?}");
    assert_eq!(after.misses, warm.misses, "steady-state steps allocated {} new buffers", after.misses - warm.misses);
}

/// Recycled buffers carry stale data: `zeros`/`full` must still fill, and kernels overwrite.
#[test]
fn recycled_buffers_are_refilled() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dev = kiln_cpu::cpu();
    let len = 12_345;
    for _ in 0..2 {
        drop(Tensor::full(&[len], 7.5, DType::F32, &dev).unwrap());
        let z = Tensor::zeros(&[len], DType::F32, &dev).unwrap();
        assert!(z.to_vec::<f32>().unwrap().iter().all(|&v| v == 0.0));
        drop(z);
        let f = Tensor::full(&[len], -2.0, DType::F32, &dev).unwrap();
        assert!(f.to_vec::<f32>().unwrap().iter().all(|&v| v == -2.0));
        drop(f);
        let a = Tensor::ones(&[len], DType::F32, &dev).unwrap();
        let s = a.add(&a).unwrap();
        assert!(s.to_vec::<f32>().unwrap().iter().all(|&v| v == 2.0));
    }
    let before = pool::stats();
    drop(Tensor::full(&[len], 1.0, DType::F32, &dev).unwrap());
    assert!(pool::stats().hits > before.hits, "a buffer of a recycled size comes from the pool");
}
