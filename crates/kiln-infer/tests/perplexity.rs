//! `perplexity` follows llama-perplexity's chunking: non-overlapping chunks, second half scored,
//! BOS substituted — checked against a direct computation from full-sequence logits.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use kiln_core::Tensor;
use kiln_infer::perplexity;
use kiln_models::gpt::{Gpt, GptConfig};

#[test]
fn matches_a_direct_computation() {
    let dev = kiln_cpu::cpu();
    let model = Gpt::new(GptConfig::llama(50, 16, 32, 2, 4, 2, 64), 7, &dev).unwrap();
    let tokens: Vec<u32> = (0..45u32).map(|i| (i * 17 + 3) % 50).collect(); // 5 chunks of 8, tail of 5 dropped
    for bos in [None, Some(1u32)] {
        let got = perplexity(&model, &tokens, 8, bos, &dev, |_, _| {}).unwrap();
        assert_eq!((got.chunks, got.scored), (5, 5 * 3));
        let mut nll = 0.0;
        for c in 0..5 {
            let mut ids: Vec<i64> = tokens[c * 8..c * 8 + 8].iter().map(|&t| t as i64).collect();
            if let Some(b) = bos {
                ids[0] = b as i64;
            }
            let logits = model.forward(&Tensor::from_vec(ids, &[1, 8], &dev).unwrap(), None, false, 0).unwrap();
            let l = logits.to_vec_f64().unwrap();
            for pos in 4..7 {
                let row = &l[pos * 50..pos * 50 + 50];
                let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let lse = m + row.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
                nll += lse - row[tokens[c * 8 + pos + 1] as usize];
            }
        }
        assert!((got.nll - nll).abs() < 1e-4 * nll, "{} vs {nll}", got.nll);
        assert!((got.ppl - (nll / 15.0).exp()).abs() < 1e-4 * got.ppl);
    }
    assert!(perplexity(&model, &tokens[..7], 8, None, &dev, |_, _| {}).is_err(), "less than one chunk");
    assert!(perplexity(&model, &tokens, 32, None, &dev, |_, _| {}).is_err(), "ctx beyond the model's");
}
