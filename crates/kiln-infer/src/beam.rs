//! Beam search (seed 003/004 "decoding strategies"; book ch. 12): keep the `n` most probable
//! partial continuations, extend each by every token, keep the best `n` again. Finished
//! hypotheses (ending in a stop token, or cut at `max_new`) are ranked by the GNMT length
//! penalty (Wu et al. 2016): `score = log P(Y) / lp(Y)`, `lp(Y) = ((5 + |Y|) / 6)^α`, where
//! |Y| counts the generated tokens; α = 0 ranks by raw log-probability, α > 0 favours longer
//! outputs.
//!
//! As in HF's `generate(num_beams=n)`: per step the 2n best (beam, token) extensions are
//! considered in order; a stop-token extension among the first n becomes a finished hypothesis,
//! the others continue until n beams are filled. With `early_stopping` the search ends as soon
//! as n hypotheses are finished; without it, when no running beam can still beat the worst
//! kept hypothesis (judged at the current length, HF's heuristic) or at `max_new`.
//!
//! Beams are the batch dimension: one forward pass per step for all of them, and the KV caches'
//! rows are gathered to follow the surviving beams ([`KvCache::select_rows`]).

use kiln_core::{no_grad, Device, Error, Result, Tensor};
use kiln_models::gpt::Gpt;
use kiln_nn::attention::KvCache;

/// Beam-search settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BeamSearch {
    /// Beams n ≥ 1 (n = 1 is greedy decoding).
    pub beams: usize,
    /// GNMT's α (0 = rank by log-probability).
    pub length_penalty: f64,
    /// Stop once `beams` hypotheses have finished.
    pub early_stopping: bool,
    /// Tokens to generate at most.
    pub max_new: usize,
}

/// A finished continuation.
#[derive(Clone, Debug, PartialEq)]
pub struct Hypothesis {
    /// Generated tokens (the stop token included when it ended the hypothesis).
    pub tokens: Vec<u32>,
    /// `log P(tokens | prompt)`.
    pub logprob: f64,
    /// `logprob / lp(|tokens|)`.
    pub score: f64,
}

impl BeamSearch {
    /// GNMT's length penalty `((5 + len) / 6)^α`.
    pub fn penalty(&self, len: usize) -> f64 {
        ((5.0 + len as f64) / 6.0).powf(self.length_penalty)
    }
}

/// Runs beam search after `prompt`; returns up to `beams` hypotheses, best score first.
pub fn beam_search(
    model: &Gpt,
    prompt: &[u32],
    cfg: &BeamSearch,
    stop: &[u32],
    device: &Device,
) -> Result<Vec<Hypothesis>> {
    let bad = |msg: String| Error::Invalid { op: "beam_search", msg };
    let n = cfg.beams;
    if n == 0 || prompt.is_empty() || !cfg.length_penalty.is_finite() {
        return Err(bad(format!("needs ≥ 1 beam, a non-empty prompt and a finite length penalty ({cfg:?})")));
    }
    let need = prompt.len() + cfg.max_new;
    if need > model.cfg.n_positions {
        return Err(bad(format!(
            "prompt ({}) + max_new ({}) = {need} exceeds the context ({})",
            prompt.len(),
            cfg.max_new,
            model.cfg.n_positions
        )));
    }
    let ids = |t: &[u32], rows: usize| {
        Tensor::from_vec(t.iter().map(|&x| x as i64).collect(), &[rows, t.len() / rows.max(1)], device)
    };
    no_grad(|| {
        let mut caches: Vec<KvCache> = model.new_caches(1, need.max(1), device)?;
        // log-probabilities (rows, V) of each beam's next token
        let mut logp = model.forward_last(&ids(prompt, 1)?, Some(&mut caches))?.log_softmax()?.to_vec_f64()?;
        let v = model.cfg.vocab_size;
        // running beams: (generated tokens, log-probability)
        let mut beams: Vec<(Vec<u32>, f64)> = vec![(Vec::new(), 0.0)];
        let mut done: Vec<Hypothesis> = Vec::new();
        let finish = |done: &mut Vec<Hypothesis>, tokens: Vec<u32>, logprob: f64| {
            let score = logprob / cfg.penalty(tokens.len());
            done.push(Hypothesis { tokens, logprob, score });
            done.sort_by(|a, b| b.score.total_cmp(&a.score));
            done.truncate(n);
        };
        for step in 0..cfg.max_new {
            // the 2n best extensions of every beam, then the 2n best overall
            let mut cands: Vec<(f64, usize, u32)> = Vec::with_capacity(beams.len() * 2 * n);
            for (b, lp) in logp.chunks(v).enumerate() {
                let mut order: Vec<usize> = (0..v).collect();
                let top = (2 * n).min(v);
                order.select_nth_unstable_by(top - 1, |&x, &y| lp[y].total_cmp(&lp[x]));
                cands.extend(order[..top].iter().map(|&t| (beams[b].1 + lp[t], b, t as u32)));
            }
            cands.sort_by(|a, b| b.0.total_cmp(&a.0));
            cands.truncate(2 * n);
            let mut next: Vec<(Vec<u32>, f64)> = Vec::with_capacity(n);
            let mut rows: Vec<usize> = Vec::with_capacity(n);
            for (rank, &(lp, b, t)) in cands.iter().enumerate() {
                let mut tokens = beams[b].0.clone();
                tokens.push(t);
                if stop.contains(&t) {
                    if rank < n {
                        finish(&mut done, tokens, lp);
                    }
                } else {
                    next.push((tokens, lp));
                    rows.push(b);
                }
                if next.len() == n {
                    break;
                }
            }
            let full = done.len() >= n;
            let hopeless = full && {
                let best_running = next.iter().map(|b| b.1).fold(f64::NEG_INFINITY, f64::max);
                let worst_kept = done.last().map_or(f64::NEG_INFINITY, |h| h.score);
                best_running / cfg.penalty(step + 1) <= worst_kept
            };
            if next.is_empty() || (full && (cfg.early_stopping || hopeless)) {
                beams = Vec::new();
                break;
            }
            if step + 1 == cfg.max_new {
                beams = next;
                break;
            }
            // follow the survivors: gather their cache rows, feed their last tokens
            caches.iter_mut().try_for_each(|c| c.select_rows(&rows))?;
            let last: Vec<u32> = next.iter().map(|b| b.0[b.0.len() - 1]).collect();
            logp = model.forward_last(&ids(&last, last.len())?, Some(&mut caches))?.log_softmax()?.to_vec_f64()?;
            beams = next;
        }
        // beams cut at max_new compete with the finished ones
        for (tokens, lp) in beams {
            finish(&mut done, tokens, lp);
        }
        Ok(done)
    })
}
