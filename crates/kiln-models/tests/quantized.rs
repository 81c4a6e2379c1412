//! Post-training quantization of a Gpt: logits stay close to f32 (Q8_0 closer than Q4_1),
//! the saved file loads back to the same model bit for bit, and bad files are errors.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use kiln_core::{no_grad, Module, Tensor};
use kiln_formats::GgmlType;
use kiln_models::gpt::{load_quantized, save_quantized, Gpt, GptConfig};

fn logits(m: &Gpt, ids: &[i64]) -> Vec<f32> {
    let dev = kiln_cpu::cpu();
    let x = Tensor::from_vec(ids.to_vec(), &[1, ids.len()], &dev).unwrap();
    no_grad(|| m.forward(&x, None, false, 0)).unwrap().to_vec::<f32>().unwrap()
}

/// Max |a − b| relative to max |b|.
fn rel(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

#[test]
fn quantized_models_track_f32_and_round_trip_through_the_file() {
    let dev = kiln_cpu::cpu();
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<i64> = (0..24).map(|i| (i * 7 % 40) as i64).collect();
    for cfg in [GptConfig::gpt2(40, 32, 64, 2, 4), GptConfig::llama(40, 32, 64, 2, 4, 2, 128)] {
        let base = Gpt::new(cfg.clone(), 5, &dev).unwrap();
        let want = logits(&base, &ids);
        let mut errs = vec![];
        for ty in [GgmlType::Q8_0, GgmlType::Q4_1, GgmlType::Q4_0] {
            let mut m = base.clone();
            let q = m.quantize_weights(ty, ty).unwrap();
            // every matrix: wte (+ untied head) and 4 (GPT-2) or 5 (LLaMA) per block
            let per_block = if cfg.tie_word_embeddings { 4 } else { 5 };
            assert_eq!(q.len(), 1 + usize::from(!cfg.tie_word_embeddings) + 2 * per_block, "{ty:?}");
            assert!(m.named_parameters().iter().all(|(n, _)| !n.ends_with("c_attn.weight")));
            let got = logits(&m, &ids);
            errs.push(rel(&got, &want));
            let path = dir.path().join(format!("{}.safetensors", ty.name()));
            save_quantized(&m, &q, &path).unwrap();
            let back = load_quantized(cfg.clone(), &path, &dev).unwrap();
            assert_eq!(logits(&back, &ids), got, "{ty:?}: the file reproduces the in-memory model");
            // a different config, a truncated file and a plain safetensors file are errors
            let other = GptConfig { n_layer: 1, ..cfg.clone() };
            assert!(load_quantized(other, &path, &dev).is_err());
            let bytes = std::fs::read(&path).unwrap();
            let cut = dir.path().join("cut.safetensors");
            std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
            assert!(load_quantized(cfg.clone(), &cut, &dev).is_err());
        }
        // 8-bit weights are closer than 4-bit ones (random N(0, 0.02²) weights are the hard case for
        // 4 bits: no outliers to spend the range on, so every weight carries ~step/√12 of noise)
        assert!(errs[0] < errs[1] && errs[0] < errs[2], "{errs:?}");
        assert!(errs[0] < 0.02 && errs[1] < 0.3 && errs[2] < 0.3, "{errs:?}");
    }
    let plain = dir.path().join("plain.safetensors");
    let m = Gpt::new(GptConfig::gpt2(40, 32, 64, 2, 4), 1, &dev).unwrap();
    kiln_core::safetensors::save(&plain, &m.named_parameters(), None).unwrap();
    let err = load_quantized(GptConfig::gpt2(40, 32, 64, 2, 4), &plain, &dev).unwrap_err().to_string();
    assert!(err.contains("not a kiln quantized model"), "{err}");
}
