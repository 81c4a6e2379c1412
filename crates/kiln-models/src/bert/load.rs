//! Loading BERT from Hugging Face checkpoints: `config.json` plus `model.safetensors` (or shards
//! listed in `model.safetensors.index.json`).
//!
//! The weight-name table ([`Bert::hf_weight_table`]) maps every HF tensor name to the kiln tensor
//! (or row block of one) it fills:
//!
//! | HF name | kiln tensor |
//! |---|---|
//! | `embeddings.{word,position,token_type}_embeddings.weight` | the same name |
//! | `embeddings.LayerNorm.{weight,bias}` | the same name |
//! | `encoder.layer.{i}.attention.self.query.{weight,bias}` | rows `[0, C)` of `…attention.self.qkv.…` |
//! | `encoder.layer.{i}.attention.self.key.{weight,bias}` | rows `[C, 2C)` of `…attention.self.qkv.…` |
//! | `encoder.layer.{i}.attention.self.value.{weight,bias}` | rows `[2C, 3C)` of `…attention.self.qkv.…` |
//! | `encoder.layer.{i}.{attention.output,intermediate,output}.dense.…`, `….LayerNorm.…` | the same name |
//! | `pooler.dense.{weight,bias}` (optional) | the same name |
//!
//! Checkpoint names may carry a `bert.` prefix (`BertForMaskedLM` and friends) and old
//! LayerNorm names (`gamma`/`beta`); tensors the encoder does not use (`embeddings.position_ids`,
//! `cls.*` heads) are ignored. f16/bf16/f64 weights are converted to f32.

use super::{Bert, BertConfig};
use kiln_core::module::Module;
use kiln_core::{Device, Error, Result, Tensor};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

const OP: &str = "Bert::load";

fn bad(msg: String) -> Error {
    Error::Invalid { op: OP, msg }
}

/// The names a checkpoint may store HF tensor `name` under, most likely first: as is, with the
/// `bert.` prefix, and with LayerNorm's old `gamma`/`beta` names.
fn candidates(name: &str) -> Vec<String> {
    let mut bases = vec![name.to_string()];
    if let Some(stem) = name.strip_suffix("LayerNorm.weight") {
        bases.push(format!("{stem}LayerNorm.gamma"));
    } else if let Some(stem) = name.strip_suffix("LayerNorm.bias") {
        bases.push(format!("{stem}LayerNorm.beta"));
    }
    let prefixed: Vec<String> = bases.iter().map(|b| format!("bert.{b}")).collect();
    bases.extend(prefixed);
    bases
}

/// The checkpoint tensor stored for HF name `name`, if any.
fn lookup<'a>(tensors: &'a HashMap<String, Tensor>, name: &str) -> Option<(String, &'a Tensor)> {
    candidates(name).into_iter().find_map(|n| tensors.get(&n).map(|t| (n, t)))
}

/// Reads every tensor of the checkpoint in `dir`: `model.safetensors`, else the shards named by
/// `model.safetensors.index.json`. Returns the tensors (as stored, any dtype) and a description
/// of where they came from, for error messages.
pub fn read_checkpoint(dir: &Path, device: &Device) -> Result<(HashMap<String, Tensor>, String)> {
    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    let (files, source) = if single.is_file() {
        (vec![single.clone()], single.display().to_string())
    } else if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|e| bad(format!("{}: {e}", index.display())))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("{}: not JSON: {e}", index.display())))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| bad(format!("{}: no \"weight_map\" object", index.display())))?;
        let mut shards = BTreeSet::new();
        for (name, file) in map {
            let file =
                file.as_str().ok_or_else(|| bad(format!("{}: shard of {name} is not a string", index.display())))?;
            if file.contains('/') || file.contains('\\') || file.starts_with('.') {
                return Err(bad(format!("{}: shard name {file:?} must be a plain file name", index.display())));
            }
            shards.insert(file.to_string());
        }
        (shards.into_iter().map(|f| dir.join(f)).collect(), index.display().to_string())
    } else {
        let hint = if dir.join("pytorch_model.bin").exists() {
            " (only safetensors weights are supported; pytorch_model.bin is not)"
        } else {
            ""
        };
        return Err(bad(format!("{}: no model.safetensors or model.safetensors.index.json{hint}", dir.display())));
    };
    let mut tensors = HashMap::new();
    for file in files {
        let (ts, _) = kiln_core::safetensors::load(&file, device)?;
        tensors.extend(ts);
    }
    Ok((tensors, source))
}

impl Bert {
    /// Loads `dir/config.json` and the checkpoint in `dir` (see [`read_checkpoint`]); the pooler
    /// is kept when the checkpoint has `pooler.dense.weight`. Errors name the file and, for a
    /// missing or mis-shaped tensor, the tensor and both shapes.
    pub fn from_dir(dir: &Path, device: &Device) -> Result<Bert> {
        let cfg = BertConfig::from_file(&dir.join("config.json"))?;
        let (tensors, source) = read_checkpoint(dir, device)?;
        Bert::from_tensors(cfg, &tensors, &source, device)
    }

    /// A model of `cfg`'s shape filled from `tensors` (HF names, see the module docs); `source`
    /// names where they came from in error messages.
    pub fn from_tensors(
        cfg: BertConfig,
        tensors: &HashMap<String, Tensor>,
        source: &str,
        device: &Device,
    ) -> Result<Bert> {
        let pooler = lookup(tensors, "pooler.dense.weight").is_some();
        let extra = format!("encoder.layer.{}.output.dense.weight", cfg.num_hidden_layers);
        if let Some((name, _)) = lookup(tensors, &extra) {
            return Err(bad(format!(
                "{source}: has tensor {name} but the config has num_hidden_layers = {}",
                cfg.num_hidden_layers
            )));
        }
        // refuse a config far larger than the checkpoint before allocating it
        crate::gpt::check_size(cfg.num_params(pooler), tensors).map_err(|e| bad(format!("{source}: {e}")))?;
        let model = Bert::build(cfg, pooler, false, 0, device)?;
        model.load_hf_weights(tensors, source)?;
        Ok(model)
    }

    /// The weight-name table: every HF tensor name with the kiln tensor it fills — a view of a
    /// parameter (sharing its storage), so writing into it loads the parameter. The fused
    /// `attention.self.qkv` (3C, C) weight and (3C) bias appear as HF's `query`, `key`, `value`
    /// row blocks of C rows each. Saving this table with `kiln_core::safetensors::save` writes an
    /// HF-compatible checkpoint.
    pub fn hf_weight_table(&self) -> Result<Vec<(String, Tensor)>> {
        let c = self.cfg.hidden_size;
        let mut out = Vec::new();
        for (name, p) in self.named_parameters() {
            let p = p.detach();
            match name.split_once("attention.self.qkv.") {
                Some((stem, leaf)) => {
                    for (i, part) in ["query", "key", "value"].into_iter().enumerate() {
                        out.push((format!("{stem}attention.self.{part}.{leaf}"), p.narrow(0, i * c, c)?));
                    }
                }
                None => out.push((name, p)),
            }
        }
        Ok(out)
    }

    /// Copies every tensor of the weight-name table from `tensors` (HF names, optionally
    /// `bert.`-prefixed), converting float dtypes to f32. Fails on the first missing tensor,
    /// wrong shape or non-float dtype, naming `source`, the tensor and the shapes.
    pub fn load_hf_weights(&self, tensors: &HashMap<String, Tensor>, source: &str) -> Result<()> {
        for (name, dst) in self.hf_weight_table()? {
            let (found, src) = lookup(tensors, &name).ok_or_else(|| bad(format!("{source}: missing tensor {name}")))?;
            if src.dims() != dst.dims() {
                return Err(bad(format!(
                    "{source}: tensor {found} has shape {:?}, but the config needs {:?}",
                    src.dims(),
                    dst.dims()
                )));
            }
            if !src.dtype().is_float() {
                return Err(bad(format!("{source}: tensor {found} has dtype {}, expected a float type", src.dtype())));
            }
            dst.assign_(&src.to_dtype(dst.dtype())?)?;
        }
        Ok(())
    }
}
