//! Constrained decoding (seeds 003/004 "structured generation"; Willard & Louf 2023): the
//! output must match a regular expression. The regex compiles to a DFA over bytes
//! (`regex-automata`); each token of the vocabulary is a byte string, so from the DFA state
//! reached by the text so far a token is allowed iff walking its bytes never reaches the dead
//! state. Disallowed tokens get −∞ logits before sampling, and the end-of-sequence token is
//! allowed exactly when the text so far is a whole match. Generation ends when the text is a
//! match that no token can extend, at an allowed end-of-sequence token, or at `max_new`.
//!
//! Cost: one mask per step walks every token's bytes (≈ V·4 DFA steps: ~1 ms for a 50k vocab).

use crate::Sampler;
use kiln_core::{no_grad, Device, Error, Result, Tensor};
use kiln_models::gpt::Gpt;
use regex_automata::dfa::{dense, Automaton};
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;
use regex_automata::Anchored;

/// A regex over the whole generated text, and the vocabulary's token bytes.
pub struct RegexConstraint {
    dfa: dense::DFA<Vec<u32>>,
    tokens: Vec<Option<Vec<u8>>>,
}

impl std::fmt::Debug for RegexConstraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RegexConstraint({} bytes of DFA, {} tokens)", self.dfa.memory_usage(), self.tokens.len())
    }
}

impl RegexConstraint {
    /// Compiles `pattern` (the `regex` crate's syntax, matched against the whole output) for a
    /// vocabulary whose token `i` stands for the bytes `tokens[i]` (`None`: never allowed).
    pub fn new(pattern: &str, tokens: Vec<Option<Vec<u8>>>) -> Result<RegexConstraint> {
        let dfa = dense::DFA::new(&format!("^(?:{pattern})$"))
            .map_err(|e| Error::Invalid { op: "RegexConstraint", msg: format!("regex {pattern:?}: {e}") })?;
        Ok(RegexConstraint { dfa, tokens })
    }

    /// The state before any output.
    pub fn start(&self) -> Result<StateID> {
        self.dfa
            .start_state(&start::Config::new().anchored(Anchored::Yes))
            .map_err(|e| Error::Invalid { op: "RegexConstraint", msg: e.to_string() })
    }

    /// The state after `bytes` from `s`, or `None` when they leave every match.
    pub fn walk(&self, s: StateID, bytes: &[u8]) -> Option<StateID> {
        let mut s = s;
        for &b in bytes {
            s = self.dfa.next_state(s, b);
            if self.dfa.is_dead_state(s) || self.dfa.is_quit_state(s) {
                return None;
            }
        }
        Some(s)
    }

    /// Whether the text that led to `s` is a whole match.
    pub fn is_match(&self, s: StateID) -> bool {
        self.dfa.is_match_state(self.dfa.next_eoi_state(s))
    }

    /// The bytes token `t` stands for (`None`: not in the vocabulary, or never allowed).
    pub fn token_bytes(&self, t: u32) -> Option<&[u8]> {
        self.tokens.get(t as usize).and_then(|b| b.as_deref())
    }

    /// Per token: may it come next from `s`? (Empty tokens never: they would not advance.)
    pub fn allowed(&self, s: StateID) -> Vec<bool> {
        self.tokens.iter().map(|t| t.as_deref().is_some_and(|b| !b.is_empty() && self.walk(s, b).is_some())).collect()
    }

    /// The mask over a vocabulary of `vocab` tokens at state `s`: [`RegexConstraint::allowed`],
    /// with the `stop` tokens allowed exactly when the text so far is a whole match. `None`
    /// when no token at all may come (a complete match nothing extends).
    pub fn mask(&self, s: StateID, vocab: usize, stop: &[u32]) -> Option<Vec<bool>> {
        let mut allowed = self.allowed(s);
        allowed.resize(vocab, false);
        let done = self.is_match(s);
        for &e in stop {
            if let Some(a) = allowed.get_mut(e as usize) {
                *a = done;
            }
        }
        allowed.iter().any(|&a| a).then_some(allowed)
    }

    /// The state after token `t` from `s`; an error when `t` is outside the mask of `s`.
    pub fn advance(&self, s: StateID, t: u32) -> Result<StateID> {
        self.token_bytes(t)
            .and_then(|b| self.walk(s, b))
            .ok_or_else(|| Error::Invalid { op: "RegexConstraint", msg: format!("sampled token {t} outside the mask") })
    }
}

/// `logits` with the tokens `allowed` forbids set to −∞.
pub(crate) fn masked(logits: &[f32], allowed: &[bool]) -> Vec<f32> {
    logits.iter().zip(allowed).map(|(&l, &a)| if a { l } else { f32::NEG_INFINITY }).collect()
}

/// Generates up to `max_new` tokens after `prompt` whose text matches `constraint` (see the
/// module docs); `eos` (if any) may end the output once it is a whole match. Returns the
/// tokens (without the end-of-sequence token) and whether the output is a complete match.
#[allow(clippy::too_many_arguments)]
pub fn generate_constrained(
    model: &Gpt,
    prompt: &[u32],
    max_new: usize,
    sampler: &Sampler,
    constraint: &RegexConstraint,
    eos: Option<u32>,
    device: &Device,
    mut on_token: impl FnMut(u32) -> Result<()>,
) -> Result<(Vec<u32>, bool)> {
    let bad = |msg: String| Error::Invalid { op: "generate_constrained", msg };
    if prompt.is_empty() {
        return Err(bad("the prompt must contain at least one token".into()));
    }
    if constraint.tokens.len() > model.cfg.vocab_size {
        return Err(bad(format!(
            "the constraint's vocabulary ({}) exceeds the model's ({})",
            constraint.tokens.len(),
            model.cfg.vocab_size
        )));
    }
    let need = prompt.len() + max_new;
    if need > model.cfg.n_positions {
        return Err(bad(format!("prompt + max_new = {need} exceeds the context ({})", model.cfg.n_positions)));
    }
    let ids = |t: &[u32]| Tensor::from_vec(t.iter().map(|&x| x as i64).collect(), &[1, t.len()], device);
    no_grad(|| {
        let mut caches = model.new_caches(1, need.max(1), device)?;
        let mut state = constraint.start()?;
        let mut out: Vec<u32> = Vec::new();
        let mut history = prompt.to_vec();
        let mut input = ids(prompt)?;
        for i in 0..max_new {
            let Some(allowed) = constraint.mask(state, model.cfg.vocab_size, eos.as_slice()) else {
                // a whole match no token extends (or, without a match, a vocabulary that cannot
                // spell any continuation)
                return Ok((out, constraint.is_match(state)));
            };
            let logits = model.forward_last(&input, Some(&mut caches))?.to_vec::<f32>()?;
            let tok = sampler.sample_in_context(&masked(&logits, &allowed), &history, prompt.len(), i as u64)?;
            if Some(tok) == eos {
                return Ok((out, true));
            }
            state = constraint.advance(state, tok)?;
            on_token(tok)?;
            out.push(tok);
            history.push(tok);
            input = ids(&[tok])?;
        }
        let done = constraint.is_match(state);
        Ok((out, done))
    })
}
