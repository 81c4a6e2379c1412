//! llama.cpp's GGUF files of the LLaMA architecture (`general.architecture = "llama"`, e.g.
//! SmolLM2, TinyLlama, LLaMA 2/3) → [`Gpt`], the weights dequantized to f32 on load.
//!
//! The GGUF tensors are first renamed to Hugging Face's LLaMA names (the table below), so the
//! model is then built by the same name table as an HF checkpoint ([`Gpt::from_hf_tensors`]), and
//! [`hf_tensors_from_gguf`] doubles as the GGUF → HF converter. One reordering is undone on the
//! way: llama.cpp's converter permutes the rows of `W_q` and `W_k` within each head from HF's
//! rotate-half order (dims i and i + D/2 are a RoPE pair) to adjacent pairs (2i, 2i + 1), its own
//! RoPE layout; kiln's RoPE is HF's, so the rows go back: per head, (D/2, 2) → (2, D/2).

use super::{Gpt, GptConfig};
use kiln_core::{DType, Device, Error, Result, Tensor};
use kiln_formats::GgufFile;
use std::collections::HashMap;

fn bad(msg: String) -> Error {
    Error::Invalid { op: "gguf model", msg }
}

/// The kiln config of a GGUF LLaMA-architecture file, from its `llama.*` metadata.
pub fn config_from_gguf(g: &GgufFile) -> Result<GptConfig> {
    let arch = g.get_str("general.architecture")?;
    if arch != "llama" {
        return Err(bad(format!("general.architecture {arch:?}: kiln runs GGUF files of the \"llama\" architecture")));
    }
    let int = |k: &str| -> Result<usize> { Ok(g.get_u64(&format!("{arch}.{k}"))? as usize) };
    let vocab = match g.get_u64(&format!("{arch}.vocab_size")) {
        Ok(v) => v as usize,
        Err(_) => g.get_array("tokenizer.ggml.tokens")?.len(),
    };
    let heads = int("attention.head_count")?;
    let mut cfg = GptConfig::llama(
        vocab,
        int("context_length")?,
        int("embedding_length")?,
        int("block_count")?,
        heads,
        int("attention.head_count_kv").unwrap_or(heads),
        int("feed_forward_length")?,
    );
    cfg.layer_norm_epsilon = g.get_f32(&format!("{arch}.attention.layer_norm_rms_epsilon"))? as f64;
    cfg.rope_theta = g.get_f32(&format!("{arch}.rope.freq_base")).map_or(10_000.0, |v| v as f64);
    cfg.tie_word_embeddings = g.tensor_info("output.weight").is_none();
    if let Ok(d) = g.get_u64(&format!("{arch}.rope.dimension_count")) {
        if d as usize != cfg.head_dim() {
            return Err(bad(format!("rope.dimension_count {d} ≠ head dim {} (partial RoPE)", cfg.head_dim())));
        }
    }
    cfg.validate()?;
    Ok(cfg)
}

/// Undoes llama.cpp's q/k row permutation for `heads` heads: rows (h, i, pair) → (h, pair, i).
fn unpermute(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (rows, cols) = (w.dims()[0], w.dims()[1]);
    let d = rows / heads.max(1);
    if heads == 0 || !rows.is_multiple_of(heads) || !d.is_multiple_of(2) {
        return Err(bad(format!("cannot split {rows} rows into {heads} heads of even size")));
    }
    w.reshape(&[heads, d / 2, 2, cols])?.transpose(1, 2)?.contiguous()?.reshape(&[rows, cols])
}

/// The tensors of a GGUF LLaMA-architecture file under Hugging Face's names, dequantized to f32
/// on `device`, q/k rows back in HF order, with the file's config.
pub fn hf_tensors_from_gguf(g: &GgufFile, device: &Device) -> Result<(GptConfig, HashMap<String, Tensor>)> {
    let cfg = config_from_gguf(g)?;
    let load = |name: &str| -> Result<Tensor> {
        let t = g.tensor(name, device).map_err(|e| bad(format!("{name}: {e}")))?;
        if t.dtype() == DType::F32 {
            Ok(t)
        } else {
            t.to_dtype(DType::F32)
        }
    };
    let mut out = HashMap::new();
    out.insert("model.embed_tokens.weight".to_string(), load("token_embd.weight")?);
    out.insert("model.norm.weight".to_string(), load("output_norm.weight")?);
    if !cfg.tie_word_embeddings {
        out.insert("lm_head.weight".to_string(), load("output.weight")?);
    }
    // GGUF name → HF name within layer i
    const LAYER: &[(&str, &str)] = &[
        ("attn_norm", "input_layernorm"),
        ("attn_q", "self_attn.q_proj"),
        ("attn_k", "self_attn.k_proj"),
        ("attn_v", "self_attn.v_proj"),
        ("attn_output", "self_attn.o_proj"),
        ("ffn_norm", "post_attention_layernorm"),
        ("ffn_gate", "mlp.gate_proj"),
        ("ffn_up", "mlp.up_proj"),
        ("ffn_down", "mlp.down_proj"),
    ];
    for i in 0..cfg.n_layer {
        for (src, dst) in LAYER {
            let mut t = load(&format!("blk.{i}.{src}.weight"))?;
            match *src {
                "attn_q" => t = unpermute(&t, cfg.n_head)?,
                "attn_k" => t = unpermute(&t, cfg.n_kv_head)?,
                _ => {}
            }
            out.insert(format!("model.layers.{i}.{dst}.weight"), t);
        }
    }
    Ok((cfg, out))
}

impl Gpt {
    /// Loads a GGUF LLaMA-architecture model (weights dequantized to f32).
    pub fn from_gguf(g: &GgufFile, device: &Device) -> Result<Gpt> {
        let (cfg, tensors) = hf_tensors_from_gguf(g, device)?;
        Gpt::from_hf_tensors(cfg, &tensors)
    }
}
