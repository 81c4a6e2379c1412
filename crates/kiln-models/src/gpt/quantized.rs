//! Post-training weight quantization of a [`Gpt`] (book ch. 22 "quantization"; notes 002/004):
//! every weight matrix — token embeddings (which are also the tied head), each block's
//! attention and MLP projections, an untied head — is rounded to one of the
//! [`WeightFormat`]s:
//!
//! - ggml's 32-blocks: `Q8_0` (int8, one scale per 32, 8-bit activations per block in the
//!   integer kernels), `Q4_1` (int4 with a scale and a minimum per 32: asymmetric), `Q4_0` (int4
//!   symmetric per 32);
//! - per-channel int8: `W8A16` (one scale per output row, activations unquantized) and `W8A8`
//!   (the same weights with activations quantized per token on the fly);
//! - group-wise int4: `INT4-G32/64/128` (an f16 scale and minimum per group: asymmetric).
//!
//! Learned positions, norms and biases stay f32 (they are < 2 % of a small model's bytes and
//! the most sensitive). Matrices whose rows are not whole blocks/groups stay f32 too.
//!
//! File format (`quantized.safetensors`): each quantized matrix's tensors under its parameter
//! name ([`QuantWeight::tensors`]: ggml blocks as `U8`; int8 codes `I8` + `.scales`; int4 nibbles
//! `U8` + `.scales`/`.mins` `F16`), with metadata `kiln.quant.<name>` = `"<FORMAT> <rows>
//! <cols>"`; the other parameters as `F32`. Written atomically (temporary file, then rename).

use super::{FeedForward, Gpt, GptConfig};
use kiln_core::module::Module;
use kiln_core::quant::QuantMatrix;
use kiln_core::{Device, Error, Result, Tensor};
use kiln_formats::quant::{QuantWeight, WeightFormat};
use kiln_nn::{Embedding, Linear};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

fn bad(msg: String) -> Error {
    Error::Invalid { op: "quantized Gpt", msg }
}

/// A layer that can hold its matrix quantized.
pub(super) enum Slot<'a> {
    Linear(&'a mut Linear),
    Embedding(&'a mut Embedding),
}

impl Slot<'_> {
    fn quantize(&mut self, q: Arc<dyn QuantMatrix>) -> Result<()> {
        match self {
            Slot::Linear(l) => l.quantize(q),
            Slot::Embedding(e) => e.quantize(q),
        }
    }
}

impl Gpt {
    /// The quantizable matrices by parameter name.
    pub(super) fn weight_slots(&mut self) -> Vec<(String, Slot<'_>)> {
        let mut v = vec![("transformer.wte.weight".to_string(), Slot::Embedding(&mut self.wte))];
        for (i, b) in self.h.iter_mut().enumerate() {
            let p = format!("transformer.h.{i}");
            v.push((format!("{p}.attn.c_attn.weight"), Slot::Linear(&mut b.attn.c_attn)));
            v.push((format!("{p}.attn.c_proj.weight"), Slot::Linear(&mut b.attn.c_proj)));
            match &mut b.mlp {
                FeedForward::Mlp(m) => {
                    v.push((format!("{p}.mlp.c_fc.weight"), Slot::Linear(&mut m.fc)));
                    v.push((format!("{p}.mlp.c_proj.weight"), Slot::Linear(&mut m.proj)));
                }
                FeedForward::SwiGlu(m) => {
                    v.push((format!("{p}.mlp.gate_proj.weight"), Slot::Linear(&mut m.gate)));
                    v.push((format!("{p}.mlp.up_proj.weight"), Slot::Linear(&mut m.up)));
                    v.push((format!("{p}.mlp.down_proj.weight"), Slot::Linear(&mut m.down)));
                }
            }
        }
        if let Some(h) = &mut self.lm_head {
            v.push(("lm_head.weight".to_string(), Slot::Linear(h)));
        }
        v
    }

    /// Quantizes the weight matrices in place, freeing their f32 copies: the token embeddings
    /// and an untied head to `embed_ty`, every other matrix to `ty`.
    /// Returns the quantized matrices by parameter name (what [`save_quantized`] writes).
    /// Matrices already quantized, or whose rows are not whole blocks/groups, are skipped.
    ///
    /// Embeddings and head apart: like llama.cpp's 4-bit mixes (which keep `output.weight` at 6–8
    /// bits), because the head's error lands on every logit directly — on a char-level model,
    /// 4-bit embeddings alone cost more perplexity than all the other matrices at 4 bits.
    pub fn quantize_weights(
        &mut self,
        ty: WeightFormat,
        embed_ty: WeightFormat,
    ) -> Result<Vec<(String, Arc<QuantWeight>)>> {
        self.round_to_nearest(|name| Some(if is_embedding(name) { embed_ty } else { ty }))
    }

    /// Rounds to nearest every matrix `type_of` gives a type (skipping those it maps to `None`,
    /// those already quantized, and those whose rows are not whole blocks).
    pub(super) fn round_to_nearest(
        &mut self,
        type_of: impl Fn(&str) -> Option<WeightFormat>,
    ) -> Result<Vec<(String, Arc<QuantWeight>)>> {
        let params: HashMap<String, Tensor> = self.named_parameters().into_iter().collect();
        let mut out = Vec::new();
        for (name, mut slot) in self.weight_slots() {
            let (Some(w), Some(ty)) = (params.get(&name), type_of(&name)) else { continue };
            let d = w.dims().to_vec();
            if d.len() != 2 || !d[1].is_multiple_of(ty.row_multiple()) {
                continue;
            }
            let q = QuantWeight::quantize(ty, d[0], d[1], &w.contiguous()?.to_vec::<f32>()?)
                .map_err(|e| bad(format!("{name}: {e}")))?;
            let q = Arc::new(q);
            slot.quantize(q.clone())?;
            out.push((name, q));
        }
        Ok(out)
    }
}

/// The token embeddings and an untied head: the matrices kept at `embed_ty`.
pub(super) fn is_embedding(name: &str) -> bool {
    name == "transformer.wte.weight" || name == "lm_head.weight"
}

/// Writes `model` (quantized by [`Gpt::quantize_weights`], which returned `quantized`) to
/// `path` as described in the module docs.
pub fn save_quantized(model: &Gpt, quantized: &[(String, Arc<QuantWeight>)], path: &Path) -> Result<()> {
    let io = |e: std::io::Error| bad(format!("writing {}: {e}", path.display()));
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut meta = HashMap::from([("kiln.format".to_string(), "quantized-gpt-v1".to_string())]);
    for (n, q) in quantized {
        for p in q.tensors().map_err(|e| bad(format!("{n}: {e}")))? {
            tensors.push((format!("{n}{}", p.suffix), p.dtype, p.shape, p.bytes));
        }
        meta.insert(format!("kiln.quant.{n}"), q.describe());
    }
    for (n, t) in model.named_parameters() {
        let v = t.contiguous()?.to_vec::<f32>()?;
        tensors.push((n, Dtype::F32, t.dims().to_vec(), v.iter().flat_map(|x| x.to_le_bytes()).collect()));
    }
    let views = tensors
        .iter()
        .map(|(n, d, shape, bytes)| {
            Ok((n.clone(), TensorView::new(*d, shape.clone(), bytes).map_err(|e| bad(e.to_string()))?))
        })
        .collect::<Result<Vec<_>>>()?;
    let data = safetensors::tensor::serialize(views, Some(meta)).map_err(|e| bad(e.to_string()))?;
    let tmp = path.with_extension("safetensors.tmp");
    std::fs::write(&tmp, data).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// A model of `cfg` from a file written by [`save_quantized`]: the quantized matrices stay in
/// their blocks, the rest is f32. A file that does not match `cfg` (missing or extra tensors,
/// wrong shapes or sizes, bad metadata) is an error.
pub fn load_quantized(cfg: GptConfig, path: &Path, device: &Device) -> Result<Gpt> {
    let bytes = std::fs::read(path).map_err(|e| bad(format!("reading {}: {e}", path.display())))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("{}: {e}", path.display())))?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(format!("{}: {e}", path.display())))?;
    let meta = header.metadata().clone().unwrap_or_default();
    if meta.get("kiln.format").map(String::as_str) != Some("quantized-gpt-v1") {
        return Err(bad(format!("{} is not a kiln quantized model (no kiln.format metadata)", path.display())));
    }
    cfg.validate()?;
    let mut model = {
        let _skip = kiln_nn::SkipInitGuard::new();
        Gpt::new(cfg, 0, device)?
    };
    let (mut used, mut matched) = (0, 0); // tensors read, quantized matrices placed
    for (name, mut slot) in model.weight_slots() {
        let Some(desc) = meta.get(&format!("kiln.quant.{name}")) else { continue };
        let get = |suffix: &str| {
            let view = st
                .tensor(&format!("{name}{suffix}"))
                .map_err(|e| kiln_formats::FormatError::TensorNotFound(format!("{name}{suffix} ({e})")))?;
            used += 1;
            Ok((view.dtype(), view.shape().to_vec(), view.data()))
        };
        let q = QuantWeight::from_tensors(desc, get).map_err(|e| bad(format!("{name}: {e}")))?;
        slot.quantize(Arc::new(q)).map_err(|e| bad(format!("{name}: {e}")))?;
        matched += 1;
    }
    let quant_entries = meta.keys().filter(|k| k.starts_with("kiln.quant.")).count();
    if matched != quant_entries {
        return Err(bad(format!("{quant_entries} quantized matrices in the file, {matched} of them match this model")));
    }
    for (name, p) in model.named_parameters() {
        let view = st.tensor(&name).map_err(|e| bad(format!("missing {name}: {e}")))?;
        if view.dtype() != Dtype::F32 || view.shape() != p.dims() {
            return Err(bad(format!(
                "{name}: expected F32 {:?}, found {:?} {:?}",
                p.dims(),
                view.dtype(),
                view.shape()
            )));
        }
        let v: Vec<f32> = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        p.assign_(&Tensor::from_vec(v, p.dims(), device)?)?;
        used += 1;
    }
    if used != st.len() {
        return Err(bad(format!("{} tensors in the file, {used} used by this model", st.len())));
    }
    Ok(model)
}
