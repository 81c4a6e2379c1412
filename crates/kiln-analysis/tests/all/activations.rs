//! Activation memory against Korthikanti et al.'s Table 2, term by term.

use kiln_analysis::activations::{
    activation_memory, korthikanti_full_recompute, korthikanti_layer_bytes, korthikanti_selective,
    korthikanti_sequence_parallel, korthikanti_tensor_parallel, ActivationOpts,
};
use kiln_analysis::{Arch, Recompute};

fn gpt3() -> Arch {
    Arch::preset("gpt3-175b").unwrap()
}

#[test]
fn no_parallelism_is_34_plus_5as_over_h() {
    let (s, b, h, a) = (2048, 1, 12288, 96);
    let m = activation_memory(&gpt3(), b, s, &ActivationOpts::default()).unwrap();
    assert_eq!(m.layer.total(), korthikanti_layer_bytes(s, b, h, a).unwrap());
    // the parts: attention 11·sbh, MLP 19·sbh, norms 4·sbh, core 5·a·s²·b
    let sbh = s * b * h;
    assert_eq!(m.layer.attention, 11 * sbh);
    assert_eq!(m.layer.mlp, 19 * sbh);
    assert_eq!(m.layer.norms, 4 * sbh);
    assert_eq!(m.layer.attention_core, 5 * a * s * s * b);
    assert_eq!(m.layers, 96 * m.layer.total());
    // seed 003 eq. 3.7 in fp32 (p = 4): B·S·(66·D + 9·A·S) per layer — eq. 3.8 prints 15·A·S,
    // a known slip (REFERENCE.md): (2p + 1) = 9 at p = 4
    let fp32 = ActivationOpts { bytes: 4, ..ActivationOpts::default() };
    let m4 = activation_memory(&gpt3(), b, s, &fp32).unwrap();
    assert_eq!(m4.layer.total(), b * s * (66 * h + 9 * a * s));
}

#[test]
fn tensor_and_sequence_parallel() {
    let (s, b, h, a, t) = (2048, 2, 12288, 96, 8);
    let tp = ActivationOpts { tensor_parallel: t, ..ActivationOpts::default() };
    let m = activation_memory(&gpt3(), b, s, &tp).unwrap();
    assert_eq!(m.layer.total() as f64, korthikanti_tensor_parallel(s, b, h, a, t));
    let sp = ActivationOpts { sequence_parallel: true, ..tp };
    let m = activation_memory(&gpt3(), b, s, &sp).unwrap();
    assert_eq!(m.layer.total() as f64, korthikanti_sequence_parallel(s, b, h, a, t));
    let sel = ActivationOpts { recompute: Recompute::Selective, ..sp };
    let m = activation_memory(&gpt3(), b, s, &sel).unwrap();
    assert_eq!(m.layer.total() as f64, korthikanti_selective(s, b, h, t, true));
    let sel_tp = ActivationOpts { recompute: Recompute::Selective, ..tp };
    let m = activation_memory(&gpt3(), b, s, &sel_tp).unwrap();
    assert_eq!(m.layer.total() as f64, korthikanti_selective(s, b, h, t, false));
}

#[test]
fn full_recompute_keeps_the_layer_input() {
    let (s, b, h) = (2048, 3, 12288);
    let full = ActivationOpts { recompute: Recompute::Full, ..ActivationOpts::default() };
    let m = activation_memory(&gpt3(), b, s, &full).unwrap();
    assert_eq!(m.layer.total(), korthikanti_full_recompute(s, b, h).unwrap());
    // and one layer is rebuilt at a time in the backward pass
    let none = activation_memory(&gpt3(), b, s, &ActivationOpts::default()).unwrap();
    assert_eq!(m.recompute_working, none.layer.total());
    assert!(m.total < none.total / 10);
}

#[test]
fn llama_without_dropout_and_extras() {
    let a = Arch::preset("smollm2-135m").unwrap();
    let o = ActivationOpts { dropout: false, ..ActivationOpts::default() };
    let m = activation_memory(&a, 1, 100, &o).unwrap();
    let (c, q, kv, f, h, s) = (576u64, 576u64, 192u64, 1536u64, 9u64, 100u64);
    let p = 2;
    assert_eq!(m.layer.attention, s * (p * c + 2 * p * q + 2 * p * kv));
    assert_eq!(m.layer.attention_core, s * h * s * p);
    assert_eq!(m.layer.mlp, s * (p * c + 4 * p * f));
    assert_eq!(m.embeddings, 0);
    // final norm and head inputs, fp32 logits
    assert_eq!(m.output, s * (2 * p * c + 4 * 49152));
}

#[test]
fn errors() {
    let g = gpt3();
    let bad_t = ActivationOpts { tensor_parallel: 5, ..ActivationOpts::default() };
    assert!(activation_memory(&g, 1, 16, &bad_t).unwrap_err().to_string().contains("must divide"));
    let sp1 = ActivationOpts { sequence_parallel: true, ..ActivationOpts::default() };
    assert!(activation_memory(&g, 1, 16, &sp1).is_err());
    assert!(activation_memory(&g, 1, 4096, &ActivationOpts::default()).is_err());
}
