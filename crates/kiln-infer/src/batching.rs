//! Continuous batching (Yu et al. 2022, Orca; vLLM; seed 003/004 "continuous batching"): a
//! [`BatchEngine`] keeps many sequences in flight over one [`PagedKvCache`] and advances all of
//! them with one batched forward pass per step. Sequences join and leave between any two steps
//! (iteration-level scheduling), so a short request never waits for a long one to finish.
//!
//! One step of the [`Scheduler`] policy:
//! 1. **Running sequences first**, oldest first: each gets its next chunk — one token when
//!    decoding, up to the token budget when its prompt is still being prefilled (chunked
//!    prefill). If the pool has no block for it, the youngest running sequence is **preempted
//!    by recompute**: its blocks are freed and it goes back to the head of the queue, to be
//!    prefilled again (prompt plus what it generated) when room returns.
//! 2. **Admission, first come first served**, while sequences, budget and blocks allow; prefix
//!    caching lets a prompt skip its already cached full blocks.
//! 3. One [`Gpt::forward_paged`] over every scheduled token; each sequence whose chunk reached its
//!    last token samples its next token (a sequence's draws are indexed by its own token count,
//!    so batching and preemption never change what it generates).

use crate::{token_logprobs, RegexConstraint, Sampler, TokenLogprobs};
use kiln_core::{DType, Device, Error, Result, Tensor};
use kiln_models::gpt::Gpt;
use kiln_nn::attention::{PagedKvCache, SeqId};
use regex_automata::util::primitives::StateID;
use std::collections::VecDeque;
use std::sync::Arc;

/// Limits of a [`BatchEngine`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SchedulerConfig {
    /// Blocks in the KV pool.
    pub num_blocks: usize,
    /// Tokens per block (16 or 32 in vLLM).
    pub block_size: usize,
    /// Storage dtype of the KV cache (f32, f16, bf16).
    pub kv_dtype: DType,
    /// Reuse cached prompt prefixes.
    pub prefix_caching: bool,
    /// Most sequences in one step's batch.
    pub max_num_seqs: usize,
    /// Most tokens (prefill chunks plus decode tokens) in one step's batch.
    pub max_tokens_per_step: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            num_blocks: 512,
            block_size: 16,
            kv_dtype: DType::F32,
            prefix_caching: true,
            max_num_seqs: 32,
            max_tokens_per_step: 512,
        }
    }
}

/// A generation request for the engine.
#[derive(Clone, Debug)]
pub struct BatchRequest {
    /// Prompt tokens (non-empty, shorter than the context).
    pub prompt: Vec<u32>,
    /// Most tokens to generate.
    pub max_new: usize,
    /// Sampling settings (each sequence has its own).
    pub sampler: Sampler,
    /// Tokens that end the sequence (returned with it).
    pub stop: Vec<u32>,
    /// Constrained decoding: the output must match this regex (a stop token is allowed only
    /// once it does, and the sequence ends when no token can extend it).
    pub constraint: Option<Arc<RegexConstraint>>,
    /// Return each sampled token's log-probability and this many most likely alternatives
    /// ([`TokenLogprobs`], from the raw logits); `None`: none.
    pub logprobs: Option<usize>,
    /// Also score the prompt: the log-probability of every prompt token after the first given
    /// the ones before it, with this many alternatives ([`StepEvent::PromptLogprobs`]). Such a
    /// sequence does not reuse cached prefixes (their logits were never computed).
    pub prompt_logprobs: Option<usize>,
}

/// Why a sequence ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// It sampled a stop token.
    Stop,
    /// `max_new` tokens, or the model's context, reached.
    Length,
}

/// What one step produced for one sequence.
#[derive(Clone, Debug, PartialEq)]
pub enum StepEvent {
    /// Sequence `id` sampled `token`.
    Token {
        /// The sequence.
        id: SeqId,
        /// Its new token.
        token: u32,
        /// Its log-probabilities, when the request asked for them.
        logprobs: Option<TokenLogprobs>,
    },
    /// Log-probabilities of prompt tokens `first..first + logprobs.len()` of sequence `id`
    /// (each given the tokens before it; `first` ≥ 1), in prompt order, chunk by chunk.
    PromptLogprobs {
        /// The sequence.
        id: SeqId,
        /// Index in the prompt of the first token scored.
        first: usize,
        /// One entry per scored token.
        logprobs: Vec<TokenLogprobs>,
    },
    /// Sequence `id` ended (after its last `Token`); its blocks are free.
    Finished {
        /// The sequence.
        id: SeqId,
        /// Why.
        reason: FinishReason,
    },
}

/// A sequence in the engine.
#[derive(Debug)]
struct Sequence {
    id: SeqId,
    req: BatchRequest,
    /// Prompt then generated tokens.
    tokens: Vec<u32>,
    /// Tokens whose keys and values are in the cache.
    computed: usize,
    /// Whether it holds a cache entry now.
    in_cache: bool,
    /// The constraint's state after the generated text.
    dfa: Option<StateID>,
    /// Prompt tokens scored so far (from 1: the first token has no context), when the request
    /// asked for prompt log-probabilities.
    prompt_scored: usize,
}

impl Sequence {
    fn generated(&self) -> usize {
        self.tokens.len() - self.req.prompt.len()
    }
}

/// Counters of an engine's work so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Batched forward passes.
    pub steps: u64,
    /// Prompt (and recomputed) tokens prefilled.
    pub prefill_tokens: u64,
    /// Tokens sampled.
    pub sampled_tokens: u64,
    /// Sequences preempted by recompute.
    pub preemptions: u64,
    /// Prompt tokens served from the prefix cache.
    pub prefix_hit_tokens: u64,
}

/// Continuous batching over a paged KV cache; see the module docs.
pub struct BatchEngine<'m> {
    model: &'m Gpt,
    device: Device,
    cfg: SchedulerConfig,
    cache: PagedKvCache,
    waiting: VecDeque<Sequence>,
    /// Oldest first.
    running: Vec<Sequence>,
    next_id: SeqId,
    stats: EngineStats,
}

fn invalid(msg: String) -> Error {
    Error::Invalid { op: "BatchEngine", msg }
}

impl<'m> BatchEngine<'m> {
    /// An engine for `model` with an empty pool.
    pub fn new(model: &'m Gpt, cfg: SchedulerConfig, device: &Device) -> Result<BatchEngine<'m>> {
        if cfg.max_num_seqs == 0 || cfg.max_tokens_per_step == 0 {
            return Err(invalid(format!("max_num_seqs and max_tokens_per_step must be positive: {cfg:?}")));
        }
        let cache = model.new_paged_cache(cfg.num_blocks, cfg.block_size, cfg.kv_dtype, cfg.prefix_caching, device)?;
        Ok(BatchEngine {
            model,
            device: device.clone(),
            cfg,
            cache,
            waiting: VecDeque::new(),
            running: vec![],
            next_id: 0,
            stats: EngineStats::default(),
        })
    }

    /// Queues a request; returns its id. Errors when it could never run (empty or too long a
    /// prompt, bad sampler, more blocks than the pool holds).
    pub fn add(&mut self, req: BatchRequest) -> Result<SeqId> {
        let ctx = self.model.cfg.n_positions;
        if req.prompt.is_empty() || req.prompt.len() >= ctx {
            return Err(invalid(format!("a prompt of {} tokens (the context holds {ctx})", req.prompt.len())));
        }
        if let Some(&t) = req.prompt.iter().find(|&&t| t as usize >= self.model.cfg.vocab_size) {
            return Err(invalid(format!("prompt token {t} is outside the vocabulary")));
        }
        req.sampler.validate()?;
        let longest = (req.prompt.len() + req.max_new).min(ctx);
        // With a sliding window a sequence holds only its window (+ a step's chunk, + a block).
        let held = match self.model.cfg.sliding_window {
            Some(w) => self.cache.blocks_for(longest.min(w + self.cfg.max_tokens_per_step)) + 1,
            None => self.cache.blocks_for(longest),
        };
        let held = held.min(self.cache.blocks_for(longest));
        if held > self.cfg.num_blocks {
            return Err(invalid(format!("{longest} tokens need {held} blocks; the pool has {}", self.cfg.num_blocks)));
        }
        let dfa = req.constraint.as_ref().map(|c| c.start()).transpose()?;
        let id = self.next_id;
        self.next_id += 1;
        let tokens = req.prompt.clone();
        self.waiting.push_back(Sequence { id, req, tokens, computed: 0, in_cache: false, dfa, prompt_scored: 1 });
        Ok(id)
    }

    /// Drops sequence `id` wherever it is, freeing its blocks (a cancelled request). Returns
    /// whether it was there.
    pub fn abort(&mut self, id: SeqId) -> bool {
        self.cache.free(id);
        let before = self.waiting.len() + self.running.len();
        self.waiting.retain(|s| s.id != id);
        self.running.retain(|s| s.id != id);
        before != self.waiting.len() + self.running.len()
    }

    /// Whether any sequence is waiting or running.
    pub fn has_work(&self) -> bool {
        !self.waiting.is_empty() || !self.running.is_empty()
    }

    /// Sequences waiting for admission.
    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Sequences admitted.
    pub fn num_running(&self) -> usize {
        self.running.len()
    }

    /// The KV pool.
    pub fn cache(&self) -> &PagedKvCache {
        &self.cache
    }

    /// Work counters.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Frees the youngest running sequence's blocks and requeues it at the head of the queue.
    fn preempt_youngest(&mut self) -> bool {
        let Some(mut s) = self.running.pop() else { return false };
        self.cache.free(s.id);
        s.computed = 0;
        s.in_cache = false;
        self.stats.preemptions += 1;
        self.waiting.push_front(s);
        true
    }

    /// Chooses this step's work: `(index into running, tokens)` pairs.
    fn schedule(&mut self) -> Result<Vec<(usize, usize)>> {
        let mut budget = self.cfg.max_tokens_per_step;
        let mut plan: Vec<(usize, usize)> = vec![];
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let s = &self.running[i];
            let n = (s.tokens.len() - s.computed).min(budget);
            if self.cache.reserve(s.id, n)? {
                plan.push((i, n));
                budget -= n;
                i += 1;
            } else if self.running.len() - 1 > i {
                self.preempt_youngest(); // frees room for the older ones; retry this one
            } else {
                // The sequence itself is the youngest: it yields its blocks and waits.
                self.preempt_youngest();
                break;
            }
        }
        while budget > 0 && self.running.len() < self.cfg.max_num_seqs {
            let Some(mut s) = self.waiting.pop_front() else { break };
            if !s.in_cache {
                // A prompt's cached full blocks are reused (only those of its original prompt:
                // a recomputed sequence hashes its generated tokens too) — unless the prompt is
                // still to be scored, which needs its logits.
                let scoring = s.req.prompt_logprobs.is_some() && s.prompt_scored < s.req.prompt.len();
                s.computed = self.cache.add_sequence(s.id, if scoring { &[] } else { &s.tokens })?;
                self.stats.prefix_hit_tokens += s.computed as u64;
                s.in_cache = true;
            }
            let n = (s.tokens.len() - s.computed).min(budget);
            if !self.cache.reserve(s.id, n)? {
                self.cache.free(s.id);
                s.in_cache = false;
                s.computed = 0;
                self.waiting.push_front(s);
                break;
            }
            plan.push((self.running.len(), n));
            budget -= n;
            self.running.push(s);
        }
        Ok(plan)
    }

    /// One scheduling decision and one batched forward pass; returns what each sequence did.
    pub fn step(&mut self) -> Result<Vec<StepEvent>> {
        let plan = self.schedule()?;
        if plan.is_empty() {
            return Ok(vec![]);
        }
        let items: Vec<(SeqId, usize)> = plan.iter().map(|&(i, n)| (self.running[i].id, n)).collect();
        let batch = self.cache.batch(&items, &self.device)?;
        // Logit rows: (running index, row) of each sequence that samples this step, and
        // (running index, prompt token scored, row) of prompt tokens being scored.
        let (mut flat, mut rows, mut samplers, mut scored) = (vec![], vec![], vec![], vec![]);
        for &(i, n) in &plan {
            let s = &self.running[i];
            let start = flat.len() as i64;
            flat.extend(s.tokens[s.computed..s.computed + n].iter().map(|&t| t as i64));
            if s.req.prompt_logprobs.is_some() {
                // Position p's logits score prompt token p + 1.
                for p in s.computed..s.computed + n {
                    if p + 1 >= s.prompt_scored && p + 1 < s.req.prompt.len() {
                        scored.push((i, p + 1, rows.len()));
                        rows.push(start + (p - s.computed) as i64);
                    }
                }
            }
            if s.computed + n == s.tokens.len() {
                samplers.push((i, rows.len()));
                rows.push(flat.len() as i64 - 1);
            }
        }
        let n_flat = flat.len();
        let tokens = Tensor::from_vec(flat, &[n_flat], &self.device)?;
        let n_rows = rows.len();
        let logits = if n_rows > 0 {
            let rows = Tensor::from_vec(rows, &[n_rows], &self.device)?;
            self.model.forward_paged(&tokens, &batch, &self.cache, &rows)?.to_vec::<f32>()?
        } else {
            // Only prefill chunks this step: their keys and values are what counts; the head
            // runs on one row, whose logits are dropped.
            let row0 = Tensor::from_vec(vec![0i64], &[1], &self.device)?;
            self.model.forward_paged(&tokens, &batch, &self.cache, &row0)?;
            vec![]
        };
        self.stats.steps += 1;
        for &(i, n) in &plan {
            let s = &mut self.running[i];
            self.cache.commit(s.id, &s.tokens[s.computed..s.computed + n])?;
            if n > 1 || s.generated() == 0 {
                self.stats.prefill_tokens += n as u64;
            }
            s.computed += n;
            if let Some(w) = self.model.cfg.sliding_window {
                // The next query (at position `computed`) sees keys from computed + 1 − w on.
                self.cache.release_before(s.id, (s.computed + 1).saturating_sub(w))?;
            }
        }
        let v = self.model.cfg.vocab_size;
        let (mut events, mut finished) = (vec![], vec![]);
        for chunk in scored.chunk_by(|a, b| a.0 == b.0) {
            let s = &mut self.running[chunk[0].0];
            let k = s.req.prompt_logprobs.unwrap_or(0);
            let logprobs = chunk
                .iter()
                .map(|&(_, t, r)| token_logprobs(&logits[r * v..(r + 1) * v], s.req.prompt[t], k))
                .collect();
            events.push(StepEvent::PromptLogprobs { id: s.id, first: chunk[0].1, logprobs });
            s.prompt_scored = chunk[chunk.len() - 1].1 + 1;
        }
        for &(i, r) in &samplers {
            let s = &mut self.running[i];
            if s.req.max_new == 0 {
                // Only the prompt was wanted (e.g. scored): nothing is sampled.
                events.push(StepEvent::Finished { id: s.id, reason: FinishReason::Length });
                finished.push(s.id);
                continue;
            }
            let Some(tok) = sample(s, &logits[r * v..(r + 1) * v])? else {
                // The constraint's text is complete and nothing may follow.
                events.push(StepEvent::Finished { id: s.id, reason: FinishReason::Stop });
                finished.push(s.id);
                continue;
            };
            s.tokens.push(tok);
            self.stats.sampled_tokens += 1;
            let row = &logits[r * v..(r + 1) * v];
            let logprobs = s.req.logprobs.map(|k| token_logprobs(row, tok, k));
            events.push(StepEvent::Token { id: s.id, token: tok, logprobs });
            let reason = if s.req.stop.contains(&tok) {
                Some(FinishReason::Stop)
            } else if s.generated() >= s.req.max_new || s.tokens.len() >= self.model.cfg.n_positions {
                Some(FinishReason::Length)
            } else {
                None
            };
            if let Some(reason) = reason {
                events.push(StepEvent::Finished { id: s.id, reason });
                finished.push(s.id);
            }
        }
        for id in finished {
            self.abort(id);
        }
        Ok(events)
    }

    /// Runs `reqs` to completion; returns each one's generated tokens (in request order).
    pub fn run_all(&mut self, reqs: Vec<BatchRequest>) -> Result<Vec<Vec<u32>>> {
        let ids = reqs.into_iter().map(|r| self.add(r)).collect::<Result<Vec<_>>>()?;
        let mut out: Vec<Vec<u32>> = vec![vec![]; ids.len()];
        let first = ids.first().copied().unwrap_or(0);
        while self.has_work() {
            for e in self.step()? {
                if let StepEvent::Token { id, token, .. } = e {
                    out[(id - first) as usize].push(token);
                }
            }
        }
        Ok(out)
    }
}

/// The next token of `s` from its `logits` (its draw indexed by its generated count), within its
/// constraint if it has one; `None` when the constraint allows no token at all.
fn sample(s: &mut Sequence, logits: &[f32]) -> Result<Option<u32>> {
    let draw = s.generated() as u64;
    let (sampler, from) = (&s.req.sampler, s.req.prompt.len());
    let (Some(c), Some(state)) = (&s.req.constraint, s.dfa) else {
        return sampler.sample_in_context(logits, &s.tokens, from, draw).map(Some);
    };
    let Some(allowed) = c.mask(state, logits.len(), &s.req.stop) else {
        return Ok(None);
    };
    let tok = sampler.sample_in_context(&crate::constrained::masked(logits, &allowed), &s.tokens, from, draw)?;
    if !s.req.stop.contains(&tok) {
        s.dfa = Some(c.advance(state, tok)?);
    }
    Ok(Some(tok))
}
