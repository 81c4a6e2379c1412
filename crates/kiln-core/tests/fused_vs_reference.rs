//! Fused kernels against their composite references in f32, on shapes large enough for the
//! parallel paths, plus the verified numbers of REFERENCE.md and bad-input errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cloned_ref_to_slice_refs)] // tests fail loudly by design

use kiln_core::ops::{CrossEntropyOpts, Reduction};
use kiln_core::{DType, Error, Tensor};

/// f32 fused vs composite: both round at ~1e-7 relative per op over a handful of ops, and the
/// fused kernels accumulate row statistics in f64 while the composite sums in f32 over rows of up
/// to ~1000 elements; the bound is relative to `1 + |reference|` (large `Sum` losses).
const FWD_TOL: f64 = 2e-5;
/// Gradients go through more ops (and the composite sums broadcast grads in a different order,
/// e.g. `dw` of a norm over 256 rows), so they get 5× the forward's slack.
const BWD_TOL: f64 = 1e-4;
/// Hand-computed numbers are given to 4 decimals: half a unit in the last place.
const DEC4: f64 = 5e-5;

fn rand(shape: &[usize], lo: f64, hi: f64, seed: u64) -> Tensor {
    Tensor::rand(shape, lo, hi, DType::F32, seed, &kiln_cpu::cpu()).unwrap()
}

/// Largest `|a − b| / (1 + |b|)` (absolute for small values, relative for large ones).
fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    a.to_vec_f64()
        .unwrap()
        .iter()
        .zip(b.to_vec_f64().unwrap())
        .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
        .fold(0.0, f64::max)
}

/// Runs `f` (fused) and `r` (reference) on fresh leaves, backpropagates `Σ out ⊙ w`, and compares
/// the outputs and every input gradient.
fn compare(inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Tensor, r: impl Fn(&[Tensor]) -> Tensor, what: &str) {
    let run = |g: &dyn Fn(&[Tensor]) -> Tensor| {
        let leaves: Vec<Tensor> = inputs.iter().map(|t| t.copy().unwrap().requires_grad_()).collect();
        let out = g(&leaves);
        let w = rand(out.dims(), -1.0, 1.0, 999);
        out.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
        (out, leaves.iter().map(|l| l.grad().unwrap()).collect::<Vec<_>>())
    };
    let (yf, gf) = run(&f);
    let (yr, gr) = run(&r);
    let d = max_diff(&yf, &yr);
    assert!(d < FWD_TOL, "{what}: forward differs by {d}");
    for (i, (a, b)) in gf.iter().zip(&gr).enumerate() {
        let d = max_diff(a, b);
        assert!(d < BWD_TOL, "{what}: gradient {i} differs by {d}");
    }
}

#[test]
fn softmax_family_matches_reference() {
    let x = rand(&[64, 1000], -5.0, 5.0, 1);
    compare(&[x.clone()], |t| t[0].softmax().unwrap(), |t| t[0].softmax_reference().unwrap(), "softmax");
    compare(
        &[x.clone()],
        |t| t[0].log_softmax().unwrap(),
        |t| t[0].softmax_reference().unwrap().log().unwrap(),
        "log_softmax",
    );
}

#[test]
fn norms_match_reference() {
    let x = rand(&[4, 64, 768], -3.0, 3.0, 2);
    let w = rand(&[768], 0.5, 1.5, 3);
    let b = rand(&[768], -0.5, 0.5, 4);
    compare(
        &[x.clone(), w.clone(), b.clone()],
        |t| t[0].layer_norm(Some(&t[1]), Some(&t[2]), 1e-5).unwrap(),
        |t| t[0].layer_norm_reference(Some(&t[1]), Some(&t[2]), 1e-5).unwrap(),
        "layer_norm",
    );
    compare(
        &[x.clone(), w.clone()],
        |t| t[0].rms_norm(Some(&t[1]), 1e-6).unwrap(),
        |t| t[0].rms_norm_reference(Some(&t[1]), 1e-6).unwrap(),
        "rms_norm",
    );
}

#[test]
fn cross_entropy_matches_reference() {
    let logits = rand(&[8, 64, 500], -4.0, 4.0, 5);
    let mut ids: Vec<i64> = (0..512).map(|i| (i * 37 % 500) as i64).collect();
    ids[7] = -100;
    ids[300] = -100;
    let t = Tensor::from_vec(ids, &[8, 64], &kiln_cpu::cpu()).unwrap();
    let tt = t.clone();
    compare(
        &[logits],
        move |x| x[0].cross_entropy(&t, CrossEntropyOpts::default()).unwrap(),
        move |x| x[0].cross_entropy_reference(&tt, CrossEntropyOpts::default()).unwrap(),
        "cross_entropy",
    );
}

#[test]
fn norms_without_affine_and_small_shapes_match_reference() {
    // Small shapes take the serial path; [3, 5] has rows shorter than a SIMD lane group.
    for (shape, seed) in [(vec![3usize, 5], 10u64), (vec![2, 3, 64], 11), (vec![64, 1024], 12)] {
        let x = rand(&shape, -3.0, 3.0, seed);
        let c = shape[shape.len() - 1];
        let b = rand(&[c], -0.5, 0.5, seed + 100);
        let w = rand(&[c], 0.5, 1.5, seed + 200);
        compare(
            &[x.clone()],
            |t| t[0].layer_norm(None, None, 1e-5).unwrap(),
            |t| t[0].layer_norm_reference(None, None, 1e-5).unwrap(),
            "layer_norm (no affine)",
        );
        compare(
            &[x.clone(), b.clone()],
            |t| t[0].layer_norm(None, Some(&t[1]), 1e-5).unwrap(),
            |t| t[0].layer_norm_reference(None, Some(&t[1]), 1e-5).unwrap(),
            "layer_norm (bias only)",
        );
        compare(
            &[x.clone(), w.clone()],
            |t| t[0].layer_norm(Some(&t[1]), None, 1e-5).unwrap(),
            |t| t[0].layer_norm_reference(Some(&t[1]), None, 1e-5).unwrap(),
            "layer_norm (weight only)",
        );
        compare(
            &[x.clone()],
            |t| t[0].rms_norm(None, 1e-6).unwrap(),
            |t| t[0].rms_norm_reference(None, 1e-6).unwrap(),
            "rms_norm (no weight)",
        );
    }
}

#[test]
fn cross_entropy_options_match_reference() {
    let dev = kiln_cpu::cpu();
    // (B, T, V) = (4, 32, 300): 38400 logits, the parallel path.
    let logits = rand(&[4, 32, 300], -4.0, 4.0, 13);
    let mut ids: Vec<i64> = (0..128).map(|i| (i * 53 % 300) as i64).collect();
    ids[0] = -100;
    ids[77] = -100;
    let t64 = Tensor::from_vec(ids.clone(), &[4, 32], &dev).unwrap();
    let t32 = Tensor::from_vec(ids.iter().map(|&i| i as i32).collect::<Vec<_>>(), &[4, 32], &dev).unwrap();
    for targets in [t64, t32] {
        for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
            for label_smoothing in [0.0, 0.1, 1.0] {
                let opts = CrossEntropyOpts { label_smoothing, reduction, ..Default::default() };
                let (ta, tb) = (targets.clone(), targets.clone());
                compare(
                    &[logits.clone()],
                    move |x| x[0].cross_entropy(&ta, opts).unwrap(),
                    move |x| x[0].cross_entropy_reference(&tb, opts).unwrap(),
                    &format!("cross_entropy {reduction:?} ε={label_smoothing} {}", targets.dtype()),
                );
            }
        }
    }
    // A custom ignore index (class 0 is ignored) and no ignore index at all.
    let ids: Vec<i64> = (0..64).map(|i| (i * 7 % 10) as i64).collect();
    let t = Tensor::from_vec(ids, &[64], &dev).unwrap();
    let small = rand(&[64, 10], -2.0, 2.0, 14);
    for ignore_index in [Some(0), None] {
        let opts = CrossEntropyOpts { ignore_index, label_smoothing: 0.05, reduction: Reduction::Mean };
        let (ta, tb) = (t.clone(), t.clone());
        compare(
            &[small.clone()],
            move |x| x[0].cross_entropy(&ta, opts).unwrap(),
            move |x| x[0].cross_entropy_reference(&tb, opts).unwrap(),
            &format!("cross_entropy ignore_index={ignore_index:?}"),
        );
    }
}

/// Embedding forward and scatter-add backward on a parallel-path shape, against host loops. The
/// kernel sums each destination row's sources in index order, so a host f32 loop in that order
/// reproduces the gradient bit for bit whatever the thread count.
#[test]
fn embedding_matches_host_loops_and_is_deterministic() {
    let dev = kiln_cpu::cpu();
    let (v, c, b, t) = (50usize, 64usize, 8usize, 128usize);
    let w = rand(&[v, c], -1.0, 1.0, 15);
    // Skewed ids: token 7 appears very often (like a padding or common token).
    let ids: Vec<i64> = (0..b * t).map(|i| if i % 3 == 0 { 7 } else { ((i * 31) % v) as i64 }).collect();
    let idt = Tensor::from_vec(ids.clone(), &[b, t], &dev).unwrap();
    let g = rand(&[b, t, c], -1.0, 1.0, 16);
    let (wv, gv) = (w.to_vec::<f32>().unwrap(), g.to_vec::<f32>().unwrap());
    let run = || {
        let leaf = w.copy().unwrap().requires_grad_();
        let e = Tensor::embedding(&leaf, &idt).unwrap();
        e.backward_with(g.clone()).unwrap();
        (e.to_vec::<f32>().unwrap(), leaf.grad().unwrap().to_vec::<f32>().unwrap())
    };
    let (y, dw) = run();
    assert_eq!(y.len(), b * t * c);
    for (i, &id) in ids.iter().enumerate() {
        assert_eq!(&y[i * c..(i + 1) * c], &wv[id as usize * c..(id as usize + 1) * c], "row {i}");
    }
    let mut want = vec![0.0f32; v * c];
    for (i, &id) in ids.iter().enumerate() {
        for j in 0..c {
            want[id as usize * c + j] += gv[i * c + j];
        }
    }
    assert_eq!(dw, want, "scatter-add must equal the in-order host sum exactly");
    assert_eq!(run().1, dw, "a second run must be bitwise identical");
    // index_select on dim 1 of a large tensor against host loops.
    let x = rand(&[64, 200, 3], -1.0, 1.0, 17);
    let sel: Vec<i32> = (0..300i32).map(|i| i * 13 % 200).collect();
    let st = Tensor::from_vec(sel.clone(), &[300], &dev).unwrap();
    let y = x.index_select(1, &st).unwrap();
    assert_eq!(y.dims(), &[64, 300, 3]);
    let (xv, yv) = (x.to_vec::<f32>().unwrap(), y.to_vec::<f32>().unwrap());
    for o in 0..64 {
        for (i, &s) in sel.iter().enumerate() {
            let (src, dst) = ((o * 200 + s as usize) * 3, (o * 300 + i) * 3);
            assert_eq!(&yv[dst..dst + 3], &xv[src..src + 3]);
        }
    }
}

#[test]
fn cross_entropy_hand_computed() {
    let dev = kiln_cpu::cpu();
    // PyTorch: F.cross_entropy(tensor([[1., 2., 3.]]), tensor([2])) = 0.4076 (= ln(e+e²+e³) − 3),
    // with label_smoothing=0.1: 0.9·0.4076 + 0.1·(lse − mean x) = 0.5076.
    let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[1, 3], &dev).unwrap().requires_grad_();
    let t = Tensor::from_vec(vec![2i64], &[1], &dev).unwrap();
    let l = x.cross_entropy(&t, CrossEntropyOpts::default()).unwrap();
    assert!((l.to_scalar().unwrap() - 0.4076).abs() < DEC4);
    l.backward().unwrap();
    // dx = softmax(x) − onehot = [0.0900, 0.2447, 0.6652 − 1].
    let want = [0.0900, 0.2447, -0.3348];
    for (g, w) in x.grad().unwrap().to_vec::<f32>().unwrap().iter().zip(want) {
        assert!((*g as f64 - w).abs() < DEC4, "dlogits {g} vs {w}");
    }
    let opts = CrossEntropyOpts { label_smoothing: 0.1, ..Default::default() };
    let l = x.cross_entropy(&t, opts).unwrap().to_scalar().unwrap();
    assert!((l - 0.5076).abs() < DEC4, "smoothed {l}");
    // Two rows, [[1,2,3],[0,0,0]] → [2, 1]: per-row [0.4076, ln 3 = 1.0986], mean 0.7531,
    // sum 1.5062; a third, ignored row changes neither.
    let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 0.0, 0.0, 0.0, 5.0, -5.0, 0.0], &[3, 3], &dev).unwrap();
    let t = Tensor::from_vec(vec![2i32, 1, -100], &[3], &dev).unwrap();
    let with = |reduction| x.cross_entropy(&t, CrossEntropyOpts { reduction, ..Default::default() }).unwrap();
    assert!((with(Reduction::Mean).to_scalar().unwrap() - 0.7531).abs() < DEC4);
    assert!((with(Reduction::Sum).to_scalar().unwrap() - 1.5062).abs() < DEC4);
    let rows = with(Reduction::None).to_vec::<f32>().unwrap();
    for (g, w) in rows.iter().zip([0.4076, 1.0986, 0.0]) {
        assert!((*g as f64 - w).abs() < DEC4, "row loss {g} vs {w}");
    }
}

#[test]
fn cross_entropy_semantics() {
    let dev = kiln_cpu::cpu();
    // Uniform logits: loss = ln V for every row, with or without smoothing.
    let x = Tensor::zeros(&[3, 4], DType::F32, &dev).unwrap();
    let t = Tensor::from_vec(vec![0i64, 3, -100], &[3], &dev).unwrap();
    let l = x.cross_entropy(&t, CrossEntropyOpts::default()).unwrap().to_scalar().unwrap();
    assert!((l - 4f64.ln()).abs() < 1e-6);
    let rows = x.cross_entropy(&t, CrossEntropyOpts { reduction: Reduction::None, ..Default::default() }).unwrap();
    assert_eq!(rows.dims(), &[3]);
    assert_eq!(rows.to_vec::<f32>().unwrap()[2], 0.0);
    // Label smoothing by hand: logits [2, 0], target 0, ε = 0.2.
    let x = Tensor::from_vec(vec![2.0f32, 0.0], &[1, 2], &dev).unwrap();
    let t = Tensor::from_vec(vec![0i64], &[1], &dev).unwrap();
    let l = x.cross_entropy(&t, CrossEntropyOpts { label_smoothing: 0.2, ..Default::default() }).unwrap();
    let lse = (2f64.exp() + 1.0).ln();
    let want = 0.8 * (lse - 2.0) + 0.2 * (lse - 1.0);
    assert!((l.to_scalar().unwrap() - want).abs() < 1e-6);
    // Every target ignored: zero loss and zero gradient, not NaN.
    let x = rand(&[2, 5], -1.0, 1.0, 6).requires_grad_();
    let t = Tensor::from_vec(vec![-100i64, -100], &[2], &dev).unwrap();
    let l = x.cross_entropy(&t, CrossEntropyOpts::default()).unwrap();
    assert_eq!(l.to_scalar().unwrap(), 0.0);
    l.backward().unwrap();
    assert!(x.grad().unwrap().to_vec::<f32>().unwrap().iter().all(|&g| g == 0.0));
}

#[test]
fn verified_numbers() {
    let dev = kiln_cpu::cpu();
    let s = Tensor::from_vec(vec![2.0f32, 1.0, 0.1], &[3], &dev).unwrap().softmax().unwrap();
    let want = [0.6590, 0.2424, 0.0986];
    for (g, w) in s.to_vec::<f32>().unwrap().iter().zip(want) {
        assert!((*g as f64 - w).abs() < DEC4, "softmax {g} vs {w}");
    }
    let ln = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[4], &dev).unwrap().layer_norm(None, None, 0.0).unwrap();
    let want = [-1.3416, -0.4472, 0.4472, 1.3416];
    for (g, w) in ln.to_vec::<f32>().unwrap().iter().zip(want) {
        assert!((*g as f64 - w).abs() < DEC4, "layer_norm {g} vs {w}");
    }
    // RMSNorm([1, 2, 3, 4]), eps → 0: rms = √7.5 = 2.7386 → [0.3651, 0.7303, 1.0954, 1.4606].
    let rn = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[4], &dev).unwrap().rms_norm(None, 0.0).unwrap();
    for (g, w) in rn.to_vec::<f32>().unwrap().iter().zip([0.3651, 0.7303, 1.0954, 1.4606]) {
        assert!((*g as f64 - w).abs() < DEC4, "rms_norm {g} vs {w}");
    }
}

#[test]
fn embedding_and_dropout_behave() {
    let dev = kiln_cpu::cpu();
    let w = Tensor::from_vec((0..12).map(|i| i as f32).collect(), &[4, 3], &dev).unwrap().requires_grad_();
    let ids = Tensor::from_vec(vec![2i64, 0, 2], &[1, 3], &dev).unwrap();
    let e = Tensor::embedding(&w, &ids).unwrap();
    assert_eq!(e.dims(), &[1, 3, 3]);
    assert_eq!(e.to_vec::<f32>().unwrap(), vec![6.0, 7.0, 8.0, 0.0, 1.0, 2.0, 6.0, 7.0, 8.0]);
    e.sum_all().unwrap().backward().unwrap();
    // Row 2 was used twice, row 0 once, rows 1 and 3 never.
    assert_eq!(
        w.grad().unwrap().to_vec::<f32>().unwrap(),
        vec![1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 0.0, 0.0, 0.0]
    );
    // Dropout keeps ≈ 1 − p, scales by 1/(1 − p), is seeded, and is the identity in eval.
    let x = Tensor::ones(&[200_000], DType::F32, &dev).unwrap();
    let y = x.dropout(0.25, 3, true).unwrap().to_vec::<f32>().unwrap();
    let kept = y.iter().filter(|&&v| v != 0.0).count() as f64 / y.len() as f64;
    assert!((kept - 0.75).abs() < 0.01, "kept {kept}");
    assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
    assert_eq!(x.dropout(0.25, 3, true).unwrap().to_vec::<f32>().unwrap(), y);
    assert_ne!(x.dropout(0.25, 4, true).unwrap().to_vec::<f32>().unwrap(), y);
    assert_eq!(x.dropout(0.25, 3, false).unwrap().to_vec::<f32>().unwrap(), vec![1.0; 200_000]);
    assert!(x.dropout(1.0, 3, true).unwrap().to_vec::<f32>().unwrap().iter().all(|&v| v == 0.0));
}

#[test]
fn bad_inputs_are_errors() {
    let dev = kiln_cpu::cpu();
    let logits = rand(&[2, 5], -1.0, 1.0, 7);
    let t = Tensor::from_vec(vec![1i64, 5], &[2], &dev).unwrap();
    let e = logits.cross_entropy(&t, CrossEntropyOpts::default()).unwrap_err();
    assert!(matches!(e, Error::IndexOutOfRange { op: "cross_entropy", index: 5, size: 5 }), "{e}");
    let tf = rand(&[2], 0.0, 1.0, 8);
    assert!(matches!(logits.cross_entropy(&tf, CrossEntropyOpts::default()), Err(Error::UnsupportedDType { .. })));
    let t3 = Tensor::from_vec(vec![1i64, 2, 3], &[3], &dev).unwrap();
    assert!(matches!(logits.cross_entropy(&t3, CrossEntropyOpts::default()), Err(Error::ShapeMismatch { .. })));
    let w_bad = rand(&[4], 0.0, 1.0, 9);
    assert!(matches!(logits.layer_norm(Some(&w_bad), None, 1e-5), Err(Error::ShapeMismatch { op: "layer_norm", .. })));
    assert!(matches!(logits.rms_norm(Some(&w_bad), 1e-5), Err(Error::ShapeMismatch { op: "rms_norm", .. })));
    let ids = Tensor::from_vec(vec![0i64, 9], &[2], &dev).unwrap();
    assert!(matches!(logits.index_select(0, &ids), Err(Error::IndexOutOfRange { index: 9, size: 2, .. })));
    assert!(matches!(logits.index_select(0, &tf), Err(Error::UnsupportedDType { .. })));
    assert!(matches!(logits.dropout(1.5, 0, true), Err(Error::Invalid { .. })));
    assert!(matches!(logits.dropout(f64::NAN, 0, true), Err(Error::Invalid { .. })));
    assert!(matches!(ids.dropout(0.5, 0, true), Err(Error::UnsupportedDType { op: "dropout", .. })));

    // Cross-entropy: negative target that is not the ignore index, no ignore index at all,
    // i32 targets out of range, bad label smoothing, integer logits; the reference agrees.
    let neg = Tensor::from_vec(vec![-1i64, 0], &[2], &dev).unwrap();
    let e = logits.cross_entropy(&neg, CrossEntropyOpts::default()).unwrap_err();
    assert!(matches!(e, Error::IndexOutOfRange { index: -1, size: 5, .. }), "{e}");
    let pad = Tensor::from_vec(vec![-100i64, 0], &[2], &dev).unwrap();
    let no_ignore = CrossEntropyOpts { ignore_index: None, ..Default::default() };
    assert!(matches!(logits.cross_entropy(&pad, no_ignore), Err(Error::IndexOutOfRange { index: -100, .. })));
    let t32 = Tensor::from_vec(vec![0i32, 7], &[2], &dev).unwrap();
    assert!(matches!(
        logits.cross_entropy(&t32, CrossEntropyOpts::default()),
        Err(Error::IndexOutOfRange { index: 7, size: 5, .. })
    ));
    let smooth = CrossEntropyOpts { label_smoothing: 1.5, ..Default::default() };
    assert!(matches!(logits.cross_entropy(&t32, smooth), Err(Error::Invalid { .. })));
    let int_logits = Tensor::from_vec(vec![0i64; 10], &[2, 5], &dev).unwrap();
    assert!(matches!(int_logits.cross_entropy(&neg, CrossEntropyOpts::default()), Err(Error::UnsupportedDType { .. })));
    assert!(matches!(
        logits.cross_entropy_reference(&t, CrossEntropyOpts::default()),
        Err(Error::IndexOutOfRange { index: 5, size: 5, .. })
    ));

    // Norm parameters: wrong bias shape, wrong dtype, a rank-0 input, integer input.
    let b_bad = rand(&[5, 1], 0.0, 1.0, 10);
    assert!(matches!(logits.layer_norm(None, Some(&b_bad), 1e-5), Err(Error::ShapeMismatch { .. })));
    let w64 = Tensor::ones(&[5], DType::F64, &dev).unwrap();
    assert!(matches!(logits.layer_norm(Some(&w64), None, 1e-5), Err(Error::DTypeMismatch { .. })));
    assert!(matches!(logits.rms_norm(Some(&w64), 1e-5), Err(Error::DTypeMismatch { .. })));
    let scalar = Tensor::ones(&[], DType::F32, &dev).unwrap();
    assert!(matches!(scalar.layer_norm(None, None, 1e-5), Err(Error::BadShape { .. })));
    assert!(matches!(scalar.rms_norm(None, 1e-5), Err(Error::BadShape { .. })));
    assert!(matches!(int_logits.layer_norm(None, None, 1e-5), Err(Error::UnsupportedDType { .. })));

    // Gathers: float ids for embedding, a (V) weight, negative and u8 ids out of range, bad dim.
    let table = rand(&[4, 3], -1.0, 1.0, 11);
    assert!(matches!(Tensor::embedding(&table, &tf), Err(Error::UnsupportedDType { .. })));
    let flat = rand(&[4], -1.0, 1.0, 12);
    assert!(matches!(Tensor::embedding(&flat, &ids), Err(Error::BadShape { op: "embedding", .. })));
    let negid = Tensor::from_vec(vec![-1i64], &[1], &dev).unwrap();
    assert!(matches!(Tensor::embedding(&table, &negid), Err(Error::IndexOutOfRange { index: -1, size: 4, .. })));
    let u8id = Tensor::from_vec(vec![4u8], &[1], &dev).unwrap();
    assert!(matches!(table.index_select(0, &u8id), Err(Error::IndexOutOfRange { index: 4, size: 4, .. })));
    assert!(matches!(table.index_select(2, &u8id), Err(Error::DimOutOfRange { .. })));
}

#[test]
fn rope_matches_reference() {
    // true RoPE tables (equal halves) and (B, H, T, D) input, as attention uses it
    let (t, d) = (7, 16);
    let mut cos = vec![0f32; t * d];
    let mut sin = vec![0f32; t * d];
    for p in 0..t {
        for i in 0..d {
            let a = p as f64 * 10000f64.powf(-2.0 * (i % (d / 2)) as f64 / d as f64);
            (cos[p * d + i], sin[p * d + i]) = (a.cos() as f32, a.sin() as f32);
        }
    }
    let dev = kiln_cpu::cpu();
    let (c, s) = (Tensor::from_vec(cos, &[t, d], &dev).unwrap(), Tensor::from_vec(sin, &[t, d], &dev).unwrap());
    let x = rand(&[2, 3, t, d], -2.0, 2.0, 21);
    let (c2, s2) = (c.clone(), s.clone());
    compare(&[x], move |v| v[0].rope(&c, &s).unwrap(), move |v| v[0].rope_reference(&c2, &s2).unwrap(), "rope");
}
