//! Speculative decoding (Leviathan et al. 2023, Chen et al. 2023; seeds 003/004 "speculative
//! decoding"): a small draft model proposes `k` tokens one at a time, the target model scores
//! all of them in one forward pass of k + 1 positions, and each drafted token `x` is kept with
//! probability `min(1, p(x)/q(x))` (p the target's distribution, q the draft's); at the first
//! rejection the token is redrawn from `norm(max(0, p − q))` and the round ends. When all k are
//! kept, one more token comes free from the target's last position.
//!
//! The rule makes every emitted token distributed exactly as the target's own sampling would
//! give (the tests check it on a small vocabulary), so the draft changes only the speed: a
//! round costs k draft steps and one target pass, and emits between 1 and k + 1 tokens.
//! Greedy decoding (temperature 0) is the special case of one-hot p and q: a drafted token is
//! kept iff it is the target's argmax, so the output equals the target's greedy output.

use crate::{draw, uniform, Sampler};
use kiln_core::{no_grad, Device, Error, Result, Tensor};
use kiln_models::gpt::Gpt;
use kiln_nn::attention::KvCache;

/// Counts of a speculative generation.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SpecStats {
    /// Tokens the draft proposed.
    pub drafted: usize,
    /// Drafted tokens the target kept.
    pub accepted: usize,
    /// Target forward passes after the prompt (rounds).
    pub target_passes: usize,
}

impl SpecStats {
    /// Kept drafted tokens / proposed ones.
    pub fn acceptance_rate(&self) -> f64 {
        if self.drafted == 0 {
            0.0
        } else {
            self.accepted as f64 / self.drafted as f64
        }
    }
}

/// The acceptance rule for one drafted token `x ~ q`: returns `(x, true)` when kept (with
/// probability `min(1, p(x)/q(x))`, decided by `u_accept` ∈ [0, 1)), else `(y, false)` with `y`
/// drawn from `norm(max(0, p − q))` by `u_resample`.
pub fn accept_or_resample(p: &[f64], q: &[f64], x: u32, u_accept: f64, u_resample: f64) -> (u32, bool) {
    let xi = x as usize;
    let (px, qx) = (p.get(xi).copied().unwrap_or(0.0), q.get(xi).copied().unwrap_or(0.0));
    if qx > 0.0 && u_accept < (px / qx).min(1.0) {
        return (x, true);
    }
    let residual: Vec<f64> = p.iter().zip(q).map(|(&a, &b)| (a - b).max(0.0)).collect();
    let total: f64 = residual.iter().sum();
    if total <= 0.0 {
        // p == q (up to rounding): a rejection cannot happen in exact arithmetic; draw from p
        return (draw_dense(p, u_resample), false);
    }
    (draw_dense(&residual, u_resample), false)
}

/// A draw from the (unnormalised) weights `w` by `u` ∈ [0, 1).
fn draw_dense(w: &[f64], u: f64) -> u32 {
    let total: f64 = w.iter().sum();
    draw(w.iter().copied().enumerate(), u * total)
}

/// Logits rows (T, V) of the positions of `tokens` (fed after the cache's contents).
fn step(model: &Gpt, tokens: &[u32], cache: &mut [KvCache], device: &Device) -> Result<Vec<Vec<f32>>> {
    let ids = Tensor::from_vec(tokens.iter().map(|&t| t as i64).collect(), &[1, tokens.len()], device)?;
    let logits = model.forward(&ids, Some(cache), false, 0)?; // (1,T,V)
    let v = logits.dims()[2];
    Ok(logits.to_vec::<f32>()?.chunks(v).map(|r| r.to_vec()).collect())
}

fn truncate(caches: &mut [KvCache], len: usize) -> Result<()> {
    caches.iter_mut().try_for_each(|c| c.truncate(len))
}

/// Generates up to `max_new` tokens after `prompt` from `target`, with `draft` proposing
/// `k ≥ 1` tokens per round; both sample with `sampler` (its penalties are not supported here).
/// Stops after any token of `stop`. `on_token` sees each token as it is accepted. The two
/// models must share the vocabulary, and `prompt + max_new + k + 1` must fit both contexts.
#[allow(clippy::too_many_arguments)]
pub fn generate_speculative(
    target: &Gpt,
    draft: &Gpt,
    prompt: &[u32],
    max_new: usize,
    k: usize,
    sampler: &Sampler,
    stop: &[u32],
    device: &Device,
    mut on_token: impl FnMut(u32) -> Result<()>,
) -> Result<(Vec<u32>, SpecStats)> {
    let bad = |msg: String| Error::Invalid { op: "generate_speculative", msg };
    sampler.validate()?;
    if prompt.is_empty() {
        return Err(bad("the prompt must contain at least one token".into()));
    }
    if k == 0 {
        return Err(bad("the draft must propose at least one token per round (k ≥ 1)".into()));
    }
    if sampler.has_penalties() {
        return Err(bad("repetition/presence/frequency penalties are not supported with a draft model".into()));
    }
    if target.cfg.vocab_size != draft.cfg.vocab_size {
        return Err(bad(format!(
            "the draft's vocabulary ({}) differs from the target's ({})",
            draft.cfg.vocab_size, target.cfg.vocab_size
        )));
    }
    let need = prompt.len() + max_new + k + 1;
    let ctx = target.cfg.n_positions.min(draft.cfg.n_positions);
    if need > ctx {
        return Err(bad(format!(
            "prompt ({}) + max_new ({max_new}) + k + 1 = {need} exceeds the context ({ctx})",
            prompt.len()
        )));
    }
    no_grad(|| {
        let mut tc = target.new_caches(1, need, device)?;
        let mut dc = draft.new_caches(1, need, device)?;
        // Invariant at the top of a round: both caches hold every token but `last`.
        let (head, last0) = (&prompt[..prompt.len() - 1], prompt[prompt.len() - 1]);
        if !head.is_empty() {
            step(target, head, &mut tc, device)?;
            step(draft, head, &mut dc, device)?;
        }
        let mut last = last0;
        let (mut out, mut stats, mut draws) = (Vec::with_capacity(max_new), SpecStats::default(), 0u64);
        let mut next_u = || {
            draws += 1;
            uniform(sampler.seed, draws)
        };
        'rounds: while out.len() < max_new {
            let base = tc[0].position();
            // 1. draft k tokens: q_i and x_i ~ q_i
            let kr = k.min(max_new - out.len());
            let (mut xs, mut qs) = (Vec::with_capacity(kr), Vec::with_capacity(kr));
            let mut feed = last;
            for _ in 0..kr {
                let row = step(draft, &[feed], &mut dc, device)?.pop().ok_or_else(|| bad("no logits".into()))?;
                let q = sampler.probs(&row)?;
                let x = draw_dense(&q, next_u());
                xs.push(x);
                qs.push(q);
                feed = x;
            }
            // 2. the target scores last, x_1..x_k in one pass: p_1..p_{k+1}
            let mut seq = vec![last];
            seq.extend_from_slice(&xs);
            let rows = step(target, &seq, &mut tc, device)?;
            stats.target_passes += 1;
            stats.drafted += kr;
            // 3. accept a prefix, then one corrected or bonus token
            let mut emitted = Vec::with_capacity(kr + 1);
            let mut all_kept = true;
            for (i, (&x, q)) in xs.iter().zip(&qs).enumerate() {
                let p = sampler.probs(&rows[i])?;
                let (y, kept) = accept_or_resample(&p, q, x, next_u(), next_u());
                emitted.push(y);
                if !kept {
                    all_kept = false;
                    break;
                }
                stats.accepted += 1;
            }
            if all_kept {
                let p = sampler.probs(&rows[kr])?;
                emitted.push(draw_dense(&p, next_u()));
            }
            // 4. roll both caches back to base + 1 + (kept drafts): last and the kept x_i
            let keep = base + emitted.len();
            truncate(&mut tc, keep)?;
            if dc[0].position() > keep {
                truncate(&mut dc, keep)?;
            } else if dc[0].position() < keep {
                // all k kept: the draft never saw x_k
                step(draft, &xs[dc[0].position() - base - 1..], &mut dc, device)?;
            }
            for &tok in &emitted {
                on_token(tok)?;
                out.push(tok);
                if stop.contains(&tok) || out.len() == max_new {
                    break 'rounds;
                }
            }
            last = *emitted.last().ok_or_else(|| bad("a round emitted nothing".into()))?;
        }
        Ok((out, stats))
    })
}
