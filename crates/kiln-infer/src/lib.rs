//! # kiln-infer
//!
//! Decoding (seed 003 "greedy/temperature/top-k/top-p"): a [`Sampler`] turning logits into a
//! token, and [`generate`], which prefills a prompt into the model's KV caches and then decodes
//! one token at a time, each step attending over the cache (O(T) per token). Beside it:
//! [`beam_search`] (GNMT length penalty), [`generate_speculative`] (a draft model and the
//! min(1, p/q) acceptance rule), [`generate_constrained`] (a regex, or a JSON Schema via [`schema_to_regex`], as a token mask), and
//! [`perplexity`] (llama-perplexity's chunking), and [`BatchEngine`]: continuous batching of many
//! sequences over a paged KV cache, as a server runs them.

mod batching;
mod beam;
mod constrained;
mod json_schema;
mod logprobs;
mod perplexity;
mod speculative;

pub use batching::{BatchEngine, BatchRequest, EngineStats, FinishReason, SchedulerConfig, StepEvent};
pub use beam::{beam_search, BeamSearch, Hypothesis};
pub use constrained::{generate_constrained, RegexConstraint};
pub use json_schema::schema_to_regex;
pub use kiln_nn::attention::{kv_row_bytes, SeqId};
pub use logprobs::{token_logprobs, TokenLogprobs};
pub use perplexity::{perplexity, Perplexity};
pub use speculative::{accept_or_resample, generate_speculative, SpecStats};

use kiln_core::{no_grad, Device, Error, Result, Tensor};
use kiln_models::gpt::Gpt;

/// Sampling settings (seed 003/004 "decoding strategies"). `temperature = 0` is greedy decoding.
///
/// Order of the steps, as HF's logits processors apply them: penalties on the logits
/// (repetition over the whole context, presence/frequency over the generated tokens), then
/// argmax (greedy) or softmax at `temperature`, top-k, min-p, top-p, and a draw.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampler {
    /// Logits are divided by this; 0 picks the argmax.
    pub temperature: f64,
    /// Keep only the `k` most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches `p` (1 = all).
    pub top_p: f64,
    /// Drop tokens less likely than `min_p` × the most likely one's probability (0 = off;
    /// Nguyen et al. 2024, as in HF and llama.cpp).
    pub min_p: f64,
    /// CTRL / HF repetition penalty over every token of the context (prompt and generated):
    /// a positive logit is divided by it, a negative one multiplied (1 = off; > 1 discourages).
    pub repetition_penalty: f64,
    /// OpenAI's presence penalty: `logit −= presence_penalty` for each token generated at
    /// least once (0 = off; −2…2).
    pub presence_penalty: f64,
    /// OpenAI's frequency penalty: `logit −= frequency_penalty · count` of each generated token
    /// (0 = off; −2…2).
    pub frequency_penalty: f64,
    /// Seed of the sampling RNG (token `i` uses draw `i`, so runs are reproducible).
    pub seed: u64,
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: 0,
        }
    }
}

fn uniform(seed: u64, i: u64) -> f64 {
    let mut z = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

/// The id at which the cumulative weight first exceeds `u` (in `[0, total)`), so an id of
/// weight 0 is never drawn (not even at `u = 0`); the last possible one if rounding leaves `u`
/// above the total. Weights need not sum to 1.
pub(crate) fn draw(weights: impl Iterator<Item = (usize, f64)>, u: f64) -> u32 {
    let mut u = u;
    let mut last = 0;
    for (i, p) in weights {
        if p > 0.0 {
            last = i;
            u -= p;
            if u < 0.0 {
                return i as u32;
            }
        }
    }
    last as u32
}

impl Sampler {
    /// Checks every setting's range.
    pub fn validate(&self) -> Result<()> {
        let ok = self.temperature >= 0.0
            && self.top_p > 0.0
            && self.top_p <= 1.0
            && (0.0..=1.0).contains(&self.min_p)
            && self.repetition_penalty > 0.0
            && self.repetition_penalty.is_finite()
            && self.presence_penalty.is_finite()
            && self.frequency_penalty.is_finite();
        if ok {
            Ok(())
        } else {
            Err(Error::Invalid { op: "Sampler", msg: format!("bad settings {self:?}") })
        }
    }

    /// Whether any penalty is on (they need the context).
    pub fn has_penalties(&self) -> bool {
        self.repetition_penalty != 1.0 || self.presence_penalty != 0.0 || self.frequency_penalty != 0.0
    }

    /// Picks a token from one row of logits; `draw` indexes the RNG stream. No penalties (they
    /// need the context: [`Sampler::sample_in_context`]).
    pub fn sample(&self, logits: &[f32], draw: u64) -> Result<u32> {
        let (idx, probs) = self.candidates(logits)?;
        Ok(crate::draw(idx.into_iter().zip(probs), uniform(self.seed, draw)))
    }

    /// The distribution [`Sampler::sample`] draws from, dense over the vocabulary: softmax at
    /// the temperature, restricted by top-k, min-p and top-p, renormalised (one-hot at the
    /// argmax when greedy). Speculative decoding compares the draft's and the target's.
    pub fn probs(&self, logits: &[f32]) -> Result<Vec<f64>> {
        let (idx, p) = self.candidates(logits)?;
        let mut dense = vec![0.0; logits.len()];
        idx.iter().zip(&p).for_each(|(&i, &p)| dense[i] = p);
        Ok(dense)
    }

    /// The tokens that can be drawn and their probabilities (summing to 1).
    fn candidates(&self, logits: &[f32]) -> Result<(Vec<usize>, Vec<f64>)> {
        if logits.is_empty() {
            return Err(Error::Invalid { op: "Sampler::sample", msg: "empty logits".into() });
        }
        self.validate()?;
        let argmax = logits.iter().enumerate().fold(0, |b, (i, &v)| if v > logits[b] { i } else { b });
        if self.temperature == 0.0 {
            return Ok((vec![argmax], vec![1.0]));
        }
        // Candidates: the top-k (selected, then sorted) or, for top-p, all sorted by logit; with
        // neither, all tokens in id order — sorting a 50k vocabulary costs milliseconds a token.
        let by_logit = |a: &usize, b: &usize| logits[*b].total_cmp(&logits[*a]);
        let mut idx: Vec<usize> = (0..logits.len()).collect();
        if self.top_k > 0 && self.top_k < idx.len() {
            idx.select_nth_unstable_by(self.top_k - 1, by_logit);
            idx.truncate(self.top_k);
        }
        let sorted = self.top_k > 0 || self.top_p < 1.0;
        if sorted {
            idx.sort_by(by_logit);
        }
        let m = logits[argmax] as f64;
        let mut probs: Vec<f64> = idx.iter().map(|&i| ((logits[i] as f64 - m) / self.temperature).exp()).collect();
        let z: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= z);
        if self.min_p > 0.0 {
            // keep the tokens at least min_p times as likely as the most likely one (p = 1/z)
            let floor = self.min_p / z;
            let kept: Vec<(usize, f64)> =
                idx.iter().zip(&probs).filter(|(_, &p)| p >= floor).map(|(&i, &p)| (i, p)).collect();
            (idx, probs) = kept.into_iter().unzip();
        }
        let mut keep = probs.len();
        if self.top_p < 1.0 {
            let mut acc = 0.0;
            for (n, p) in probs.iter().enumerate() {
                acc += p;
                if acc >= self.top_p {
                    keep = n + 1;
                    break;
                }
            }
        }
        idx.truncate(keep);
        probs.truncate(keep);
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        Ok((idx, probs))
    }

    /// [`Sampler::sample`] after the penalties: `context` is every token so far (prompt then
    /// generated), the generated ones from index `generated_from`.
    pub fn sample_in_context(&self, logits: &[f32], context: &[u32], generated_from: usize, draw: u64) -> Result<u32> {
        if !self.has_penalties() {
            return self.sample(logits, draw);
        }
        self.validate()?;
        let mut l = logits.to_vec();
        let mut seen = std::collections::HashMap::<u32, (bool, u32)>::new(); // (in context, generated count)
        for (i, &t) in context.iter().enumerate() {
            let e = seen.entry(t).or_default();
            e.0 = true;
            if i >= generated_from {
                e.1 += 1;
            }
        }
        for (&t, &(_, count)) in &seen {
            let Some(x) = l.get_mut(t as usize) else { continue };
            if self.repetition_penalty != 1.0 {
                let p = self.repetition_penalty as f32;
                *x = if *x > 0.0 { *x / p } else { *x * p };
            }
            if count > 0 {
                *x -= (self.presence_penalty + self.frequency_penalty * count as f64) as f32;
            }
        }
        self.sample(&l, draw)
    }
}

/// Generates `max_new` tokens after `prompt` (non-empty), calling `on_token` with each new
/// token as soon as it is sampled (for streaming). When the context fills up, the caches are
/// rebuilt from the most recent half-context of tokens (a sliding window re-prefilled every
/// ctx/2 tokens, so the amortised cost per token stays O(ctx)).
pub fn generate(
    model: &Gpt,
    prompt: &[u32],
    max_new: usize,
    sampler: &Sampler,
    device: &Device,
    on_token: impl FnMut(u32) -> Result<()>,
) -> Result<Vec<u32>> {
    generate_until(model, prompt, max_new, sampler, &[], device, on_token)
}

/// [`generate`] that also stops after sampling any token of `stop` (an end-of-sequence or
/// end-of-turn token; it is passed to `on_token` and returned, like HF's `generate`). The KV
/// caches hold at most `prompt + max_new` positions (capped by the model's context).
pub fn generate_until(
    model: &Gpt,
    prompt: &[u32],
    max_new: usize,
    sampler: &Sampler,
    stop: &[u32],
    device: &Device,
    mut on_token: impl FnMut(u32) -> Result<()>,
) -> Result<Vec<u32>> {
    if prompt.is_empty() {
        return Err(Error::Invalid { op: "generate", msg: "the prompt must contain at least one token".into() });
    }
    let ctx = model.cfg.n_positions;
    let window = (ctx / 2).max(1);
    // A sliding-window model's rolling caches take the prompt in pieces.
    fn forward_last_chunked(model: &Gpt, input: &Tensor, caches: &mut [kiln_nn::attention::KvCache]) -> Result<Tensor> {
        let t = input.dims()[1];
        match model.cfg.sliding_window {
            Some(_) if t > kiln_models::gpt::PREFILL_CHUNK => {
                let mut last = None;
                for s in (0..t).step_by(kiln_models::gpt::PREFILL_CHUNK) {
                    let n = kiln_models::gpt::PREFILL_CHUNK.min(t - s);
                    last = Some(model.forward_last(&input.narrow(1, s, n)?, Some(&mut *caches))?);
                }
                last.ok_or(Error::Invalid { op: "generate", msg: "empty input".into() })
            }
            _ => model.forward_last(input, Some(caches)),
        }
    }
    let to_tensor = |ids: &[u32]| Tensor::from_vec(ids.iter().map(|&t| t as i64).collect(), &[1, ids.len()], device);
    no_grad(|| {
        let mut slots = ctx.min(prompt.len() + max_new).max(1);
        if let Some(w) = model.cfg.sliding_window {
            slots = slots.min(w - 1 + kiln_models::gpt::PREFILL_CHUNK); // a rolling buffer, fed in chunks
        }
        let mut caches = model.new_caches(1, slots, device)?;
        let mut history: Vec<u32> = prompt.to_vec();
        let start = history.len().saturating_sub(ctx);
        let mut input = to_tensor(&history[start..])?;
        let mut out = Vec::with_capacity(max_new);
        for i in 0..max_new {
            if caches[0].position() + input.dims()[1] > ctx {
                caches.iter_mut().for_each(|c| c.reset());
                input = to_tensor(&history[history.len() - window.min(history.len())..])?;
            }
            let last = forward_last_chunked(model, &input, &mut caches)?.to_vec::<f32>()?; // (1,1,V)
            let tok = sampler.sample_in_context(&last, &history, prompt.len(), i as u64)?;
            on_token(tok)?;
            out.push(tok);
            if stop.contains(&tok) {
                break;
            }
            history.push(tok);
            input = to_tensor(&[tok])?;
        }
        Ok(out)
    })
}
