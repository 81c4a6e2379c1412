//! GPTQ post-training quantization of a [`Gpt`] (Frantar et al. 2022; seed ch. 22): the blocks'
//! weight matrices are quantized one block at a time, each from the Gram matrix `Σ x·xᵀ` of the
//! inputs it sees on calibration text ([`kiln_nn::InputGram`]) with the earlier blocks already
//! quantized — GPTQ's sequential mode, so each block learns to compensate the error of the ones
//! before it. The per-matrix solver is [`kiln_formats::quant::gptq_quantize_weight`]; the output
//! is the same format as round-to-nearest's ([`Gpt::quantize_weights`]: ggml blocks, per-channel
//! int8 or group-wise int4), loaded and multiplied by the same kernels.
//!
//! Token embeddings (also the tied head) and an untied head are rounded to nearest at
//! `embed_ty`, as in the GPTQ paper, which leaves embeddings and head at full precision.

use super::quantized::{is_embedding, Slot};
use super::Gpt;
use kiln_core::{no_grad, Error, Result, Tensor};
use kiln_formats::quant::{gptq_quantize_weight, QuantWeight, WeightFormat};
use kiln_nn::InputGram;
use std::sync::Arc;

fn bad(msg: String) -> Error {
    Error::Invalid { op: "GPTQ", msg }
}

impl Gpt {
    /// Quantizes every weight matrix: the blocks' by GPTQ at `ty` with calibration token
    /// batches `calib` (each (B, T) I64) and relative dampening `damp` (0.01 in the paper), the
    /// token embeddings and an untied head by rounding to nearest at `embed_ty`. Returns the
    /// quantized matrices by parameter name, as [`Gpt::quantize_weights`] does.
    pub fn quantize_gptq(
        &mut self,
        ty: WeightFormat,
        embed_ty: WeightFormat,
        calib: &[Tensor],
        damp: f64,
    ) -> Result<Vec<(String, Arc<QuantWeight>)>> {
        if calib.is_empty() {
            return Err(bad("no calibration batches".into()));
        }
        // Embeddings first, so the calibration activations flow from the quantized table.
        let mut out = self.round_to_nearest(|name| is_embedding(name).then_some(embed_ty))?;
        for x in calib {
            self.check_tokens(x, 0)?;
        }
        // Each calibration batch's input to the current block: one block forward per block and
        // batch to observe, one more through the quantized block to advance (not a whole-model
        // pass per block).
        let mut xs: Vec<Tensor> = no_grad(|| calib.iter().map(|x| self.embed(x, 0, false, 0)).collect::<Result<_>>())?;
        for b in 0..self.h.len() {
            let prefix = format!("transformer.h.{b}.");
            // Observe the inputs of the block's full-precision matrices whose rows are whole
            // blocks (an already quantized one has no f32 weight to solve for).
            let mut grams = Vec::new();
            for (name, slot) in self.weight_slots() {
                let Slot::Linear(l) = slot else { continue };
                let d = l.weight.dims();
                if name.starts_with(&prefix)
                    && l.quant.is_none()
                    && d.len() == 2
                    && d[1].is_multiple_of(ty.row_multiple())
                {
                    let g = Arc::new(InputGram::new(d[1]));
                    l.calibration = Some(g.clone());
                    grams.push((name, g));
                }
            }
            let seen = no_grad(|| xs.iter().try_for_each(|x| self.block(b, x).map(drop)));
            for (name, slot) in self.weight_slots() {
                let Slot::Linear(l) = slot else { continue };
                // detached even when the calibration pass failed
                let Some(g) = l.calibration.take().filter(|_| grams.iter().any(|(n, _)| *n == name)) else {
                    continue;
                };
                if seen.is_err() {
                    continue;
                }
                let (rows, cols) = (l.weight.dims()[0], l.weight.dims()[1]);
                let (gram, _) = g.get()?;
                let w = l.weight.contiguous()?.to_vec::<f32>()?;
                let q =
                    gptq_quantize_weight(ty, rows, cols, &w, &gram, damp).map_err(|e| bad(format!("{name}: {e}")))?;
                let q = Arc::new(q);
                l.quantize(q.clone())?;
                out.push((name, q));
            }
            seen?;
            xs = no_grad(|| xs.iter().map(|x| self.block(b, x)).collect::<Result<_>>())?;
        }
        Ok(out)
    }
}
