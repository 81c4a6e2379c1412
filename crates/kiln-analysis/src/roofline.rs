//! The roofline model (Williams et al. 2009; seed 004 "arithmetic intensity", "prefill is
//! compute-bound, decode is memory-bound"): an op doing F FLOPs over B bytes of memory traffic
//! has arithmetic intensity I = F/B; on a device with peak P FLOP/s and bandwidth W bytes/s it
//! runs at most at min(P, I·W), so it is memory-bound when I is below the machine balance P/W.
//!
//! Ops: the matrix products of one layer — QKV, attention output, the MLP (GELU: up, down;
//! SwiGLU: gate+up, down) — attention itself, and the LM head. A product (M,K)·(K,N) moves
//! `e·(M·K + K·N + M·N)` bytes (each operand read once, the output written once, e bytes per
//! element) for 2·M·N·K FLOPs. Attention is counted as fused (FlashAttention): Q, K, V read and
//! the output written once, no S×S matrix in memory; 4·B·H·T·S·D FLOPs for T queries over S
//! keys. Prefill processes M = B·S tokens (causal: queries see S keys on average S/2, counted
//! in full as kiln's FLOP counter does); a decode step M = B tokens, each over a context of S
//! cached keys read from the KV cache. Norms and elementwise ops are left out (small FLOPs,
//! memory-bound, a few % of the time).

use crate::arch::{Arch, Family, MlpKind};
use crate::error::{AnalysisError, Result};
use crate::report::Report;
use crate::table::{si, Table};
use serde::Serialize;

/// Memory bandwidth of common accelerators (vendor datasheets), bytes/s, by name.
pub const BANDWIDTHS: [(&str, f64); 6] = [
    ("a100", 2.039e12),
    ("a100-40gb", 1.555e12),
    ("h100-sxm", 3.35e12),
    ("h100-pcie", 2.0e12),
    ("h200", 4.8e12),
    ("v100", 0.9e12),
];

/// The bandwidth of a [`BANDWIDTHS`] name, or of a number of bytes/s (`2e12`).
pub fn bandwidth(spec: &str) -> Result<f64> {
    let key = spec.trim().to_ascii_lowercase();
    if let Some((_, w)) = BANDWIDTHS.iter().find(|(n, _)| *n == key) {
        return Ok(*w);
    }
    match key.parse::<f64>() {
        Ok(w) if w > 0.0 && w.is_finite() => Ok(w),
        _ => Err(AnalysisError::InvalidInput {
            what: "bandwidth",
            msg: format!(
                "{spec:?} is neither a positive number of bytes/s nor one of {}",
                BANDWIDTHS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ),
        }),
    }
}

/// Which phase of inference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Phase {
    /// The whole prompt at once: M = B·S tokens.
    Prefill,
    /// One new token per sequence over S cached ones.
    Decode,
}

/// Whether an op is limited by bandwidth or by arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Bound {
    /// Intensity below the machine balance.
    Memory,
    /// Intensity at or above it.
    Compute,
}

/// One op in the roofline (per layer, or once for the head).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RooflineOp {
    /// What it is.
    pub name: String,
    /// FLOPs.
    pub flops: f64,
    /// Bytes moved.
    pub bytes: f64,
    /// FLOPs per byte.
    pub intensity: f64,
    /// min(peak, intensity · bandwidth), FLOP/s.
    pub attainable: f64,
    /// Which roof limits it.
    pub bound: Bound,
    /// Lower bound on its time: flops / attainable, seconds.
    pub seconds: f64,
    /// Times it runs per forward pass (layers, or 1).
    pub count: u64,
}

/// The roofline of one forward pass (prefill) or one decode step.
#[derive(Clone, Debug, Serialize)]
pub struct Roofline {
    /// The architecture.
    pub arch: Arch,
    /// Prefill or decode.
    pub phase: Phase,
    /// Sequences B.
    pub batch: u64,
    /// Tokens per sequence S (prefill) or cached context (decode).
    pub seq: u64,
    /// Bytes per element e (weights, activations, KV cache; 0.5625 for Q4_0's 4.5 bits).
    pub elem_bytes: f64,
    /// Peak FLOP/s P.
    pub peak_flops: f64,
    /// Bandwidth W, bytes/s.
    pub bandwidth: f64,
    /// Machine balance P/W, FLOPs per byte.
    pub balance: f64,
    /// The ops.
    pub ops: Vec<RooflineOp>,
    /// Total FLOPs of the pass.
    pub flops: f64,
    /// Total bytes of the pass.
    pub bytes: f64,
    /// Σ op time lower bounds, seconds.
    pub seconds: f64,
}

fn op(name: &str, flops: f64, bytes: f64, count: u64, peak: f64, bw: f64) -> RooflineOp {
    let intensity = flops / bytes;
    let attainable = peak.min(intensity * bw);
    RooflineOp {
        name: name.to_string(),
        flops,
        bytes,
        intensity,
        attainable,
        bound: if intensity < peak / bw { Bound::Memory } else { Bound::Compute },
        seconds: flops / attainable,
        count,
    }
}

/// A matrix product (M,K)·(K,N) with e-byte elements.
fn gemm(name: &str, (m, k, n): (f64, f64, f64), e: f64, count: u64, peak: f64, bw: f64) -> RooflineOp {
    op(name, 2.0 * m * n * k, e * (m * k + k * n + m * n), count, peak, bw)
}

/// The roofline of `arch` for `phase` on `batch` sequences of `seq` tokens, `elem_bytes` per
/// element, on a device of `peak_flops` FLOP/s and `bandwidth` bytes/s; see the module docs.
pub fn roofline(
    arch: &Arch,
    phase: Phase,
    batch: u64,
    seq: u64,
    elem_bytes: f64,
    peak_flops: f64,
    bandwidth: f64,
) -> Result<Roofline> {
    arch.validate()?;
    let bad = |what: &'static str, msg: String| AnalysisError::InvalidInput { what, msg };
    if batch == 0 || seq == 0 || !(elem_bytes > 0.0 && elem_bytes.is_finite()) {
        return Err(bad(
            "roofline",
            format!("batch {batch}, seq {seq} and element bytes {elem_bytes} must be positive"),
        ));
    }
    if !(peak_flops > 0.0 && peak_flops.is_finite() && bandwidth > 0.0 && bandwidth.is_finite()) {
        return Err(bad(
            "roofline",
            format!("peak {peak_flops} FLOP/s and bandwidth {bandwidth} B/s must be positive"),
        ));
    }
    arch.check_seq("seq", seq)?;
    let (b, s, e) = (batch as f64, seq as f64, elem_bytes);
    let (c, h, hkv, d, f) =
        (arch.d_model as f64, arch.n_heads as f64, arch.n_kv_heads as f64, arch.head_dim() as f64, arch.d_ff as f64);
    let (p, w, l) = (peak_flops, bandwidth, arch.n_layers);
    let m = match phase {
        Phase::Prefill => b * s,
        Phase::Decode => b,
    };
    let mut ops = vec![
        gemm("qkv projection", (m, c, (h + 2.0 * hkv) * d), e, l, p, w),
        match phase {
            // Q, K, V read once and the output written once (fused, no S×S matrix).
            Phase::Prefill => {
                op("attention (fused)", 4.0 * b * h * s * s * d, e * b * s * (2.0 * h + 2.0 * hkv) * d, l, p, w)
            }
            // One query per sequence over S cached keys and values.
            Phase::Decode => op(
                "attention over the KV cache",
                4.0 * b * h * s * d,
                e * b * (2.0 * h * d + 2.0 * s * hkv * d),
                l,
                p,
                w,
            ),
        },
        gemm("attention output", (m, h * d, c), e, l, p, w),
    ];
    match (arch.moe, arch.mlp) {
        (None, MlpKind::Gelu) => {
            ops.push(gemm("MLP up", (m, c, f), e, l, p, w));
            ops.push(gemm("MLP down", (m, f, c), e, l, p, w));
        }
        (None, MlpKind::SwiGlu) => {
            ops.push(gemm("MLP gate + up", (m, c, 2.0 * f), e, l, p, w));
            ops.push(gemm("MLP down", (m, f, c), e, l, p, w));
        }
        (Some(moe), kind) => {
            // m tokens × k routed rows; under uniform routing they touch
            // E·(1 − (1 − k/E)^m) distinct experts, each of whose weights is read once.
            let (ne, k) = (moe.experts as f64, moe.top_k as f64);
            let touched = ne * (1.0 - (1.0 - k / ne).powf(m));
            let (mats, acts) = match kind {
                MlpKind::Gelu => (2.0, 2.0 * c + 2.0 * f),
                MlpKind::SwiGlu => (3.0, 2.0 * c + 3.0 * f),
            };
            ops.push(gemm("MoE router", (m, c, ne), e, l, p, w));
            let flops = 2.0 * m * k * mats * c * f;
            ops.push(op("MoE experts (k of E)", flops, e * (touched * mats * c * f + m * k * acts), l, p, w));
        }
    }
    if arch.family == Family::Decoder {
        ops.push(gemm("LM head", (m, c, arch.vocab_size as f64), e, 1, p, w));
    }
    let total = |g: fn(&RooflineOp) -> f64| ops.iter().map(|o| g(o) * o.count as f64).sum::<f64>();
    let (flops, bytes, seconds) = (total(|o| o.flops), total(|o| o.bytes), total(|o| o.seconds));
    Ok(Roofline {
        arch: arch.clone(),
        phase,
        batch,
        seq,
        elem_bytes,
        peak_flops,
        bandwidth,
        balance: peak_flops / bandwidth,
        ops,
        flops,
        bytes,
        seconds,
    })
}

impl Report for Roofline {
    fn text(&self) -> String {
        let what = match self.phase {
            Phase::Prefill => format!("prefill of B={} × S={} tokens", self.batch, self.seq),
            Phase::Decode => format!("one decode step, B={} sequences over S={} cached tokens", self.batch, self.seq),
        };
        let mut t = Table::new(
            &format!(
                "roofline: {what}, {:.3} B/element; peak {}FLOP/s, bandwidth {}B/s, balance {:.1} FLOP/byte",
                self.elem_bytes,
                si(self.peak_flops),
                si(self.bandwidth),
                self.balance
            ),
            &["op", "× count", "FLOPs", "bytes", "FLOP/byte", "bound", "attainable FLOP/s", "time"],
        );
        for o in &self.ops {
            t.row(&[
                o.name.clone(),
                o.count.to_string(),
                si(o.flops),
                si(o.bytes),
                format!("{:.1}", o.intensity),
                format!("{:?}", o.bound).to_lowercase(),
                si(o.attainable),
                format!("{:.3} ms", 1e3 * o.seconds),
            ]);
        }
        format!(
            "{}\ntotal: {}FLOPs over {}B ({:.1} FLOP/byte); at best {:.3} ms ({:.1} % of it memory-bound)\n",
            t.render(),
            si(self.flops),
            si(self.bytes),
            self.flops / self.bytes,
            1e3 * self.seconds,
            100.0
                * self.ops.iter().filter(|o| o.bound == Bound::Memory).map(|o| o.seconds * o.count as f64).sum::<f64>()
                / self.seconds
        )
    }
}
