//! Fused kernels against their composite references in f32, on shapes large enough for the
//! parallel paths, plus the verified numbers of REFERENCE.md and bad-input errors.

use kiln_core::ops::{CrossEntropyOpts, Reduction};
use kiln_core::{DType, Error, Tensor};

/// f32 fused vs composite: both round at ~1e-7 relative per op over a handful of ops.
const FWD_TOL: f64 = 2e-5;
/// Gradients go through more ops (and the composite sums broadcast grads in a different order).
const BWD_TOL: f64 = 1e-4;

fn rand(shape: &[usize], lo: f64, hi: f64, seed: u64) -> Tensor {
    Tensor::rand(shape, lo, hi, DType::F32, seed, &kiln_cpu::cpu()).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    a.to_vec_f64().unwrap().iter().zip(b.to_vec_f64().unwrap()).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
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
        move |x| x[0].cross_entropy_reference(&tt, -100).unwrap(),
        "cross_entropy",
    );
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
        assert!((*g as f64 - w).abs() < 5e-5, "softmax {g} vs {w}");
    }
    let ln = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[4], &dev).unwrap().layer_norm(None, None, 0.0).unwrap();
    let want = [-1.3416, -0.4472, 0.4472, 1.3416];
    for (g, w) in ln.to_vec::<f32>().unwrap().iter().zip(want) {
        assert!((*g as f64 - w).abs() < 5e-5, "layer_norm {g} vs {w}");
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
}
