//! `kiln bench generate`: prompt processing (prefill) and decoding speed of a pretrained model
//! (default: SmolLM2-135M-Instruct Q4_1 from `python3 tools/fetch_models.py smollm2`), and the
//! same for llama.cpp on the same GGUF, in the same run, when `llama_cpp` (llama-cpp-python)
//! imports — or, for a Hugging Face directory, for transformers (PyTorch eager, fp32, with its
//! KV cache) when it imports. Decoding is memory-bound: the report also gives the bytes of
//! weights streamed per decoded token and the bandwidth that implies.

use crate::generate;
use anyhow::{Context, Result};
use kiln_core::{no_grad, Device, Module, Tensor};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Options of `kiln bench generate`.
pub struct GenerateBench {
    /// Model file or directory (`None`: the cached SmolLM2 GGUF).
    pub model: Option<PathBuf>,
    /// Prompt tokens.
    pub prompt: usize,
    /// Decoded tokens.
    pub decode: usize,
    /// Threads (kiln's pool and llama.cpp's).
    pub threads: usize,
    /// Skip the llama.cpp baseline.
    pub no_llama: bool,
    /// Runs of each engine (alternating); the best is reported.
    pub repeats: usize,
    /// A `kiln quantize --type` format to quantize kiln's copy of the model to first.
    pub quantize: Option<String>,
}

const LLAMA_SCRIPT: &str = r#"
import json, sys, time
from llama_cpp import Llama
path, n_prompt, n_decode, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
llm = Llama(model_path=path, n_ctx=n_prompt + n_decode + 8, n_threads=threads, n_batch=512, verbose=False)
toks = [(i * 7919) % 1000 + 100 for i in range(n_prompt)]
t = time.perf_counter(); llm.eval(toks); prefill = time.perf_counter() - t
t = time.perf_counter()
for _ in range(n_decode):
    nxt = int(llm.scores[llm.n_tokens - 1].argmax()); llm.eval([nxt])
decode = time.perf_counter() - t
print(json.dumps({"prefill_tok_s": n_prompt / prefill, "decode_tok_s": n_decode / decode}))
"#;

const TRANSFORMERS_SCRIPT: &str = r#"
import json, sys, time, torch
from transformers import AutoModelForCausalLM
path, n_prompt, n_decode, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
m = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32).eval()
ids = torch.tensor([[(i * 7919) % 1000 + 100 for i in range(n_prompt)]])
with torch.no_grad():
    t = time.perf_counter(); out = m(ids, use_cache=True); prefill = time.perf_counter() - t
    past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
    t = time.perf_counter()
    for _ in range(n_decode):
        out = m(nxt, past_key_values=past, use_cache=True)
        past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
    decode = time.perf_counter() - t
print(json.dumps({"prefill_tok_s": n_prompt / prefill, "decode_tok_s": n_decode / decode}))
"#;

pub(crate) fn default_model() -> PathBuf {
    Path::new(".cache/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf").to_path_buf()
}

/// Runs the benchmark and prints the table.
pub fn run(args: &GenerateBench, device: &Device) -> Result<()> {
    let path = args.model.clone().unwrap_or_else(default_model);
    anyhow::ensure!(path.exists(), "{} is missing (run `python3 tools/fetch_models.py smollm2`)", path.display());
    anyhow::ensure!(args.prompt > 0 && args.decode > 0, "--prompt and --decode must be positive");
    let mut m = generate::load_model(&path, device)?;
    if let Some(name) = &args.quantize {
        let fmt = kiln_formats::quant::WeightFormat::from_name(name).with_context(|| {
            format!("--quantize {name:?}: expected one of {}", kiln_formats::quant::WeightFormat::NAMES)
        })?;
        let q = m.model.quantize_weights(fmt, fmt)?;
        anyhow::ensure!(!q.is_empty(), "--quantize {name}: no f32 matrix of this model fits the format");
        println!("kiln's copy: {} matrices quantized to {}", q.len(), fmt.name());
    }
    let n = m.model.cfg.n_positions;
    anyhow::ensure!(args.prompt + args.decode <= n, "prompt + decode exceed the model's context of {n}");
    // bytes of weights streamed per decoded token: f32 parameters + quantized matrices
    let params = m.model.num_params();
    let quant = m.model.quantized_matrices();
    let quant_bytes: usize = quant.iter().map(|q| q.bytes()).sum();
    let quant_params: usize = quant.iter().map(|q| q.shape().0 * q.shape().1).sum();
    let bytes = params as f64 * 4.0 + quant_bytes as f64;
    println!(
        "kiln bench generate — {} ({:.1} M parameters, {:.1} M of them quantized in memory); prompt {} tokens, decode {} tokens, {} threads, best of {} runs",
        path.display(),
        (params + quant_params) as f64 / 1e6,
        quant_params as f64 / 1e6,
        args.prompt,
        args.decode,
        args.threads,
        args.repeats
    );
    // The baseline: llama.cpp for a GGUF file, transformers for an HF directory.
    let baseline = match (args.no_llama, path.extension().is_some_and(|e| e == "gguf"), path.is_dir()) {
        (true, _, _) => None,
        (false, true, _) => Some(("llama.cpp", LLAMA_SCRIPT, "same GGUF, quantized in memory")),
        (false, false, true) => Some(("transformers", TRANSFORMERS_SCRIPT, "PyTorch eager, fp32")),
        _ => None,
    };
    // kiln and the baseline alternate, so a noisy neighbour slows both alike; best run of each
    let (mut kiln, mut base) = ((0f64, 0f64), None::<(f64, f64)>);
    for _ in 0..args.repeats.max(1) {
        let (pf, dc) = kiln_once(&m.model, args, device)?;
        kiln = (kiln.0.max(pf), kiln.1.max(dc));
        if let Some((name, script, _)) = baseline {
            match baseline_once(script, &path, args)? {
                Ok((lp, ld)) => base = Some(base.map_or((lp, ld), |(a, b)| (a.max(lp), b.max(ld)))),
                Err(why) => {
                    println!("{name:<12} skipped: {why}");
                    break;
                }
            }
        }
    }
    let (pf, dc) = kiln;
    println!(
        "kiln         prefill {pf:8.1} tok/s   decode {dc:7.1} tok/s   ({:.3} GB of weights per token → {:.1} GB/s)",
        bytes / 1e9,
        bytes * dc / 1e9
    );
    if let (Some((lp, ld)), Some((name, _, what))) = (base, baseline) {
        println!("{name:<12} prefill {lp:8.1} tok/s   decode {ld:7.1} tok/s   ({what})");
        println!("kiln / {name}: prefill {:.2}×, decode {:.2}×", pf / lp.max(1e-9), dc / ld.max(1e-9));
    }
    Ok(())
}

/// One kiln run: (prefill tok/s, decode tok/s), greedy, from empty caches.
fn kiln_once(model: &kiln_models::gpt::Gpt, args: &GenerateBench, device: &Device) -> Result<(f64, f64)> {
    let toks: Vec<i64> = (0..args.prompt).map(|i| ((i * 7919) % 1000 + 100) as i64).collect();
    let (prefill, decode) = no_grad(|| -> Result<(f64, f64)> {
        let mut caches = model.new_caches(1, args.prompt + args.decode, device)?;
        let x = Tensor::from_vec(toks, &[1, args.prompt], device)?;
        let t = Instant::now();
        let mut logits = model.forward_last(&x, Some(&mut caches))?; // (1,1,V)
        let prefill = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let greedy = kiln_infer::Sampler { temperature: 0.0, ..Default::default() };
        for i in 0..args.decode {
            let next = greedy.sample(&logits.to_vec::<f32>()?, i as u64)?;
            logits = model.forward_last(&Tensor::from_vec(vec![next as i64], &[1, 1], device)?, Some(&mut caches))?;
        }
        Ok((prefill, t.elapsed().as_secs_f64()))
    })?;
    Ok((args.prompt as f64 / prefill, args.decode as f64 / decode))
}

/// One baseline run (`script`: llama.cpp or transformers) in a python3 subprocess:
/// Ok(Ok(tok/s)), or Ok(Err(why it could not run)).
fn baseline_once(script: &str, path: &Path, args: &GenerateBench) -> Result<std::result::Result<(f64, f64), String>> {
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .args([args.prompt.to_string(), args.decode.to_string(), args.threads.to_string()])
        .output()
        .context("running python3")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Ok(Err(err.lines().last().unwrap_or("the baseline does not import").to_string()));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("baseline script output")?;
    Ok(Ok((v["prefill_tok_s"].as_f64().unwrap_or(0.0), v["decode_tok_s"].as_f64().unwrap_or(0.0))))
}
