#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cloned_ref_to_slice_refs)] // tests fail loudly by design

//! PyTorch parity of the decoder-only [`Gpt`] (llm.c's `test_gpt2` design): a tiny GPT-2 and a
//! tiny LLaMA (GQA, RoPE, RMSNorm, SwiGLU) with PyTorch's weights must reproduce PyTorch's logits,
//! loss and every parameter gradient on one batch, then the losses of 10 AdamW steps (with
//! global-norm clipping) on that batch.
//!
//! The fixtures in `tests/fixtures/*.safetensors` are written by `tools/make_fixtures.py` from
//! the PyTorch model in `tools/torch_gpt.py` (see that script for their contents); this test
//! needs no Python.
//!
//! # Error measure
//! Every comparison is `max |kiln − torch| / max |torch|` over a tensor (for a scalar loss, plain
//! relative error), and must stay ≤ 1e-4. Normalising by the tensor's largest magnitude rather
//! than element by element is deliberate: a logit or gradient entry near zero is the sum of
//! terms of the tensor's typical size that cancel, so f32 rounding (≈ 6e-8 per op, summed in a
//! different order by kiln's kernels and by PyTorch's) leaves an absolute error set by that
//! typical size, not by the tiny result — a per-element relative error would be dominated by
//! such entries and say nothing. A genuine bug (a wrong pairing, scale, transpose or missing
//! term) moves errors to 1e-2 and beyond, orders of magnitude above this bound.

use kiln_core::ops::CrossEntropyOpts;
use kiln_core::{no_grad, safetensors, Device, Module, Tensor};
use kiln_models::gpt::{Gpt, GptConfig};
use kiln_train::{clip_grad_norm, AdamW, AdamWConfig};
use std::collections::HashMap;
use std::path::PathBuf;

/// Largest allowed error, relative to the reference tensor's max-abs.
const TOL: f64 = 1e-4;

/// Non-parameter tensors of a fixture.
const RESERVED: [&str; 6] = ["x", "y", "logits", "loss", "train.loss", "train.grad_norm"];

struct Fixture {
    tensors: HashMap<String, Tensor>,
    meta: HashMap<String, String>,
}

impl Fixture {
    fn load(name: &str, dev: &Device) -> Fixture {
        // KILN_TRAIN_FIXTURES: where a prebuilt test binary finds them on another machine
        // (bench/cuda_check.sh runs this test on a GPU machine that has no cargo).
        let dir = std::env::var_os("KILN_TRAIN_FIXTURES")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"));
        let path = dir.join(format!("{name}.safetensors"));
        let (tensors, meta) = safetensors::load(&path, dev)
            .unwrap_or_else(|e| panic!("{}: {e} (regenerate with python3 tools/make_fixtures.py)", path.display()));
        Fixture { tensors: tensors.into_iter().collect(), meta }
    }

    fn get(&self, name: &str) -> &Tensor {
        self.tensors.get(name).unwrap_or_else(|| panic!("fixture has no tensor {name}"))
    }

    fn values(&self, name: &str) -> Vec<f64> {
        self.get(name).to_vec_f64().unwrap()
    }

    fn meta_f64(&self, key: &str) -> f64 {
        self.meta[key].parse().unwrap_or_else(|e| panic!("metadata {key}: {e}"))
    }
}

/// `max |got − want| / max |want|` (see the module docs), after checking the shapes agree.
fn rel_err(what: &str, got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let (g, w) = (got.to_vec_f64().unwrap(), want.to_vec_f64().unwrap());
    let scale = w.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(scale > 0.0, "{what}: the reference is all zeros");
    let diff = g.iter().zip(&w).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff.is_finite(), "{what}: non-finite values");
    diff / scale
}

fn check(what: &str, err: f64) {
    assert!(err <= TOL, "{what}: relative error {err:.3e} exceeds {TOL:.0e}");
}

fn parity(name: &str, dev: &Device) {
    let fx = Fixture::load(name, dev);
    let cfg: GptConfig = serde_json::from_str(&fx.meta["config"]).expect("config metadata");
    let model = Gpt::new(cfg.clone(), 0, dev).unwrap();
    let params = model.named_parameters();

    // Names: kiln's parameters are exactly PyTorch's, in the same order, and every other tensor
    // in the file is a known input/output or the gradient of one of them.
    let torch_names: Vec<String> = serde_json::from_str(&fx.meta["params"]).expect("params metadata");
    let kiln_names: Vec<String> = params.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(kiln_names, torch_names, "{name}: parameter names/order differ from PyTorch's");
    for key in fx.tensors.keys() {
        let param = key.strip_prefix("grad.").unwrap_or(key);
        assert!(
            RESERVED.contains(&key.as_str()) || kiln_names.iter().any(|n| n == param),
            "{name}: fixture tensor {key} is no kiln parameter"
        );
    }
    assert_eq!(fx.tensors.len(), 2 * params.len() + RESERVED.len(), "{name}: fixture tensor count");
    assert_eq!(params.iter().map(|(_, p)| p.numel()).sum::<usize>(), cfg.num_params(), "{name}: parameter count");
    for (n, p) in &params {
        p.assign_(fx.get(n)).unwrap_or_else(|e| panic!("{name}: assigning {n}: {e}"));
    }
    let (x, y) = (fx.get("x"), fx.get("y"));
    let mut report = Vec::new();

    // Inference path (no tape, train = false).
    let logits = no_grad(|| model.forward(x, None, false, 0)).unwrap();
    let err = rel_err("logits (eval)", &logits, fx.get("logits"));
    check(&format!("{name} logits (eval)"), err);
    report.push(format!("logits(eval) {err:.2e}"));

    // Training path: logits, loss, every gradient.
    let logits = model.forward(x, None, true, 0).unwrap();
    let err = rel_err("logits", &logits, fx.get("logits"));
    check(&format!("{name} logits"), err);
    report.push(format!("logits {err:.2e}"));
    let loss = logits.cross_entropy(y, CrossEntropyOpts::default()).unwrap();
    let want = fx.values("loss")[0];
    let err = (loss.to_scalar().unwrap() - want).abs() / want.abs();
    check(&format!("{name} loss"), err);
    report.push(format!("loss {err:.2e}"));
    loss.backward().unwrap();
    let (mut worst, mut worst_name) = (0.0f64, String::new());
    for (n, p) in &params {
        let g = p.grad().unwrap_or_else(|| panic!("{name}: {n} got no gradient"));
        let err = rel_err(&format!("grad {n}"), &g, fx.get(&format!("grad.{n}")));
        check(&format!("{name} grad {n}"), err);
        if err >= worst {
            (worst, worst_name) = (err, n.clone());
        }
    }
    report.push(format!("grads max {worst:.2e} ({worst_name})"));

    // Training: kiln's Trainer::step order — forward, backward, clip, AdamW step — on the same
    // batch, comparing each step's loss and pre-clip gradient norm.
    let want_losses = fx.values("train.loss");
    let want_norms = fx.values("train.grad_norm");
    let (lr, clip) = (fx.meta_f64("lr"), fx.meta_f64("grad_clip"));
    let adamw = AdamWConfig { weight_decay: fx.meta_f64("weight_decay"), ..Default::default() };
    assert_eq!((adamw.beta1, adamw.beta2, adamw.eps), (0.9, 0.95, 1e-8), "tools/torch_gpt.py assumes these");
    let mut opt = AdamW::new(params.clone(), adamw).unwrap();
    opt.zero_grad();
    assert!(want_norms.iter().any(|&n| n > clip), "{name}: the fixture never exercises clipping");
    let (mut worst_loss, mut worst_norm) = (0.0f64, 0.0f64);
    for (step, (&want_loss, &want_norm)) in want_losses.iter().zip(&want_norms).enumerate() {
        let loss = model.forward(x, None, true, 0).unwrap().cross_entropy(y, CrossEntropyOpts::default()).unwrap();
        let got = loss.to_scalar().unwrap();
        loss.backward().unwrap();
        let norm = clip_grad_norm(&opt.params(), clip).unwrap();
        opt.step(lr).unwrap();
        opt.zero_grad();
        let (el, en) = ((got - want_loss).abs() / want_loss.abs(), (norm - want_norm).abs() / want_norm.abs());
        check(&format!("{name} step {step} loss ({got} vs {want_loss})"), el);
        check(&format!("{name} step {step} grad norm ({norm} vs {want_norm})"), en);
        (worst_loss, worst_norm) = (worst_loss.max(el), worst_norm.max(en));
    }
    assert!(want_losses[want_losses.len() - 1] < 0.5 * want_losses[0], "{name}: the reference run should learn");
    report.push(format!("{} step losses {worst_loss:.2e}, grad norms {worst_norm:.2e}", want_losses.len()));
    eprintln!("{name} on {} vs PyTorch, max relative errors: {}", dev.name(), report.join(", "));
}

#[test]
fn gpt2_matches_pytorch() {
    parity("gpt2", &kiln_cpu::cpu());
}

#[test]
fn llama_matches_pytorch() {
    parity("llama", &kiln_cpu::cpu());
}

/// The same fixtures on the CUDA backend (issue 7's "GPT parity fixtures on GPU").
fn cuda() -> Option<Device> {
    if !kiln_cuda::is_available() {
        println!("SKIP: no CUDA driver/GPU found");
        return None;
    }
    Some(kiln_cuda::cuda(0).unwrap_or_else(|e| panic!("a GPU is present but the backend failed: {e}")))
}

#[test]
fn gpt2_matches_pytorch_on_cuda() {
    if let Some(dev) = cuda() {
        parity("gpt2", &dev);
    }
}

#[test]
fn llama_matches_pytorch_on_cuda() {
    if let Some(dev) = cuda() {
        parity("llama", &dev);
    }
}
