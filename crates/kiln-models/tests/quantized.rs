//! Post-training quantization of a Gpt: logits stay close to f32 (Q8_0 closer than Q4_1),
//! the saved file loads back to the same model bit for bit, and bad files are errors.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use kiln_core::{no_grad, Module, Tensor};
use kiln_formats::quant::WeightFormat;
use kiln_models::gpt::{load_quantized, save_quantized, Gpt, GptConfig};

fn fmt(name: &str) -> WeightFormat {
    WeightFormat::from_name(name).unwrap()
}

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
        for ty in ["q8_0", "q4_1", "q4_0"].map(fmt) {
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

/// The per-channel int8 and group-wise int4 formats: every matrix quantized, logits close to
/// f32 (int8 closer than int4, smaller int4 groups closer than larger ones, W8A16 closest),
/// and the file (I8/U8 codes + F32/F16 scales and minima) reproduces the model bit for bit.
#[test]
fn channel_and_group_formats_track_f32_and_round_trip() {
    let dev = kiln_cpu::cpu();
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<i64> = (0..24).map(|i| (i * 7 % 40) as i64).collect();
    for cfg in [GptConfig::gpt2(40, 32, 128, 2, 4), GptConfig::llama(40, 32, 128, 2, 4, 2, 256)] {
        let base = Gpt::new(cfg.clone(), 5, &dev).unwrap();
        let want = logits(&base, &ids);
        let names = ["w8a16", "w8a8", "int4-g32", "int4-g64", "int4-g128"];
        let mut errs = vec![];
        for name in names {
            let mut m = base.clone();
            let q = m.quantize_weights(fmt(name), fmt(name)).unwrap();
            let per_block = if cfg.tie_word_embeddings { 4 } else { 5 };
            assert_eq!(q.len(), 1 + usize::from(!cfg.tie_word_embeddings) + 2 * per_block, "{name}");
            assert!(q.iter().all(|(_, w)| w.weight_format() == fmt(name)));
            let got = logits(&m, &ids);
            errs.push(rel(&got, &want));
            let path = dir.path().join(format!("{name}.safetensors"));
            save_quantized(&m, &q, &path).unwrap();
            let back = load_quantized(cfg.clone(), &path, &dev).unwrap();
            assert_eq!(logits(&back, &ids), got, "{name}: the file reproduces the in-memory model");
            let bytes = std::fs::read(&path).unwrap();
            let cut = dir.path().join("cut.safetensors");
            std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
            assert!(load_quantized(cfg.clone(), &cut, &dev).is_err());
        }
        println!("{:?}: relative logits error {:?} for {names:?}", cfg.mlp, errs);
        assert!(errs[0] < 0.02 && errs[0] <= errs[1], "{errs:?}");
        assert!(errs[1] < errs[2] && errs[2] < errs[4] && errs[4] < 0.4, "{errs:?}");
        // GPTQ writes the same formats (here "4-bit, group size 128"), and they load back
        let calib = vec![Tensor::from_vec(ids.clone(), &[1, 24], &dev).unwrap()];
        let mut g = base.clone();
        let q = g.quantize_gptq(fmt("int4-g128"), fmt("w8a16"), &calib, 0.01).unwrap();
        assert!(q.iter().all(|(n, w)| w.weight_format() == fmt(if n.contains(".h.") { "int4-g128" } else { "w8a16" })));
        let path = dir.path().join("gptq-int4.safetensors");
        save_quantized(&g, &q, &path).unwrap();
        assert_eq!(logits(&load_quantized(cfg.clone(), &path, &dev).unwrap(), &ids), logits(&g, &ids));
    }
}

/// Mean squared difference.
fn mse(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>() / a.len() as f64
}

/// GPTQ (sequential, calibrated on one set of token windows) moves the logits of *other*
/// windows less than rounding to nearest does, at the same format and the same embedding type,
/// and writes the same kind of file.
#[test]
fn gptq_tracks_f32_better_than_round_to_nearest() {
    let dev = kiln_cpu::cpu();
    let dir = tempfile::tempdir().unwrap();
    let mut s = 7u64;
    let mut tokens = |n: usize| -> Vec<i64> {
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 33) % 40) as i64
            })
            .collect()
    };
    let calib: Vec<Tensor> = (0..4).map(|_| Tensor::from_vec(tokens(8 * 32), &[8, 32], &dev).unwrap()).collect();
    let held_out = tokens(32);
    for cfg in [GptConfig::gpt2(40, 32, 64, 2, 4), GptConfig::llama(40, 32, 64, 2, 4, 2, 128)] {
        let base = Gpt::new(cfg.clone(), 11, &dev).unwrap();
        let want = logits(&base, &held_out);
        for ty in ["q4_0", "q4_1", "int4-g32"].map(fmt) {
            let mut rtn = base.clone();
            let n_rtn = rtn.quantize_weights(ty, fmt("q8_0")).unwrap().len();
            let mut gptq = base.clone();
            let q = gptq.quantize_gptq(ty, fmt("q8_0"), &calib, 0.01).unwrap();
            assert_eq!(q.len(), n_rtn, "{ty:?}: the same matrices are quantized");
            let (e_rtn, e_gptq) = (mse(&logits(&rtn, &held_out), &want), mse(&logits(&gptq, &held_out), &want));
            println!("{:?} {ty:?}: logits MSE round-to-nearest {e_rtn:.3e}, GPTQ {e_gptq:.3e}", cfg.mlp);
            assert!(e_gptq < 0.8 * e_rtn, "{ty:?}: GPTQ {e_gptq:e} vs RTN {e_rtn:e}");
            let path = dir.path().join("gptq.safetensors");
            save_quantized(&gptq, &q, &path).unwrap();
            let back = load_quantized(cfg.clone(), &path, &dev).unwrap();
            assert_eq!(logits(&back, &held_out), logits(&gptq, &held_out));
            // An already quantized model has nothing left to quantize (and no f32 weight to read).
            assert!(gptq.clone().quantize_gptq(ty, fmt("q8_0"), &calib, 0.01).unwrap().is_empty());
        }
        assert!(base.clone().quantize_gptq(fmt("q4_0"), fmt("q8_0"), &[], 0.01).is_err());
    }
}
