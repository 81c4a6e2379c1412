//! Steady-state training steps take every tensor buffer from the pool: after a warm-up step, a
//! forward + backward + AdamW step through the main fused ops allocates no new buffers.
//! (Its own test binary: the pool counters are process-wide.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cloned_ref_to_slice_refs)] // tests fail loudly by design

use kiln_core::backend::AdamWStep;
use kiln_core::ops::{AttentionOpts, CrossEntropyOpts};
use kiln_core::{DType, Tensor};
use kiln_cpu::pool;

#[test]
fn steady_state_steps_do_not_allocate_buffers() {
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
