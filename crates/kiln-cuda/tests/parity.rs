#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

//! Every CUDA kernel against the CPU backend, through the public `Tensor` API: the same inputs
//! on both devices, the outputs and (for differentiable ops) the gradients of every input under
//! the same random output seed. Error measure: `max |gpu − cpu| / max(max |cpu|, 1e-6)` per
//! tensor (as `kiln-train/tests/torch_parity.rs` explains), ≤ 1e-4 unless a case says otherwise.
//!
//! Needs an NVIDIA GPU and driver; skips, saying so, when none is found.

use kiln_core::ops::{AttentionOpts, CrossEntropyOpts, PagedBatch, Reduction};
use kiln_core::{DType, Device, Result, Tensor};

fn gpu() -> Option<Device> {
    if !kiln_cuda::is_available() {
        println!("SKIP: no CUDA driver/GPU found");
        return None;
    }
    Some(kiln_cuda::cuda(0).unwrap_or_else(|e| panic!("a GPU is present but the backend failed: {e}")))
}

fn rel_err(what: &str, got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1e-6f64, |m, v| m.max(v.abs()));
    let diff = got.iter().zip(want).fold(0.0f64, |m, (a, b)| {
        if a.is_nan() != b.is_nan() {
            f64::INFINITY
        } else if a.is_nan() {
            m
        } else {
            m.max((a - b).abs())
        }
    });
    diff / scale
}

/// Runs `f` on both devices with leaves built from `inputs` (values, shape; `true` = track
/// gradients), backpropagates a seeded random cotangent, and compares outputs and gradients.
fn check(
    name: &str,
    dev: &Device,
    inputs: &[(Vec<f32>, Vec<usize>, bool)],
    tol: f64,
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) {
    let run = |d: &Device| {
        let leaves: Vec<Tensor> = inputs
            .iter()
            .map(|(v, s, g)| {
                let t = Tensor::from_vec(v.clone(), s, d).unwrap();
                if *g {
                    t.requires_grad_()
                } else {
                    t
                }
            })
            .collect();
        let out = f(&leaves).unwrap_or_else(|e| panic!("{name} on {}: {e}", d.name()));
        let vals = out.to_dtype(DType::F32).unwrap().to_vec_f64().unwrap();
        let mut grads = Vec::new();
        if out.requires_grad() {
            let seed =
                Tensor::randn(out.dims(), 0.0, 1.0, DType::F32, 99, &kiln_cpu::cpu()).unwrap().to_device(d).unwrap();
            out.backward_with(seed).unwrap();
            for (i, l) in leaves.iter().enumerate() {
                if inputs[i].2 {
                    grads.push(
                        l.grad()
                            .map(|g| g.to_vec_f64().unwrap())
                            .unwrap_or_else(|| panic!("{name}: input {i} got no gradient")),
                    );
                }
            }
        }
        (out.dims().to_vec(), vals, grads)
    };
    let (cs, cv, cg) = run(&kiln_cpu::cpu());
    let (gs, gv, gg) = run(dev);
    assert_eq!(cs, gs, "{name}: output shape");
    let e = rel_err(name, &gv, &cv);
    assert!(e <= tol, "{name}: output error {e:.2e} > {tol:.0e}");
    for (i, (a, b)) in gg.iter().zip(&cg).enumerate() {
        let e = rel_err(name, a, b);
        assert!(e <= tol, "{name}: gradient {i} error {e:.2e} > {tol:.0e}");
    }
    println!("{name}: ok");
}

fn randv(n: usize, seed: u64) -> Vec<f32> {
    Tensor::randn(&[n], 0.0, 1.0, DType::F32, seed, &kiln_cpu::cpu()).unwrap().to_vec::<f32>().unwrap()
}

fn inp(shape: &[usize], seed: u64) -> (Vec<f32>, Vec<usize>, bool) {
    (randv(shape.iter().product(), seed), shape.to_vec(), true)
}

#[test]
fn elementwise_and_reductions() {
    let Some(dev) = gpu() else { return };
    let x = [inp(&[3, 17, 33], 1)];
    type F = fn(&Tensor) -> Result<Tensor>;
    let unary: [(&str, F); 14] = [
        ("neg", |t| t.neg()),
        ("exp", |t| t.exp()),
        ("log", |t| t.abs()?.add_scalar(0.5)?.log()),
        ("sqrt", |t| t.sqr()?.add_scalar(0.1)?.sqrt()),
        ("tanh", |t| t.tanh()),
        ("relu", |t| t.relu()),
        ("gelu", |t| t.gelu()),
        ("gelu_tanh", |t| t.gelu_tanh()),
        ("silu", |t| t.silu()),
        ("sigmoid", |t| t.sigmoid()),
        ("recip", |t| t.sqr()?.add_scalar(1.0)?.recip()),
        ("powf", |t| t.abs()?.add_scalar(0.2)?.powf(1.7)),
        ("affine", |t| t.affine(-2.0, 0.5)),
        ("transposed view", |t| t.transpose(0, 2)?.exp()),
    ];
    for (name, f) in unary {
        check(name, &dev, &x, 1e-5, |l| f(&l[0]));
    }
    let ab = [inp(&[4, 1, 5], 2), inp(&[3, 5], 3)];
    check("add (broadcast)", &dev, &ab, 1e-6, |l| l[0].add(&l[1]));
    check("sub", &dev, &ab, 1e-6, |l| l[0].sub(&l[1]));
    check("mul", &dev, &ab, 1e-6, |l| l[0].mul(&l[1]));
    check("div", &dev, &ab, 1e-5, |l| l[0].div(&l[1].sqr()?.add_scalar(1.0)?));
    check("maximum", &dev, &ab, 1e-6, |l| l[0].maximum(&l[1]));
    check("where/cmp", &dev, &ab, 1e-6, |l| {
        l[0].cmp(&l[1], kiln_core::backend::CmpOp::Gt)?.where_cond(&l[0], &l[1].broadcast_as(&[4, 3, 5])?)
    });
    let r = [inp(&[6, 7, 300], 4)];
    check("sum dims", &dev, &r, 1e-5, |l| l[0].sum(&[0, 2], false));
    check("mean", &dev, &r, 1e-5, |l| l[0].mean(&[2], true));
    check("max", &dev, &r, 1e-6, |l| l[0].max(&[2], false));
    check("min of a transpose", &dev, &r, 1e-6, |l| l[0].transpose(1, 2)?.min(&[1], false));
    check("argmax", &dev, &[(r[0].0.clone(), r[0].1.clone(), false)], 0.0, |l| {
        l[0].argmax(-1, false)?.to_dtype(DType::F32)
    });
    check("argmin dim 0", &dev, &[(r[0].0.clone(), r[0].1.clone(), false)], 0.0, |l| {
        l[0].argmin(0, false)?.to_dtype(DType::F32)
    });
}

#[test]
fn casts_random_and_copies() {
    let Some(dev) = gpu() else { return };
    for dt in [DType::F16, DType::BF16, DType::I32, DType::I64, DType::U8, DType::F64] {
        let x = Tensor::randn(&[5, 9], 0.0, 30.0, DType::F32, 5, &kiln_cpu::cpu()).unwrap();
        let want = x.to_dtype(dt).unwrap().to_host().unwrap();
        let got = x.to_device(&dev).unwrap().to_dtype(dt).unwrap().to_host().unwrap();
        assert_eq!(format!("{got:?}"), format!("{want:?}"), "cast to {dt}: bit-identical to the CPU's");
    }
    for dt in [DType::F32, DType::BF16] {
        let (c, g) = (
            Tensor::randn(&[1000], 0.5, 2.0, dt, 42, &kiln_cpu::cpu()).unwrap().to_vec_f64().unwrap(),
            Tensor::randn(&[1000], 0.5, 2.0, dt, 42, &dev).unwrap().to_vec_f64().unwrap(),
        );
        assert!(rel_err("randn", &g, &c) < 1e-6, "randn {dt}: same seed, same values");
        let (c, g) = (
            Tensor::rand(&[1000], -1.0, 3.0, dt, 7, &kiln_cpu::cpu()).unwrap().to_vec_f64().unwrap(),
            Tensor::rand(&[1000], -1.0, 3.0, dt, 7, &dev).unwrap().to_vec_f64().unwrap(),
        );
        assert!(rel_err("rand", &g, &c) < 1e-6, "rand {dt}: same seed, same values");
    }
    let x = [inp(&[4, 6, 8], 6)];
    check("narrow + cat", &dev, &x, 0.0, |l| Tensor::cat(&[&l[0].narrow(1, 1, 3)?, &l[0].narrow(1, 0, 2)?], 1));
    check("permute + contiguous", &dev, &x, 0.0, |l| l[0].permute(&[2, 0, 1])?.contiguous());
}

#[test]
fn matmul_variants() {
    let Some(dev) = gpu() else { return };
    let ab = [inp(&[2, 3, 37, 50], 7), inp(&[2, 3, 50, 29], 8)];
    check("batched matmul", &dev, &ab, 1e-5, |l| l[0].matmul(&l[1]));
    let abt = [inp(&[37, 50], 9), inp(&[29, 50], 10), inp(&[29], 11)];
    check("linear (x·Wᵀ + b)", &dev, &abt, 1e-5, |l| l[0].linear(&l[1], Some(&l[2])));
    check("Aᵀ·B", &dev, &[inp(&[50, 37], 12), inp(&[50, 29], 13)], 1e-5, |l| l[0].t()?.matmul(&l[1]));
    check("broadcast batch", &dev, &[inp(&[4, 5, 6], 14), inp(&[6, 7], 15)], 1e-5, |l| {
        l[0].matmul(&l[1].broadcast_as(&[4, 6, 7])?)
    });
    check("strided rows (narrow)", &dev, &[inp(&[9, 20], 16), inp(&[12, 5], 17)], 1e-5, |l| {
        l[0].narrow(1, 3, 12)?.matmul(&l[1])
    });
}

#[test]
fn fused_row_kernels() {
    let Some(dev) = gpu() else { return };
    let x = [inp(&[7, 300], 20), inp(&[300], 21), inp(&[300], 22)];
    check("softmax", &dev, &x[..1], 1e-5, |l| l[0].softmax());
    check("log_softmax", &dev, &x[..1], 1e-5, |l| l[0].log_softmax());
    check("layer_norm", &dev, &x, 1e-4, |l| l[0].layer_norm(Some(&l[1]), Some(&l[2]), 1e-5));
    check("layer_norm (no affine)", &dev, &x[..1], 1e-4, |l| l[0].layer_norm(None, None, 1e-5));
    check("rms_norm", &dev, &x[..2], 1e-4, |l| l[0].rms_norm(Some(&l[1]), 1e-6));
    let (t, d) = (6, 16);
    let ang: Vec<f32> = (0..t * d).map(|i| ((i / d) as f32) * 0.3 / (1.0 + (i % (d / 2)) as f32)).collect();
    let cos: Vec<f32> = ang.iter().map(|a| a.cos()).collect();
    let sin: Vec<f32> = ang.iter().map(|a| a.sin()).collect();
    let rope = [inp(&[2, 3, t, d], 23), (cos, vec![t, d], false), (sin, vec![t, d], false)];
    check("rope", &dev, &rope, 1e-5, |l| l[0].rope(&l[1], &l[2]));
    let v = 1000;
    let targets: Vec<f32> = (0..12).map(|i| ((i * 397) % v) as f32).collect();
    for (name, opts) in [
        ("cross_entropy", CrossEntropyOpts::default()),
        (
            "cross_entropy (smoothing, ignore, sum)",
            CrossEntropyOpts { ignore_index: Some(397), label_smoothing: 0.1, reduction: Reduction::Sum },
        ),
    ] {
        let c = [inp(&[12, v], 24), (targets.clone(), vec![12], false)];
        check(name, &dev, &c, 1e-4, |l| l[0].cross_entropy(&l[1].to_dtype(DType::I64)?, opts));
    }
    let bad = Tensor::from_vec(vec![3i64, 1000], &[2], &dev).unwrap();
    let logits = Tensor::zeros(&[2, 1000], DType::F32, &dev).unwrap();
    let e = logits.cross_entropy(&bad, CrossEntropyOpts::default()).unwrap_err().to_string();
    assert!(e.contains("1000"), "an out-of-range target is reported: {e}");
    let emb = [inp(&[50, 24], 25), ((0..30).map(|i| ((i * 7) % 50) as f32).collect(), vec![5, 6], false)];
    check("embedding (gather + scatter-add)", &dev, &emb, 1e-5, |l| {
        Tensor::embedding(&l[0], &l[1].to_dtype(DType::I64)?)
    });
}

#[test]
fn attention_forward_backward() {
    let Some(dev) = gpu() else { return };
    for (name, (b, h, hkv, t, s, d), causal, mask, dropout, window) in [
        ("mha causal", (2, 4, 4, 37, 37, 32), true, false, 0.0, None),
        ("gqa causal d=64", (1, 8, 2, 70, 70, 64), true, false, 0.0, None),
        ("cross, mask", (2, 2, 2, 9, 40, 16), false, true, 0.0, None),
        ("causal with a cache prefix (S > T)", (1, 2, 1, 5, 33, 128), true, false, 0.0, None),
        ("dropout", (1, 2, 2, 20, 20, 32), true, false, 0.2, None),
        ("sliding window 9, S > T", (1, 4, 2, 50, 60, 32), true, false, 0.0, Some(9)),
    ] {
        let mut xs = vec![inp(&[b, h, t, d], 30), inp(&[b, hkv, s, d], 31), inp(&[b, hkv, s, d], 32)];
        if mask {
            let m: Vec<f32> =
                (0..b * t * s).map(|i| if (i * 31) % 7 == 0 { -1e9 } else { ((i % 5) as f32) * 0.1 }).collect();
            xs.push((m, vec![b, 1, t, s], false));
        }
        let opts = AttentionOpts { causal, scale: None, dropout_p: dropout, seed: 5, window };
        check(name, &dev, &xs, 1e-4, |l| Tensor::scaled_dot_product_attention(&l[0], &l[1], &l[2], l.get(3), &opts));
    }
}

#[test]
fn paged_attention_and_writes() {
    let Some(dev) = gpu() else { return };
    let (h, hkv, d, bs, blocks) = (4, 2, 64, 16, 8);
    let lens = [5i64, 33, 17];
    let n = lens.len();
    let cpu = kiln_cpu::cpu();
    for (kv_dtype, tol) in [(DType::F32, 1e-5), (DType::F16, 1e-5), (DType::BF16, 1e-5), (DType::U8, 1e-5)] {
        let run = |dv: &Device| {
            let row = if kv_dtype == DType::U8 { d + 4 } else { d };
            let kc = Tensor::zeros(&[blocks * bs, hkv, row], kv_dtype, dv).unwrap();
            let vc = Tensor::zeros(&[blocks * bs, hkv, row], kv_dtype, dv).unwrap();
            // sequence i owns blocks 3i.., writes its keys/values at positions 0..len
            let tables: Vec<i64> =
                (0..n).flat_map(|i| (0..3).map(move |j| (3 * i + j) as i64 % blocks as i64)).collect();
            let tables = Tensor::from_vec(tables, &[n, 3], dv).unwrap();
            let mut slots = Vec::new();
            for (i, &l) in lens.iter().enumerate() {
                for p in 0..l as usize {
                    slots.push((((3 * i + p / bs) % blocks) * bs + p % bs) as i64);
                }
            }
            let total = slots.len();
            let kv = Tensor::randn(&[total, hkv, d], 0.0, 1.0, DType::F32, 40, &cpu).unwrap().to_device(dv).unwrap();
            let vv = Tensor::randn(&[total, hkv, d], 0.0, 1.0, DType::F32, 41, &cpu).unwrap().to_device(dv).unwrap();
            let slots = Tensor::from_vec(slots, &[total], dv).unwrap();
            kc.paged_write_(&slots, &kv).unwrap();
            vc.paged_write_(&slots, &vv).unwrap();
            let q = Tensor::randn(&[n, h, d], 0.0, 1.0, DType::F32, 42, &cpu).unwrap().to_device(dv).unwrap();
            let batch = PagedBatch {
                block_tables: tables,
                token_seq: Tensor::from_vec((0..n as i64).collect::<Vec<_>>(), &[n], dv).unwrap(),
                token_len: Tensor::from_vec(lens.to_vec(), &[n], dv).unwrap(),
                slots: Tensor::from_vec(vec![0i64; n], &[n], dv).unwrap(),
                positions: Tensor::from_vec(lens.iter().map(|l| l - 1).collect::<Vec<_>>(), &[n], dv).unwrap(),
                block_size: bs,
            };
            let full = Tensor::paged_attention(&q, &kc, &vc, &batch, None, None).unwrap().to_vec_f64().unwrap();
            let win = Tensor::paged_attention(&q, &kc, &vc, &batch, None, Some(7)).unwrap().to_vec_f64().unwrap();
            (kc.to_dtype(DType::F32).ok().map(|t| t.to_vec_f64().unwrap()), full, win)
        };
        let (ck, cf, cw) = run(&cpu);
        let (gk, gf, gw) = run(&dev);
        if kv_dtype != DType::U8 {
            assert_eq!(ck, gk, "{kv_dtype}: paged_write stores the CPU's bits");
        }
        assert!(rel_err("paged", &gf, &cf) <= tol, "{kv_dtype}: paged attention");
        assert!(rel_err("paged window", &gw, &cw) <= tol, "{kv_dtype}: paged attention with a window");
        println!("paged attention {kv_dtype}: ok");
    }
}

#[test]
fn adamw_step_matches() {
    let Some(dev) = gpu() else { return };
    let hp = kiln_core::backend::AdamWStep { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1, step: 3 };
    let run = |dv: &Device| {
        let mk =
            |seed| Tensor::randn(&[1000], 0.0, 1.0, DType::F32, seed, &kiln_cpu::cpu()).unwrap().to_device(dv).unwrap();
        let (p, m, g) = (mk(1), mk(2), mk(3));
        let v = mk(4).sqr().unwrap();
        p.adamw_step_(&m, &v, &g, &hp).unwrap();
        [p, m, v].map(|t| t.to_vec_f64().unwrap())
    };
    let (c, g) = (run(&kiln_cpu::cpu()), run(&dev));
    for i in 0..3 {
        assert!(rel_err("adamw", &g[i], &c[i]) < 1e-6, "adamw state {i}");
    }
}
