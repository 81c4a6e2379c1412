//! Tiled (FlashAttention) kernel against the naive reference in f32 on realistic shapes, a long
//! sequence the naive path would need a T×T matrix for, and shape errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cloned_ref_to_slice_refs)] // tests fail loudly by design

use kiln_core::ops::AttentionOpts;
use kiln_core::{DType, Error, Tensor};

/// f32: the tiled kernel sums in a different order than the reference's full softmax.
const TOL: f64 = 2e-5;

fn rand(shape: &[usize], seed: u64) -> Tensor {
    Tensor::rand(shape, -1.0, 1.0, DType::F32, seed, &kiln_cpu::cpu()).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    a.to_vec_f64().unwrap().iter().zip(b.to_vec_f64().unwrap()).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// Forward output and dq, dk, dv of fused vs reference.
fn compare(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, opts: AttentionOpts, what: &str) {
    let dout = rand(q.dims(), 77);
    let run = |fused: bool| {
        let (q, k, v) = (
            q.copy().unwrap().requires_grad_(),
            k.copy().unwrap().requires_grad_(),
            v.copy().unwrap().requires_grad_(),
        );
        let o = if fused {
            Tensor::scaled_dot_product_attention(&q, &k, &v, mask, &opts).unwrap()
        } else {
            Tensor::attention_reference(&q, &k, &v, mask, &opts).unwrap()
        };
        o.backward_with(dout.clone()).unwrap();
        (o, q.grad().unwrap(), k.grad().unwrap(), v.grad().unwrap())
    };
    let (a, b) = (run(true), run(false));
    for (name, x, y) in [("out", &a.0, &b.0), ("dq", &a.1, &b.1), ("dk", &a.2, &b.2), ("dv", &a.3, &b.3)] {
        let d = max_diff(x, y);
        assert!(d < TOL, "{what}: {name} differs by {d}");
    }
}

#[test]
fn fused_matches_reference_on_realistic_shapes() {
    let (q, k, v) = (rand(&[2, 4, 256, 64], 1), rand(&[2, 4, 256, 64], 2), rand(&[2, 4, 256, 64], 3));
    compare(&q, &k, &v, None, AttentionOpts::new(), "full");
    compare(&q, &k, &v, None, AttentionOpts::causal(), "causal");
    // Odd lengths (partial tiles), cross-attention with T ≠ S.
    let (q, k, v) = (rand(&[1, 3, 100, 64], 4), rand(&[1, 3, 130, 64], 5), rand(&[1, 3, 130, 64], 6));
    compare(&q, &k, &v, None, AttentionOpts::new(), "cross");
    compare(&q, &k, &v, None, AttentionOpts::causal(), "causal, S > T");
    // Grouped-query attention (LLaMA-style 4:1) and multi-query (Hkv = 1).
    let q = rand(&[1, 8, 96, 32], 7);
    let (k, v) = (rand(&[1, 2, 96, 32], 8), rand(&[1, 2, 96, 32], 9));
    compare(&q, &k, &v, None, AttentionOpts::causal(), "gqa");
    let (k1, v1) = (rand(&[1, 1, 96, 32], 10), rand(&[1, 1, 96, 32], 11));
    compare(&q, &k1, &v1, None, AttentionOpts::causal(), "mqa");
    // Padding mask (B, 1, 1, S): the second sequence's last 20 keys are padding.
    let mut m = vec![0f32; 2 * 130];
    m[130 + 110..].iter_mut().for_each(|x| *x = f32::NEG_INFINITY);
    let mask = Tensor::from_vec(m, &[2, 1, 1, 130], &kiln_cpu::cpu()).unwrap();
    let (q, k, v) = (rand(&[2, 2, 70, 16], 12), rand(&[2, 2, 130, 16], 13), rand(&[2, 2, 130, 16], 14));
    compare(&q, &k, &v, Some(&mask), AttentionOpts::new(), "padding mask");
}

#[test]
fn fully_masked_rows_give_zeros_not_nan() {
    let (q, k, v) = (rand(&[1, 1, 4, 8], 20), rand(&[1, 1, 4, 8], 21), rand(&[1, 1, 4, 8], 22));
    let mut m = vec![0f32; 16];
    m[4..8].iter_mut().for_each(|x| *x = f32::NEG_INFINITY); // query row 1 sees nothing
    let mask = Tensor::from_vec(m, &[1, 1, 4, 4], &kiln_cpu::cpu()).unwrap();
    let q = q.requires_grad_();
    let o = Tensor::scaled_dot_product_attention(&q, &k, &v, Some(&mask), &AttentionOpts::new()).unwrap();
    let ov = o.to_vec::<f32>().unwrap();
    assert!(ov[8..16].iter().all(|&x| x == 0.0));
    assert!(ov.iter().all(|x| x.is_finite()));
    o.sum_all().unwrap().backward().unwrap();
    let g = q.grad().unwrap().to_vec::<f32>().unwrap();
    assert!(g.iter().all(|x| x.is_finite()));
    assert!(g[8..16].iter().all(|&x| x == 0.0));
}

#[test]
fn long_sequence_without_the_score_matrix() {
    // T = 2048: the naive path needs a 2048² score matrix per head; the tiled kernel keeps 64×64.
    let t = 2048;
    let (q, k, v) = (rand(&[1, 2, t, 64], 30), rand(&[1, 2, t, 64], 31), rand(&[1, 2, t, 64], 32));
    let (q, k, v) = (q.requires_grad_(), k.requires_grad_(), v.requires_grad_());
    let o = Tensor::scaled_dot_product_attention(&q, &k, &v, None, &AttentionOpts::causal()).unwrap();
    o.sum_all().unwrap().backward().unwrap();
    // Check the last 8 query rows (which see all 2048 keys) against the reference on that slice.
    let q_tail = q.narrow(2, t - 8, 8).unwrap().detach();
    let want = Tensor::attention_reference(&q_tail, &k.detach(), &v.detach(), None, &AttentionOpts::causal()).unwrap();
    let got = o.narrow(2, t - 8, 8).unwrap();
    assert!(max_diff(&got, &want) < TOL, "{}", max_diff(&got, &want));
    // dq of a query row depends only on that row (dout = 1 everywhere): compare the tail rows.
    let q_tail = q_tail.requires_grad_();
    Tensor::attention_reference(&q_tail, &k.detach(), &v.detach(), None, &AttentionOpts::causal())
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let dq_tail = q.grad().unwrap().narrow(2, t - 8, 8).unwrap();
    let d = max_diff(&dq_tail, &q_tail.grad().unwrap());
    assert!(d < TOL, "dq tail differs by {d}");
    // Row 0 sees only key 0: its output is v[0].
    let row0 = o.narrow(2, 0, 1).unwrap().to_vec::<f32>().unwrap();
    let v0 = v.narrow(2, 0, 1).unwrap().to_vec::<f32>().unwrap();
    assert!(row0.iter().zip(&v0).all(|(a, b)| (a - b).abs() < 1e-6));
    assert!(k.grad().unwrap().to_vec::<f32>().unwrap().iter().all(|x| x.is_finite()));
}

#[test]
fn dropout_is_seeded_and_unbiased() {
    let (q, k, v) = (rand(&[1, 2, 64, 16], 40), rand(&[1, 2, 64, 16], 41), rand(&[1, 2, 64, 16], 42));
    let o = |p: f64, seed: u64| {
        let opts = AttentionOpts { dropout_p: p, seed, ..AttentionOpts::new() };
        Tensor::scaled_dot_product_attention(&q, &k, &v, None, &opts).unwrap().to_vec_f64().unwrap()
    };
    assert_eq!(o(0.1, 1), o(0.1, 1));
    assert_ne!(o(0.1, 1), o(0.1, 2));
    // Averaged over many masks, dropout's 1/(1−p) scaling keeps the expectation.
    let clean = o(0.0, 0);
    let n = 200;
    let mut mean = vec![0.0; clean.len()];
    for s in 0..n {
        o(0.3, s).iter().zip(mean.iter_mut()).for_each(|(x, m)| *m += x / n as f64);
    }
    let err = mean.iter().zip(&clean).map(|(a, b)| (a - b).abs()).sum::<f64>() / clean.len() as f64;
    assert!(err < 0.02, "mean abs deviation {err}");
}

#[test]
fn shape_errors_are_named() {
    let q = rand(&[1, 4, 8, 16], 50);
    let e = Tensor::scaled_dot_product_attention(
        &q,
        &rand(&[1, 3, 8, 16], 51),
        &rand(&[1, 3, 8, 16], 52),
        None,
        &AttentionOpts::new(),
    );
    assert!(matches!(e, Err(Error::ShapeMismatch { op: "attention", .. })), "H not divisible by Hkv");
    let e = Tensor::scaled_dot_product_attention(
        &q,
        &rand(&[1, 4, 8, 8], 53),
        &rand(&[1, 4, 8, 8], 54),
        None,
        &AttentionOpts::new(),
    );
    assert!(matches!(e, Err(Error::ShapeMismatch { .. })), "head dims differ");
    let e = Tensor::scaled_dot_product_attention(&q, &q, &rand(&[1, 4, 9, 16], 55), None, &AttentionOpts::new());
    assert!(matches!(e, Err(Error::ShapeMismatch { .. })), "k and v differ");
    let bad_mask = rand(&[1, 1, 3, 8], 56);
    let e = Tensor::scaled_dot_product_attention(&q, &q, &q, Some(&bad_mask), &AttentionOpts::new());
    assert!(matches!(e, Err(Error::Broadcast { .. })), "mask does not broadcast");
    let e = Tensor::scaled_dot_product_attention(
        &q,
        &q,
        &q,
        None,
        &AttentionOpts { dropout_p: 1.0, ..AttentionOpts::new() },
    );
    assert!(matches!(e, Err(Error::Invalid { .. })));
    let e = Tensor::scaled_dot_product_attention(&rand(&[8, 16], 57), &q, &q, None, &AttentionOpts::new());
    assert!(e.is_err());
}

#[test]
fn backward_is_deterministic() {
    // Partial dQ buffers are summed in a fixed order: repeated runs agree bit for bit.
    let q = rand(&[1, 4, 200, 32], 60);
    let (k, v) = (rand(&[1, 2, 200, 32], 61), rand(&[1, 2, 200, 32], 62));
    let run = || {
        let (q, k, v) = (q.copy().unwrap().requires_grad_(), k.copy().unwrap().requires_grad_(), v.copy().unwrap());
        let o = Tensor::scaled_dot_product_attention(&q, &k, &v, None, &AttentionOpts::causal()).unwrap();
        o.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        assert!(v.grad().is_none(), "v does not require grad");
        (q.grad().unwrap().to_vec::<f32>().unwrap(), k.grad().unwrap().to_vec::<f32>().unwrap())
    };
    let first = run();
    for _ in 0..3 {
        assert_eq!(run(), first);
    }
}

/// The packed path (one node from the fused projection) against splitting the projection into
/// head-major q, k, v views and calling the fused kernel: same output, same gradient.
#[test]
fn packed_attention_matches_split_views() {
    let (b, t, h, hkv, d) = (2, 70, 4, 2, 8);
    let w = (h + 2 * hkv) * d;
    let qkv = rand(&[b, t, w], 80);
    let dout = rand(&[b, t, h * d], 81);
    for opts in [AttentionOpts::causal(), AttentionOpts { dropout_p: 0.25, seed: 3, ..AttentionOpts::new() }] {
        let run = |packed: bool| {
            let x = qkv.copy().unwrap().requires_grad_();
            let y = if packed {
                Tensor::packed_attention(&x, h, hkv, None, &opts).unwrap()
            } else {
                let p = x.split(&[h * d, hkv * d, hkv * d], -1).unwrap();
                let heads = |p: &Tensor, n: usize| p.reshape(&[b, t, n, d]).unwrap().transpose(1, 2).unwrap();
                let o = Tensor::scaled_dot_product_attention(
                    &heads(&p[0], h),
                    &heads(&p[1], hkv),
                    &heads(&p[2], hkv),
                    None,
                    &opts,
                )
                .unwrap();
                o.transpose(1, 2).unwrap().reshape(&[b, t, h * d]).unwrap()
            };
            y.backward_with(dout.clone()).unwrap();
            (y, x.grad().unwrap())
        };
        let (a, r) = (run(true), run(false));
        assert_eq!(a.0.dims(), [b, t, h * d]);
        assert!(max_diff(&a.0, &r.0) == 0.0, "{opts:?}: outputs differ by {}", max_diff(&a.0, &r.0));
        assert!(max_diff(&a.1, &r.1) == 0.0, "{opts:?}: dqkv differs by {}", max_diff(&a.1, &r.1));
    }
    // Shape errors: the packed width must be (H + 2·Hkv)·D, Hkv must divide H.
    let e = Tensor::packed_attention(&rand(&[2, 5, 30], 82), 4, 2, None, &AttentionOpts::causal());
    assert!(matches!(e, Err(Error::BadShape { op: "packed_attention", .. })));
    let e = Tensor::packed_attention(&rand(&[2, 5, 40], 83), 3, 2, None, &AttentionOpts::causal());
    assert!(matches!(e, Err(Error::BadShape { .. })));
    let e = Tensor::packed_attention(&rand(&[5, 40], 84), 3, 1, None, &AttentionOpts::causal());
    assert!(matches!(e, Err(Error::BadShape { .. })));
}

/// Decoding shapes (T ≤ 4 query rows: the direct per-row kernel) against the reference, forward
/// and backward, with causal offsets (S > T), GQA/MQA, a padding mask and odd lengths.
#[test]
fn few_query_rows_match_reference() {
    for (t, s) in [(1, 1), (1, 7), (2, 64), (3, 130), (4, 5)] {
        for hkv in [1, 2] {
            let q = rand(&[2, 6, t, 16], 30 + t as u64);
            let (k, v) = (rand(&[2, hkv, s, 16], 40 + s as u64), rand(&[2, hkv, s, 16], 50 + s as u64));
            compare(&q, &k, &v, None, AttentionOpts::causal(), &format!("t {t} s {s} hkv {hkv} causal"));
            compare(&q, &k, &v, None, AttentionOpts::new(), &format!("t {t} s {s} hkv {hkv}"));
            let mut m = vec![0f32; 2 * s];
            m[s + s / 2..].iter_mut().for_each(|x| *x = f32::NEG_INFINITY);
            let mask = Tensor::from_vec(m, &[2, 1, 1, s], &kiln_cpu::cpu()).unwrap();
            compare(&q, &k, &v, Some(&mask), AttentionOpts::causal(), &format!("t {t} s {s} hkv {hkv} masked"));
        }
    }
}

/// A KV cache's filled prefix — the first S of `max` positions of a (B, Hkv, max, D) buffer —
/// is read in place (no copy) and gives exactly what its contiguous copy gives, on both the
/// few-rows and the tiled path; layouts that are not head-strided are still accepted (copied).
#[test]
fn head_strided_kv_is_read_in_place() {
    let (kb, vb) = (rand(&[2, 3, 100, 16], 60), rand(&[2, 3, 100, 16], 61));
    let (k, v) = (kb.narrow(2, 0, 37).unwrap(), vb.narrow(2, 0, 37).unwrap());
    assert!(!k.is_contiguous() && k.layout().head_strided() == Some(100 * 16));
    assert!(k.transpose(2, 3).unwrap().layout().head_strided().is_none());
    kiln_core::no_grad(|| {
        for t in [1, 4, 9, 70] {
            let q = rand(&[2, 6, t, 16], 62 + t as u64);
            let opts = AttentionOpts::causal();
            let a = Tensor::scaled_dot_product_attention(&q, &k, &v, None, &opts).unwrap();
            let b =
                Tensor::scaled_dot_product_attention(&q, &k.copy().unwrap(), &v.copy().unwrap(), None, &opts).unwrap();
            assert_eq!(a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap(), "t {t}");
            let r = Tensor::attention_reference(&q, &k, &v, None, &opts).unwrap();
            assert!(max_diff(&a, &r) < TOL, "t {t}");
        }
        // (B, Hkv, D, S) viewed as (B, Hkv, S, D): not head-strided, copied by the op
        let kt = rand(&[2, 3, 16, 37], 63).transpose(2, 3).unwrap();
        let q = rand(&[2, 6, 1, 16], 64);
        let a = Tensor::scaled_dot_product_attention(&q, &kt, &v, None, &AttentionOpts::new()).unwrap();
        let r = Tensor::attention_reference(&q, &kt, &v, None, &AttentionOpts::new()).unwrap();
        assert!(max_diff(&a, &r) < TOL);
    });
}

/// A sliding window inside the fused kernel (Mistral) equals the reference's explicit window
/// mask — forward and all gradients — across tile boundaries (T up to 300 with tiles of 64, so
/// whole key tiles are skipped), with S > T (a cache prefix), GQA, and in the few-rows path.
#[test]
fn sliding_window_matches_reference() {
    for (b, h, hkv, t, s, d, w) in
        [(1, 4, 2, 300, 300, 32, 40), (2, 2, 2, 130, 170, 16, 7), (1, 2, 1, 3, 20, 16, 5), (1, 2, 2, 50, 50, 8, 1)]
    {
        let (q, k, v) = (rand(&[b, h, t, d], 40), rand(&[b, hkv, s, d], 41), rand(&[b, hkv, s, d], 42));
        let opts = AttentionOpts { window: Some(w), ..AttentionOpts::causal() };
        compare(&q, &k, &v, None, opts, &format!("window {w}, T {t}, S {s}"));
    }
    let (q, k, v) = (rand(&[1, 1, 4, 8], 1), rand(&[1, 1, 4, 8], 2), rand(&[1, 1, 4, 8], 3));
    for opts in [
        AttentionOpts { window: Some(2), ..AttentionOpts::new() },
        AttentionOpts { window: Some(0), ..AttentionOpts::causal() },
    ] {
        let e = Tensor::scaled_dot_product_attention(&q, &k, &v, None, &opts).unwrap_err().to_string();
        assert!(e.contains("sliding window"), "{e}");
    }
}
