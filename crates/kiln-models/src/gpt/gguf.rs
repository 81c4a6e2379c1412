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
use kiln_formats::{GgufFile, QMatrix};
use std::collections::HashMap;
use std::sync::Arc;

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
    // llama.cpp's key for sliding-window attention (Mistral-style models); absent: full attention
    if let Ok(w) = g.get_u64(&format!("{arch}.attention.sliding_window")) {
        cfg.sliding_window = Some(w as usize);
    }
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

/// GGUF tensor name → HF name within layer i.
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

/// Every HF tensor name of `cfg` with its GGUF name and, for q/k, the head count whose
/// llama.cpp row permutation must be undone.
fn gguf_names(cfg: &GptConfig) -> Vec<(String, String, Option<usize>)> {
    let mut out = vec![
        ("model.embed_tokens.weight".to_string(), "token_embd.weight".to_string(), None),
        ("model.norm.weight".to_string(), "output_norm.weight".to_string(), None),
    ];
    if !cfg.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), "output.weight".to_string(), None));
    }
    for i in 0..cfg.n_layer {
        for (src, dst) in LAYER {
            let heads = match *src {
                "attn_q" => Some(cfg.n_head),
                "attn_k" => Some(cfg.n_kv_head),
                _ => None,
            };
            out.push((format!("model.layers.{i}.{dst}.weight"), format!("blk.{i}.{src}.weight"), heads));
        }
    }
    out
}

/// GGUF tensor `name` dequantized to f32 on `device`, its q/k rows back in HF order.
fn load_f32(g: &GgufFile, name: &str, heads: Option<usize>, device: &Device) -> Result<Tensor> {
    let t = g.tensor(name, device).map_err(|e| bad(format!("{name}: {e}")))?;
    let t = if t.dtype() == DType::F32 { t } else { t.to_dtype(DType::F32)? };
    match heads {
        Some(h) => unpermute(&t, h),
        None => Ok(t),
    }
}

/// The tensors of a GGUF LLaMA-architecture file under Hugging Face's names, dequantized to f32
/// on `device`, q/k rows back in HF order, with the file's config.
pub fn hf_tensors_from_gguf(g: &GgufFile, device: &Device) -> Result<(GptConfig, HashMap<String, Tensor>)> {
    let cfg = config_from_gguf(g)?;
    let mut out = HashMap::new();
    for (hf, name, heads) in gguf_names(&cfg) {
        out.insert(hf, load_f32(g, &name, heads, device)?);
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

/// Row order of llama.cpp's q/k permutation undone on `rows` rows in `heads` heads: new row
/// (h, pair, i) is old row (h, i, pair) — the same reordering [`unpermute`] does on f32 rows.
fn unpermuted_rows(part: usize, rows: usize, heads: usize) -> Vec<(usize, usize)> {
    let d = rows / heads.max(1);
    (0..rows)
        .map(|new| {
            let (h, rest) = (new / d, new % d);
            let (pair, i) = (rest / (d / 2), rest % (d / 2));
            (part, h * d + 2 * i + pair)
        })
        .collect()
}

impl Gpt {
    /// Loads a GGUF LLaMA-architecture model keeping its matrices quantized in memory (token
    /// embeddings, attention q/k/v/o, the SwiGLU's gate/up/down, the output head: all but the
    /// norms), multiplied block by block ([`kiln_nn::Linear::quantize`]); norms are f32. A layer
    /// whose q/k/v differ in block type keeps an f32 `c_attn`. No f32 copy of a quantized matrix
    /// is ever made (the model is built with untouched zero pages, each weight then replaced).
    /// Returns the model and the number of matrices kept quantized.
    pub fn from_gguf_quantized(g: &GgufFile, device: &Device) -> Result<(Gpt, usize)> {
        let cfg = config_from_gguf(g)?;
        cfg.validate()?;
        let held = g.tensors().iter().map(|t| t.dims.iter().product::<u64>()).fold(0u64, u64::saturating_add);
        super::hf::check_held(cfg.num_params(), usize::try_from(held).unwrap_or(usize::MAX))?;
        let mut model = {
            let _skip = kiln_nn::SkipInitGuard::new();
            Gpt::new(cfg, 0, device)?
        };
        let (h, hkv) = (model.cfg.n_head, model.cfg.n_kv_head);
        let q = |name: String| QMatrix::from_gguf(g, &name).map_err(|e| bad(format!("{name}: {e}")));
        model.wte.quantize(Arc::new(q("token_embd.weight".into())?))?;
        let mut count = 1;
        if let Some(head) = &mut model.lm_head {
            head.quantize(Arc::new(q("output.weight".into())?))?;
            count += 1;
        }
        for (i, blk) in model.h.iter_mut().enumerate() {
            let p = |t: &str| format!("blk.{i}.{t}.weight");
            let (wq, wk, wv) = (q(p("attn_q"))?, q(p("attn_k"))?, q(p("attn_v"))?);
            let mut order = unpermuted_rows(0, wq.shape_rows(), h);
            order.extend(unpermuted_rows(1, wk.shape_rows(), hkv));
            order.extend((0..wv.shape_rows()).map(|r| (2, r)));
            if let Ok(qkv) = QMatrix::gather_rows(&[&wq, &wk, &wv], &order) {
                blk.attn.c_attn.quantize(Arc::new(qkv))?;
                count += 1;
            }
            blk.attn.c_proj.quantize(Arc::new(q(p("attn_output"))?))?;
            count += 1;
            if let super::FeedForward::SwiGlu(mlp) = &mut blk.mlp {
                mlp.gate.quantize(Arc::new(q(p("ffn_gate"))?))?;
                mlp.up.quantize(Arc::new(q(p("ffn_up"))?))?;
                mlp.down.quantize(Arc::new(q(p("ffn_down"))?))?;
                count += 3;
            }
        }
        // what is left as parameters (the norms; a c_attn that could not stay quantized) in f32
        let sources: HashMap<String, (String, Option<usize>)> =
            gguf_names(&model.cfg).into_iter().map(|(hf, name, heads)| (hf, (name, heads))).collect();
        super::hf::load_params(&model, |hf: &str| {
            let (name, heads) = sources.get(hf).ok_or_else(|| bad(format!("no GGUF tensor for {hf}")))?;
            load_f32(g, name, *heads, device)
        })?;
        Ok((model, count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GGUF v3 file with only metadata (no tensors).
    fn gguf(kvs: &[(&str, u32, Vec<u8>)]) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend((kvs.len() as u64).to_le_bytes());
        for (k, ty, v) in kvs {
            b.extend((k.len() as u64).to_le_bytes());
            b.extend(k.as_bytes());
            b.extend(ty.to_le_bytes());
            b.extend(v);
        }
        b
    }

    fn u32v(v: u32) -> Vec<u8> {
        v.to_le_bytes().to_vec()
    }

    #[test]
    fn reads_the_sliding_window() -> Result<()> {
        let s = |t: &str| [(t.len() as u64).to_le_bytes().to_vec(), t.as_bytes().to_vec()].concat();
        let mut kvs = vec![
            ("general.architecture", 8, s("llama")),
            ("llama.vocab_size", 4, u32v(50)),
            ("llama.context_length", 4, u32v(64)),
            ("llama.embedding_length", 4, u32v(32)),
            ("llama.block_count", 4, u32v(2)),
            ("llama.attention.head_count", 4, u32v(4)),
            ("llama.attention.head_count_kv", 4, u32v(2)),
            ("llama.feed_forward_length", 4, u32v(64)),
            ("llama.attention.layer_norm_rms_epsilon", 6, 1e-5f32.to_le_bytes().to_vec()),
        ];
        let full = config_from_gguf(&GgufFile::parse(&gguf(&kvs)).map_err(|e| bad(e.to_string()))?)?;
        assert_eq!(full.sliding_window, None);
        kvs.push(("llama.attention.sliding_window", 4, u32v(16)));
        let swa = config_from_gguf(&GgufFile::parse(&gguf(&kvs)).map_err(|e| bad(e.to_string()))?)?;
        assert_eq!(swa.sliding_window, Some(16));
        assert_eq!((swa.n_kv_head, swa.tie_word_embeddings), (2, true));
        Ok(())
    }
}
