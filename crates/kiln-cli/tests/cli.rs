//! The `kiln` binary end to end: a short training run, resume, generation, and one clear error
//! line (never a panic, nothing overwritten) for each kind of bad input.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::Path;
use std::process::{Command, Output};

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln")).args(args).env("KILN_NUM_THREADS", "2").output().unwrap()
}

fn text(path: &Path) -> String {
    std::fs::write(path, "the quick brown fox jumps over the lazy dog. ".repeat(400)).unwrap();
    path.display().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn train_resume_generate() {
    let dir = tempfile::tempdir().unwrap();
    let data = text(&dir.path().join("fox.txt"));
    let out = dir.path().join("run");
    let out_s = out.display().to_string();
    let o = kiln(&["train", "--data", &data, "--out", &out_s, "--steps", "6", "--sample-tokens", "20"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.join("checkpoint/model.safetensors").exists());
    assert_eq!(std::fs::read_to_string(out.join("metrics.jsonl")).unwrap().lines().count(), 6);
    let png = std::fs::read(out.join("loss.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5000, "loss.png is not a drawn PNG");
    // Training again into the same run without --resume refuses and leaves the run alone.
    let before = std::fs::read(out.join("checkpoint/model.safetensors")).unwrap();
    let o = kiln(&["train", "--data", &data, "--out", &out_s, "--steps", "6"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--resume"), "{}", stderr(&o));
    assert_eq!(std::fs::read(out.join("checkpoint/model.safetensors")).unwrap(), before);
    // Resume to 8 steps.
    let o = kiln(&["train", "--out", &out_s, "--resume", "--steps", "8", "--sample-tokens", "0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("resumed at step 6"), "{}", stderr(&o));
    let o = kiln(&["generate", "--run", &out_s, "--prompt", "the ", "--max-new-tokens", "15", "--seed", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.starts_with("the ") && s.trim_end().chars().count() >= 4 + 10, "{s:?}");
    // kiln quantize to the group-wise / per-channel formats, then generate from the result
    let q = dir.path().join("int4").display().to_string();
    let o = kiln(&["quantize", "--run", &out_s, "--type", "int4-g64", "--embed-type", "w8a8", "--out", &q]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("to INT4-G64 (embeddings/head W8A8)"));
    let o = kiln(&["generate", "--run", &q, "--prompt", "the ", "--max-new-tokens", "8", "--seed", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // the serving benchmark on it, in-process and over HTTP (kiln's server on an ephemeral port)
    let o = kiln(&[
        "bench",
        "serve",
        "--model",
        &q,
        "--clients",
        "2",
        "--requests",
        "1",
        "--prompt",
        "4",
        "--max-tokens",
        "5",
        "--http",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("over HTTP") && s.contains("| 2 | 2 | 0 | 10 |"), "{s}");
    let o = kiln(&["quantize", "--run", &out_s, "--type", "int3", "--out", &q]);
    assert!(!o.status.success() && stderr(&o).contains("int4-g128"), "{}", stderr(&o));
    // kiln inspect on the run: logit lens table, one heatmap per layer, a probe table.
    let pics = dir.path().join("inspect");
    let o = kiln(&[
        "inspect",
        "--model",
        &out_s,
        "--prompt",
        "the quick brown",
        "--out",
        &pics.display().to_string(),
        "--probe",
        "next-space",
        "--probe-text",
        &data,
        "--probe-tokens",
        "400",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("logit lens") && s.contains("| embed |") && s.contains("majority baseline"), "{s}");
    let layers = std::fs::read_dir(&pics).unwrap().count();
    assert!(layers >= 1 && pics.join("attention_layer0.png").exists());
    let o = kiln(&["inspect", "--model", &out_s, "--prompt", ""]);
    assert!(!o.status.success() && stderr(&o).contains("no tokens"), "{}", stderr(&o));
}

#[test]
fn bad_input_gives_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    std::fs::write(dir.path().join("empty.txt"), "   \n").unwrap();
    std::fs::write(dir.path().join("short.txt"), "too short for a context of 128").unwrap();
    let cases: [(&[&str], &str); 6] = [
        (&["train", "--data", &p("empty.txt"), "--out", &p("r1")], "empty"),
        (&["train", "--data", &p("missing.txt"), "--out", &p("r2")], "missing.txt"),
        (&["train", "--data", &p("short.txt"), "--out", &p("r3")], "context"),
        (&["train", "--preset", "huge", "--out", &p("r4")], "unknown preset"),
        (&["train", "--resume", "--out", &p("nothing")], "config.json"),
        (&["generate", "--run", &p("nothing")], "config.json"),
    ];
    for (args, needle) in cases {
        let o = kiln(args);
        let err = stderr(&o);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        assert_eq!(err.trim_end().lines().last().map(|l| l.starts_with("error: ")), Some(true), "{args:?}: {err}");
    }
}

/// Ctrl-C (SIGINT) during training saves a checkpoint of the completed step and exits with 130;
/// `--resume` continues from it.
#[cfg(unix)]
#[test]
fn interrupt_saves_and_resume_continues() {
    let dir = tempfile::tempdir().unwrap();
    let data = text(&dir.path().join("fox.txt"));
    let out = dir.path().join("run");
    let out_s = out.display().to_string();
    let child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["train", "--data", &data, "--out", &out_s, "--steps", "100000", "--sample-tokens", "0"])
        .env("KILN_NUM_THREADS", "2")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until a few steps are logged, then interrupt.
    let metrics = out.join("metrics.jsonl");
    let start = std::time::Instant::now();
    while std::fs::read_to_string(&metrics).map_or(0, |m| m.lines().count()) < 3 {
        assert!(start.elapsed().as_secs() < 120, "training did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(stderr(&o).contains("interrupted: checkpoint of step"), "{}", stderr(&o));
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("checkpoint/state.json")).unwrap()).unwrap();
    let step = state["step"].as_u64().unwrap();
    assert!(step >= 3, "checkpoint at step {step}");
    assert_eq!(std::fs::read_to_string(&metrics).unwrap().lines().count() as u64, step);
    let o = kiln(&["train", "--out", &out_s, "--resume", "--steps", &(step + 2).to_string(), "--sample-tokens", "0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("resumed at step {step}")), "{}", stderr(&o));
}

/// `kiln analyze`: a preset's exact parameter count in JSON, a KV-cache table, and clear errors
/// for an unknown preset and a bad option.
#[test]
fn analyze_reports_and_errors() {
    let out = kiln(&["analyze", "params", "--config", "gpt2-small", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.to_string().contains("124439808"), "GPT-2 small has 124,439,808 parameters: {v}");
    let out = kiln(&["analyze", "kv-cache", "--config", "gpt2-small", "--tokens", "1024", "--dtype", "f32"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("75,497,472"));
    let out = kiln(&["analyze", "params", "--config", "no-such-model"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("preset"));
    let out = kiln(&["analyze", "flops", "--config", "gpt2-small", "--recompute", "sometimes"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--recompute"));
}

/// `kiln convert` of a quantized GGUF to a Hugging Face directory writes every weight (it loads
/// them dequantized; the inference loader keeps the matrices quantized, which a checkpoint
/// cannot hold), and the directory generates what the GGUF generates.
#[test]
fn convert_gguf_to_hf_writes_every_weight() {
    let gguf =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !gguf.exists() {
        eprintln!("SKIP: {} missing (python3 tools/fetch_models.py smollm2)", gguf.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hf");
    let (g, o) = (gguf.to_str().unwrap(), out.to_str().unwrap());
    let r = kiln(&["convert", "--from", g, "--to", o]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(out.join("model.safetensors").exists());
    let gen = |m: &str| {
        let r = kiln(&[
            "generate",
            "--model",
            m,
            "--prompt",
            "The capital of France is",
            "--max-new-tokens",
            "2",
            "--temperature",
            "0",
        ]);
        assert!(r.status.success(), "{}", stderr(&r));
        String::from_utf8_lossy(&r.stdout).into_owned()
    };
    let (a, b) = (gen(g), gen(o));
    assert!(a.contains("Paris"), "{a}");
    assert_eq!(a, b);
    // `kiln quantize --model` on the Hugging Face directory: a run that keeps the chat template
    // and the end-of-sequence token (the chat answer ends by itself, well before 40 tokens)
    let q = dir.path().join("int4");
    let qs = q.to_str().unwrap();
    let r = kiln(&["quantize", "--model", o, "--type", "int4-g64", "--out", qs]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(q.join("tokenizer_config.json").exists());
    let r = kiln(&[
        "generate",
        "--model",
        qs,
        "--chat",
        "--prompt",
        "What is the capital of France?",
        "--max-new-tokens",
        "40",
        "--temperature",
        "0",
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    let answer = String::from_utf8_lossy(&r.stdout);
    assert!(answer.contains("Paris") && answer.len() < 120, "{answer}");
    let r = kiln(&["quantize", "--model", qs, "--type", "w8a8", "--out", &dir.path().join("x").display().to_string()]);
    assert!(!r.status.success() && stderr(&r).contains("--run"), "{}", stderr(&r));
}

/// `kiln quantize --model <hf-dir> --gptq` calibrates on windows of `--calib-file` (a Hugging
/// Face checkpoint has no training split), and without one says so.
#[test]
fn quantize_hf_checkpoint_with_gptq_on_a_text_file() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kiln-models/tests/fixtures/hf_gpt2");
    let dir = tempfile::tempdir().unwrap();
    let hf = dir.path().join("hf");
    std::fs::create_dir(&hf).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture.join(f), hf.join(f)).unwrap();
    }
    // a character tokenizer of exactly the fixture's 96-token vocabulary
    let chars: String = (32u8..127).map(char::from).chain(['\n']).collect();
    std::fs::write(hf.join("tokenizer.json"), serde_json::json!({ "type": "char", "chars": chars }).to_string())
        .unwrap();
    let text = dir.path().join("calib.txt");
    std::fs::write(&text, "the quick brown fox jumps over the lazy dog. ".repeat(20)).unwrap();
    let (h, t) = (hf.to_str().unwrap(), text.to_str().unwrap());
    let out = dir.path().join("q").display().to_string();
    let r = kiln(&[
        "quantize",
        "--model",
        h,
        "--type",
        "int4-g32",
        "--gptq",
        "--calib-file",
        t,
        "--calib-seqs",
        "4",
        "--out",
        &out,
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(stderr(&r).contains("GPTQ: 4 calibration windows of 32 tokens"), "{}", stderr(&r));
    let r = kiln(&["generate", "--model", &out, "--prompt", "the ", "--max-new-tokens", "4", "--temperature", "0"]);
    assert!(r.status.success(), "{}", stderr(&r));
    let other = dir.path().join("q2").display().to_string();
    let r = kiln(&["quantize", "--model", h, "--type", "int4-g32", "--gptq", "--out", &other]);
    assert!(!r.status.success() && stderr(&r).contains("--calib-file"), "{}", stderr(&r));
}
