//! Perplexity the way llama.cpp's `llama-perplexity` computes it, so the two can be compared on
//! the same text: the token stream is cut into non-overlapping chunks of `ctx` tokens (the tail
//! that does not fill a chunk is dropped); each chunk runs from an empty context (its first
//! token replaced by BOS when the model adds one), and only the second half is scored — the
//! predictions at positions `ctx/2 … ctx−2` of the token that follows — so every scored token
//! sees at least `ctx/2` tokens of context. `PPL = exp(Σ NLL / N)` over all scored tokens
//! (book ch. 7 "perplexity").

use kiln_core::{no_grad, Device, Error, Result, Tensor};
use kiln_models::gpt::Gpt;

/// The result of [`perplexity`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Perplexity {
    /// `exp(nll / scored)`.
    pub ppl: f64,
    /// Summed negative log-likelihood (nats).
    pub nll: f64,
    /// Tokens scored.
    pub scored: usize,
    /// Chunks of `ctx` tokens.
    pub chunks: usize,
}

/// Perplexity of `model` on `tokens` with chunks of `ctx` tokens (see the module docs); `bos`
/// replaces each chunk's first token when given. `on_chunk(i, running_ppl)` reports progress.
pub fn perplexity(
    model: &Gpt,
    tokens: &[u32],
    ctx: usize,
    bos: Option<u32>,
    device: &Device,
    mut on_chunk: impl FnMut(usize, f64),
) -> Result<Perplexity> {
    if ctx < 4 || ctx > model.cfg.n_positions {
        return Err(Error::Invalid {
            op: "perplexity",
            msg: format!("ctx {ctx} must be in 4..={} (the model's context)", model.cfg.n_positions),
        });
    }
    let chunks = tokens.len() / ctx;
    if chunks == 0 {
        return Err(Error::Invalid {
            op: "perplexity",
            msg: format!("{} tokens do not fill one chunk of {ctx}", tokens.len()),
        });
    }
    let first = ctx / 2;
    let v = model.cfg.vocab_size;
    let (mut nll, mut scored) = (0.0f64, 0usize);
    no_grad(|| {
        for c in 0..chunks {
            let mut ids: Vec<i64> = tokens[c * ctx..(c + 1) * ctx].iter().map(|&t| t as i64).collect();
            if let Some(b) = bos {
                ids[0] = b as i64;
            }
            let x = Tensor::from_vec(ids, &[1, ctx], device)?;
            // (1, ctx, V) → rows first..ctx−1 as log-probabilities, in f64 on the host
            let logits = model.forward(&x, None, false, 0)?.narrow(1, first, ctx - 1 - first)?;
            let lp = logits.log_softmax()?.to_vec_f64()?;
            for (i, row) in lp.chunks(v).enumerate() {
                let next = tokens[c * ctx + first + 1 + i] as usize;
                nll -= row.get(next).copied().ok_or(Error::Invalid {
                    op: "perplexity",
                    msg: format!("token {next} is outside the vocabulary of {v}"),
                })?;
                scored += 1;
            }
            on_chunk(c, (nll / scored as f64).exp());
        }
        Ok::<(), Error>(())
    })?;
    Ok(Perplexity { ppl: (nll / scored as f64).exp(), nll, scored, chunks })
}
