//! Reports: each analysis with its inputs, as a readable text table (per-layer breakdown first,
//! then the model totals and the closed forms they are checked against) or as JSON, so the CLI
//! only prints them. One builder per `kiln analyze` subcommand: [`params`], [`flops`],
//! [`memory`], [`kv_cache`], [`train_time`], [`scaling`].

use crate::activations::Activations;
use crate::arch::{Arch, Family, PositionKind};
use crate::dtype::Dtype;
use crate::error::{AnalysisError, Result};
use crate::flops::{decode_flops_per_token, layer_flops_closed_form, training_flops, Recompute, TrainingFlops};
use crate::kv_cache::{kv_cache as kv, max_decode_batch, max_kv_tokens, paged_kv_cache, KvCache, PagedKvCache};
use crate::memory::{max_batch, max_seq, training_memory, weight_bytes, TrainingMemory, TrainingSetup};
use crate::params::{param_count, ParamCount};
use crate::scaling::{Chinchilla, ComputeOptimal, Kaplan};
use crate::table::{bytes, int, pct, si, Table};
use crate::train_time::{training_time, training_utilisation, TrainTime, Utilisation};
use serde::Serialize;

/// A rendered analysis.
pub trait Report: Serialize {
    /// The analysis as text tables.
    fn text(&self) -> String;

    /// The analysis as pretty-printed JSON (every field of the report).
    fn json(&self) -> Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }
}

/// Seconds as `"21.98 days"`, `"3.50 h"`, `"12.0 s"`.
fn duration(seconds: f64) -> String {
    if seconds >= 86_400.0 {
        format!("{:.2} days", seconds / 86_400.0)
    } else if seconds >= 3600.0 {
        format!("{:.2} h", seconds / 3600.0)
    } else {
        format!("{seconds:.1} s")
    }
}

/// One line describing an architecture.
fn describe(a: &Arch) -> String {
    let family = match a.family {
        Family::Decoder => "decoder",
        Family::Encoder => "encoder",
    };
    let pos = match a.position {
        PositionKind::Learned => "learned positions",
        PositionKind::Rope => "RoPE",
    };
    let head = match (a.family, a.tied_head, a.pooler) {
        (Family::Decoder, true, _) => "tied head",
        (Family::Decoder, false, _) => "untied head",
        (Family::Encoder, _, true) => "pooler",
        (Family::Encoder, _, false) => "no pooler",
    };
    format!(
        "{} — {family}, V={} P={} C={} L={} H={}/{} D={} F={}, {pos}, {:?}, {:?} MLP, {}, {head}",
        a.name,
        a.vocab_size,
        a.max_positions,
        a.d_model,
        a.n_layers,
        a.n_heads,
        a.n_kv_heads,
        a.head_dim(),
        a.d_ff,
        a.norm,
        a.mlp,
        if a.bias { "biases" } else { "no biases" },
    ) + &a.moe.map(|m| format!(", MoE {} experts, top {}", m.experts, m.top_k)).unwrap_or_default()
        + &a.sliding_window.map(|w| format!(", sliding window {w}")).unwrap_or_default()
}

/// Parameter counts by component.
#[derive(Clone, Debug, Serialize)]
pub struct ParamsReport {
    /// The architecture.
    pub arch: Arch,
    /// The counts.
    pub params: ParamCount,
}

/// The parameter report of `arch`.
pub fn params(arch: &Arch) -> Result<ParamsReport> {
    Ok(ParamsReport { arch: arch.clone(), params: param_count(arch)? })
}

impl Report for ParamsReport {
    fn text(&self) -> String {
        let p = &self.params;
        let tot = p.total as f64;
        let r = |t: &mut Table, name: &str, n: u64| t.row(&[name.into(), int(n.into()), pct(n as f64, tot)]);
        let mut layer = Table::new("per layer", &["tensor", "parameters", "of model"]);
        let l = &p.layer;
        for (name, n) in [
            ("attention q", l.attn_q),
            ("attention k", l.attn_k),
            ("attention v", l.attn_v),
            ("attention o", l.attn_o),
            ("attention biases", l.attn_bias),
            ("MLP weights", l.mlp),
            ("MLP biases", l.mlp_bias),
            ("MoE router", l.router),
            ("norm gains", l.norm),
            ("norm biases", l.norm_bias),
            ("layer total", l.total()),
        ] {
            r(&mut layer, name, n);
        }
        let mut model = Table::new("model", &["component", "parameters", "share"]);
        r(&mut model, "token embedding (V·C)", p.token_embedding);
        r(&mut model, "position embedding (P·C)", p.position_embedding);
        if self.arch.family == Family::Encoder {
            r(&mut model, "token-type embedding", p.token_type_embedding);
            r(&mut model, "embedding norm", p.embedding_norm);
        }
        r(&mut model, &format!("layers ({} × {})", p.n_layers, int(l.total().into())), p.layers);
        match self.arch.family {
            Family::Decoder => {
                r(&mut model, "final norm", p.final_norm);
                r(&mut model, if self.arch.tied_head { "head (tied to embedding)" } else { "head (V·C)" }, p.head);
            }
            Family::Encoder => r(&mut model, "pooler", p.pooler),
        }
        r(&mut model, "total", p.total);
        r(&mut model, "non-embedding (Kaplan's N)", p.non_embedding);
        let active = match self.arch.moe {
            Some(m) => {
                r(&mut model, &format!("active per token ({} of {} experts)", m.top_k, m.experts), p.active);
                format!(", {} active per token", si(p.active as f64))
            }
            None => String::new(),
        };
        format!(
            "{}\n\n{}\n{}\ntotal: {} parameters{active}\n",
            describe(&self.arch),
            layer.render(),
            model.render(),
            si(tot)
        )
    }
}

/// Forward and training FLOPs, per layer and per model, and utilisation if measured.
#[derive(Clone, Debug, Serialize)]
pub struct FlopsReport {
    /// The architecture.
    pub arch: Arch,
    /// Forward, backward, recomputation, model and hardware FLOPs of one step.
    pub training: TrainingFlops,
    /// The recomputation assumed.
    pub recompute: Recompute,
    /// Forward FLOPs per token.
    pub forward_per_token: f64,
    /// Forward FLOPs to decode the token after a context of S − 1 (decoders).
    pub decode_per_token: Option<u128>,
    /// `24·B·S·C² + 4·B·S²·C` when the layer is the textbook's (MHA, F = 4C).
    pub closed_form_layer: Option<u128>,
    /// `6·N` per token (N = all parameters): the 6ND rule's model FLOPs per token.
    pub six_n_per_token: f64,
    /// MFU/HFU from a measured throughput, when given.
    pub utilisation: Option<Utilisation>,
}

/// The FLOP report of `arch` on B sequences of S tokens; with `measured = Some((tokens/s,
/// total peak FLOP/s))` it includes MFU and HFU.
pub fn flops(
    arch: &Arch,
    batch: u64,
    seq: u64,
    recompute: Recompute,
    measured: Option<(f64, f64)>,
) -> Result<FlopsReport> {
    let training = training_flops(arch, batch, seq, recompute)?;
    let n = param_count(arch)?.total as f64;
    Ok(FlopsReport {
        arch: arch.clone(),
        training,
        recompute,
        forward_per_token: training.forward.per_token(),
        decode_per_token: match arch.family {
            Family::Decoder => Some(decode_flops_per_token(arch, seq.saturating_sub(1))?),
            Family::Encoder => None,
        },
        closed_form_layer: if arch.is_textbook_layer() {
            Some(layer_flops_closed_form(batch, seq, arch.d_model)?)
        } else {
            None
        },
        six_n_per_token: 6.0 * n,
        utilisation: match measured {
            Some((tps, peak)) => Some(training_utilisation(arch, batch, seq, recompute, tps, peak)?),
            None => None,
        },
    })
}

impl Report for FlopsReport {
    fn text(&self) -> String {
        let f = &self.training.forward;
        let l = &f.layer;
        let lt = l.total() as f64;
        let mut layer = Table::new(
            &format!("forward FLOPs of one layer, B={} S={} (2 FLOPs per multiply-add)", f.batch, f.seq),
            &["product", "FLOPs", "", "of layer"],
        );
        let r = |t: &mut Table, name: &str, x: u128, whole: f64| {
            t.row(&[name.into(), int(x), si(x as f64), pct(x as f64, whole)])
        };
        for (name, x) in [
            ("q projection", l.q),
            ("k projection", l.k),
            ("v projection", l.v),
            ("o projection", l.o),
            ("QKᵀ (S² term)", l.scores),
            ("PV (S² term)", l.weighted),
            ("MLP", l.mlp),
            ("layer total", l.total()),
        ] {
            r(&mut layer, name, x, lt);
        }
        let t = &self.training;
        let mut model = Table::new("model", &["quantity", "FLOPs", "", "of forward"]);
        let ft = f.total as f64;
        r(&mut model, &format!("layers ({} ×)", f.n_layers), f.layers, ft);
        match self.arch.family {
            Family::Decoder => r(&mut model, "LM head (2·B·S·C·V)", f.head, ft),
            Family::Encoder => r(&mut model, "pooler (2·B·C²)", f.pooler, ft),
        }
        r(&mut model, "forward", f.total, ft);
        r(&mut model, "backward (2 × forward)", t.backward, ft);
        r(&mut model, &format!("recomputation ({:?})", self.recompute), t.recompute, ft);
        r(&mut model, "model FLOPs (MFU)", t.model, ft);
        r(&mut model, "hardware FLOPs (HFU)", t.hardware, ft);
        let mut out = format!("{}\n\n{}\n{}\n", describe(&self.arch), layer.render(), model.render());
        out.push_str(&format!("forward per token: {}\n", si(self.forward_per_token)));
        out.push_str(&format!(
            "training per token: {} (6·N = {})\n",
            si(t.model as f64 / (f.batch as f64 * f.seq as f64)),
            si(self.six_n_per_token)
        ));
        if let Some(d) = self.decode_per_token {
            out.push_str(&format!("decode one token after {} cached: {}\n", f.seq.saturating_sub(1), si(d as f64)));
        }
        if let Some(c) = self.closed_form_layer {
            out.push_str(&format!("closed form 24·B·S·C² + 4·B·S²·C = {} per layer\n", int(c)));
        }
        if let Some(u) = &self.utilisation {
            out.push_str(&format!(
                "measured {} tok/s on {} FLOP/s peak: MFU {:.1} %, HFU {:.1} %\n",
                si(u.tokens_per_s),
                si(u.peak_flops),
                100.0 * u.mfu,
                100.0 * u.hfu
            ));
        }
        out
    }
}

/// Training memory per device, and what fits a budget.
#[derive(Clone, Debug, Serialize)]
pub struct MemoryReport {
    /// The architecture.
    pub arch: Arch,
    /// The training setup.
    pub setup: TrainingSetup,
    /// States and activations at the given batch and context.
    pub memory: TrainingMemory,
    /// Weights alone for inference, in f32, bf16, int8 and q4_1.
    pub inference_weights: Vec<(Dtype, u64)>,
    /// The budget per device, when given.
    pub budget: Option<u64>,
    /// Largest batch at this context within the budget.
    pub max_batch: Option<u64>,
    /// Longest context at this batch within the budget.
    pub max_seq: Option<u64>,
}

/// The memory report of training `arch` on B sequences of S tokens under `setup`; with a
/// `budget` (bytes per device) it adds the largest batch and context that fit.
pub fn memory(arch: &Arch, batch: u64, seq: u64, setup: &TrainingSetup, budget: Option<u64>) -> Result<MemoryReport> {
    let memory = training_memory(arch, batch, seq, setup)?;
    let n = memory.states.params;
    let inference_weights = [Dtype::F32, Dtype::Bf16, Dtype::Int8, Dtype::Q4_1]
        .into_iter()
        .map(|d| Ok((d, weight_bytes(n, d)?)))
        .collect::<Result<_>>()?;
    let (max_batch, max_seq) = match budget {
        Some(b) => (max_batch(arch, seq, setup, b)?, max_seq(arch, batch, setup, b)?),
        None => (None, None),
    };
    Ok(MemoryReport { arch: arch.clone(), setup: *setup, memory, inference_weights, budget, max_batch, max_seq })
}

impl Report for MemoryReport {
    fn text(&self) -> String {
        let m = &self.memory;
        let s = &m.states;
        let a: &Activations = &m.activations;
        let tot = m.total as f64;
        let r = |t: &mut Table, name: &str, x: u64| t.row(&[name.into(), int(x.into()), bytes(x), pct(x as f64, tot)]);
        let o = &a.opts;
        let mut layer = Table::new(
            &format!(
                "stored activations of one layer, B={} S={} (p={} B/elem, dropout {}, recompute {:?}, t={}{})",
                a.batch,
                a.seq,
                o.bytes,
                if o.dropout { "on" } else { "off" },
                o.recompute,
                o.tensor_parallel,
                if o.sequence_parallel { " + sequence parallel" } else { "" }
            ),
            &["part", "bytes", "", "of total"],
        );
        for (name, x) in [
            ("norm inputs", a.layer.norms),
            ("attention (linear in S)", a.layer.attention),
            ("attention core (S² term)", a.layer.attention_core),
            ("MLP", a.layer.mlp),
            ("checkpointed layer input", a.layer.checkpoint),
            ("layer total", a.layer.total()),
        ] {
            r(&mut layer, name, x);
        }
        let mut total = Table::new(
            &format!(
                "per device: {:?} precision, {:?}, ZeRO stage {} over {} device(s)",
                self.setup.precision,
                self.setup.optimizer,
                s.zero.number(),
                s.devices
            ),
            &["component", "bytes", "", "of total"],
        );
        r(&mut total, &format!("weights ({} B/param)", s.per_param.weights), s.weights);
        r(&mut total, &format!("gradients ({} B/param)", s.per_param.grads), s.grads);
        r(&mut total, &format!("optimizer + master ({} B/param)", s.per_param.optimizer_total()), s.optimizer);
        r(&mut total, &format!("activations, layers ({} ×)", a.n_layers), a.layers);
        r(&mut total, "activations, recompute working layer", a.recompute_working);
        r(&mut total, "activations, embeddings", a.embeddings);
        r(&mut total, "activations, final norm + head + logits", a.output);
        r(&mut total, "total", m.total);
        let mut out = format!("{}\n\n{}\n{}\n", describe(&self.arch), layer.render(), total.render());
        let w: Vec<String> = self.inference_weights.iter().map(|(d, b)| format!("{d} {}", bytes(*b))).collect();
        out.push_str(&format!("inference weights: {}\n", w.join(", ")));
        if let Some(b) = self.budget {
            let show = |x: Option<u64>| x.map_or("nothing fits".to_string(), |v| v.to_string());
            out.push_str(&format!(
                "budget {} per device: largest batch at S={}: {}; longest context at B={}: {}\n",
                bytes(b),
                a.seq,
                show(self.max_batch),
                a.batch,
                show(self.max_seq)
            ));
        }
        out
    }
}

/// KV-cache sizes, contiguous and paged, and what fits a budget.
#[derive(Clone, Debug, Serialize)]
pub struct KvCacheReport {
    /// The architecture.
    pub arch: Arch,
    /// The contiguous cache for B sequences of T tokens.
    pub cache: KvCache,
    /// The same sequences in a paged cache, when a block size is given.
    pub paged: Option<PagedKvCache>,
    /// Weights in `weight_dtype` (for the budget).
    pub weight_dtype: Dtype,
    /// Their bytes.
    pub weight_bytes: u64,
    /// Device memory budget, when given.
    pub budget: Option<u64>,
    /// Largest batch of T-token sequences that fits with the weights.
    pub max_batch: Option<u64>,
    /// Most cached tokens that fit beside the weights.
    pub max_tokens: Option<u64>,
}

/// The KV-cache report of `arch` for B sequences of T tokens in `dtype`; `block_tokens` adds the
/// paged layout; `budget` (bytes, with the weights in `weight_dtype`) the largest batch.
pub fn kv_cache(
    arch: &Arch,
    tokens: u64,
    batch: u64,
    dtype: Dtype,
    block_tokens: Option<u64>,
    weight_dtype: Dtype,
    budget: Option<u64>,
) -> Result<KvCacheReport> {
    let cache = kv(arch, tokens, batch, dtype)?;
    let paged = match block_tokens {
        Some(b) if batch <= 1 << 20 => {
            let lens = vec![tokens; usize::try_from(batch).unwrap_or(1)];
            Some(paged_kv_cache(arch, &lens, b, dtype)?)
        }
        Some(_) => {
            return Err(AnalysisError::InvalidInput {
                what: "batch",
                msg: "a paged layout is computed for ≤ 2²⁰ sequences".into(),
            })
        }
        None => None,
    };
    let w = weight_bytes(param_count(arch)?.total, weight_dtype)?;
    let (max_batch, max_tokens) = match budget {
        Some(b) => (
            max_decode_batch(arch, tokens, weight_dtype, dtype, b)?,
            Some(max_kv_tokens(arch, dtype, b.saturating_sub(w))?),
        ),
        None => (None, None),
    };
    Ok(KvCacheReport { arch: arch.clone(), cache, paged, weight_dtype, weight_bytes: w, budget, max_batch, max_tokens })
}

impl Report for KvCacheReport {
    fn text(&self) -> String {
        let c = &self.cache;
        let a = &self.arch;
        let mut t = Table::new(
            &format!("KV cache, T={} tokens × B={} sequences, {} (2·L·T·Hkv·D·B·bytes)", c.tokens, c.batch, c.dtype),
            &["quantity", "bytes", ""],
        );
        let r = |t: &mut Table, name: &str, x: u64| t.row(&[name.into(), int(x.into()), bytes(x)]);
        r(
            &mut t,
            &format!("one token, one layer (K+V, Hkv={} × D={})", a.n_kv_heads, a.head_dim()),
            c.per_token_per_layer,
        );
        r(&mut t, &format!("one token, {} layers", a.n_layers), c.per_token);
        r(&mut t, "one layer, whole batch", c.per_layer);
        r(&mut t, "total", c.total);
        r(&mut t, &format!("same with MHA (Hkv = H = {})", a.n_heads), c.mha_total);
        let mut out = format!("{}\n\n{}", describe(a), t.render());
        if c.stored_tokens != c.tokens {
            out.push_str(&format!(
                "sliding window of {} tokens: each sequence keeps its last {} (totals above)\n",
                a.sliding_window.unwrap_or(0),
                c.stored_tokens
            ));
        }
        if let Some(p) = &self.paged {
            out.push_str(&format!(
                "paged ({} tokens/block): {} blocks of {}, allocated {}, waste {} ({:.2} %)\n",
                p.block_tokens,
                int(p.blocks.into()),
                bytes(p.block_bytes),
                bytes(p.allocated),
                bytes(p.waste),
                100.0 * p.waste_fraction
            ));
        }
        if let Some(b) = self.budget {
            out.push_str(&format!(
                "budget {}: weights ({}) {}; largest batch at T={}: {}; cached tokens that fit: {}\n",
                bytes(b),
                self.weight_dtype,
                bytes(self.weight_bytes),
                c.tokens,
                self.max_batch.map_or("nothing fits".into(), |x| x.to_string()),
                self.max_tokens.map_or(String::new(), |x| int(x.into()))
            ));
        }
        out
    }
}

/// Training time of an architecture on D tokens.
#[derive(Clone, Debug, Serialize)]
pub struct TrainTimeReport {
    /// The architecture.
    pub arch: Arch,
    /// Parameters N used in 6·N·D.
    pub params: f64,
    /// Training tokens D.
    pub tokens: f64,
    /// Time with the 6·N·D rule.
    pub six_nd: TrainTime,
    /// Time with the exact model FLOPs per token at context S, when S is given.
    pub exact: Option<(u64, TrainTime)>,
}

/// The training-time report of `arch` on `tokens` tokens with `devices` devices of
/// `peak_flops` at `mfu`; `params` overrides N (e.g. LLaMA-65B's nominal 65e9), `seq` adds the
/// exact per-token count at that context.
pub fn train_time(
    arch: &Arch,
    tokens: f64,
    devices: u64,
    peak_flops: f64,
    mfu: f64,
    params: Option<f64>,
    seq: Option<u64>,
) -> Result<TrainTimeReport> {
    let n = match params {
        Some(n) => n,
        None => param_count(arch)?.total as f64,
    };
    let six_nd = crate::train_time::training_time_6nd(n, tokens, devices, peak_flops, mfu)?;
    let exact = match seq {
        Some(s) => {
            let per_token = training_flops(arch, 1, s, Recompute::None)?.model as f64 / s as f64;
            Some((s, training_time(per_token * tokens, devices, peak_flops, mfu)?))
        }
        None => None,
    };
    Ok(TrainTimeReport { arch: arch.clone(), params: n, tokens, six_nd, exact })
}

impl Report for TrainTimeReport {
    fn text(&self) -> String {
        let mut t = Table::new(
            &format!("training {} on {} tokens", self.arch.name, si(self.tokens)),
            &["estimate", "FLOPs", "devices", "peak/device", "MFU", "time", "device-hours"],
        );
        let r = |t: &mut Table, name: &str, x: &TrainTime| {
            t.row(&[
                name.into(),
                format!("{:.3e}", x.flops),
                x.devices.to_string(),
                si(x.peak_flops),
                format!("{:.0} %", 100.0 * x.mfu),
                duration(x.seconds),
                si(x.device_hours),
            ])
        };
        r(&mut t, &format!("6·N·D, N = {}", si(self.params)), &self.six_nd);
        if let Some((s, x)) = &self.exact {
            r(&mut t, &format!("exact model FLOPs at S = {s}"), x);
        }
        format!("{}\n\n{}", describe(&self.arch), t.render())
    }
}

/// Compute-optimal allocations and predicted losses.
#[derive(Clone, Debug, Serialize)]
pub struct ScalingReport {
    /// The architecture, when one was given.
    pub arch: Option<Arch>,
    /// Its parameters (all) and non-embedding parameters.
    pub params: Option<(u64, u64)>,
    /// The compute budget C in FLOPs.
    pub compute: f64,
    /// Chinchilla's optimum for C.
    pub chinchilla: ComputeOptimal,
    /// Chinchilla's 20-tokens-per-parameter rule (approaches 1–2) for C.
    pub chinchilla_20: ComputeOptimal,
    /// Kaplan's optimum for C.
    pub kaplan: ComputeOptimal,
    /// Chinchilla's exponents (a, b) of N_opt ∝ C^a, D_opt ∝ C^b.
    pub chinchilla_exponents: (f64, f64),
    /// The architecture's predicted loss on the tokens 6·N·D = C gives it: (tokens,
    /// Chinchilla loss, Kaplan loss with non-embedding N).
    pub arch_at_budget: Option<(f64, f64, f64)>,
}

/// The scaling report for a compute budget C (FLOPs). With an architecture and no budget, C is
/// the budget for which the architecture is Chinchilla-optimal.
pub fn scaling(arch: Option<&Arch>, compute: Option<f64>) -> Result<ScalingReport> {
    let ch = Chinchilla::APPROACH_3;
    let params = match arch {
        Some(a) => {
            let p = param_count(a)?;
            Some((p.total, p.non_embedding))
        }
        None => None,
    };
    let compute = match (compute, params) {
        (Some(c), _) => c,
        (None, Some((n, _))) => ch.compute_for_params(n as f64)?,
        (None, None) => {
            return Err(AnalysisError::InvalidInput {
                what: "scaling",
                msg: "give a compute budget or an architecture".into(),
            })
        }
    };
    let arch_at_budget = match params {
        Some((n, ne)) => {
            let d = compute / (6.0 * n as f64);
            Some((d, ch.loss(n as f64, d)?, Kaplan::PAPER.loss(ne as f64, d)?))
        }
        None => None,
    };
    Ok(ScalingReport {
        arch: arch.cloned(),
        params,
        compute,
        chinchilla: ch.compute_optimal(compute)?,
        chinchilla_20: crate::scaling::tokens_per_param_rule(compute, 20.0)?,
        kaplan: Kaplan::PAPER.compute_optimal(compute)?,
        chinchilla_exponents: (ch.params_exponent(), ch.tokens_exponent()),
        arch_at_budget,
    })
}

impl Report for ScalingReport {
    fn text(&self) -> String {
        let mut t = Table::new(
            &format!("compute-optimal allocation of C = {:.3e} FLOPs (C = 6·N·D)", self.compute),
            &["law", "N_opt", "D_opt", "D/N", "loss"],
        );
        for (name, o) in [
            ("Chinchilla (approach 3)", &self.chinchilla),
            ("Chinchilla (approaches 1–2: 20 tokens/parameter)", &self.chinchilla_20),
            ("Kaplan (non-embedding N ∝ C^0.73)", &self.kaplan),
        ] {
            t.row(&[
                name.into(),
                si(o.params),
                si(o.tokens),
                format!("{:.1}", o.tokens_per_param),
                o.loss.map_or(String::new(), |l| format!("{l:.3}")),
            ]);
        }
        let (a, b) = self.chinchilla_exponents;
        let mut out = String::new();
        if let Some(arch) = &self.arch {
            out.push_str(&describe(arch));
            out.push_str("\n\n");
        }
        out.push_str(&t.render());
        out.push_str(&format!("Chinchilla: N_opt ∝ C^{a:.3}, D_opt ∝ C^{b:.3}\n"));
        if let (Some((n, _)), Some((d, lc, lk))) = (self.params, self.arch_at_budget) {
            out.push_str(&format!(
                "this model (N = {}) on D = {} tokens: Chinchilla loss {lc:.3}, Kaplan L(N, D) {lk:.3}\n",
                si(n as f64),
                si(d)
            ));
        }
        out
    }
}
