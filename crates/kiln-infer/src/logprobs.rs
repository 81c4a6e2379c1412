//! Log-probabilities of sampled tokens (what the OpenAI API returns as `logprobs`): the model's
//! `log softmax(logits)` at the chosen token and at the `k` most likely ones. They are the raw
//! model's, before temperature, penalties, truncation or constraints — vLLM's default — so they
//! score the text under the model whatever the sampling settings.

/// A sampled token's log-probability and the `k` most likely alternatives at its position.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprobs {
    /// The sampled token.
    pub token: u32,
    /// `log p(token)`.
    pub logprob: f32,
    /// The most likely tokens with their log-probabilities, most likely first.
    pub top: Vec<(u32, f32)>,
}

/// `log softmax(logits)` at `token`, and the `k` largest entries (ties: lower id first).
/// The normaliser `log Σ exp` is accumulated in f64 around the maximum.
pub fn token_logprobs(logits: &[f32], token: u32, k: usize) -> TokenLogprobs {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let lse = max as f64 + logits.iter().map(|&x| ((x - max) as f64).exp()).sum::<f64>().ln();
    let lp = |t: usize| (logits[t] as f64 - lse) as f32;
    let k = k.min(logits.len());
    let mut order: Vec<usize> = (0..logits.len()).collect();
    let by_logit = |a: &usize, b: &usize| logits[*b].total_cmp(&logits[*a]).then(a.cmp(b));
    if k > 0 && k < order.len() {
        order.select_nth_unstable_by(k - 1, by_logit);
    }
    order.truncate(k);
    order.sort_by(by_logit);
    TokenLogprobs {
        token,
        logprob: logits.get(token as usize).map_or(f32::NEG_INFINITY, |_| lp(token as usize)),
        top: order.into_iter().map(|t| (t as u32, lp(t))).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_and_top_k() {
        let logits = [1.0f32, 3.0, 2.0, 3.0, -1.0];
        let z: f64 = logits.iter().map(|&x| (x as f64).exp()).sum();
        let t = token_logprobs(&logits, 2, 3);
        assert!((t.logprob as f64 - (2.0 - z.ln())).abs() < 1e-6);
        let ids: Vec<u32> = t.top.iter().map(|p| p.0).collect();
        assert_eq!(ids, vec![1, 3, 2]);
        assert!((t.top[0].1 as f64 - (3.0 - z.ln())).abs() < 1e-6);
        assert!(token_logprobs(&logits, 0, 0).top.is_empty());
        assert_eq!(token_logprobs(&logits, 0, 99).top.len(), 5);
        // probabilities sum to one
        let all = token_logprobs(&logits, 0, 5);
        assert!((all.top.iter().map(|p| (p.1 as f64).exp()).sum::<f64>() - 1.0).abs() < 1e-6);
    }
}
