//! The official `openai` Python client against the server: `tools/openai_client_test.py` runs
//! its checks (completions, chat, streaming, stop strings, n > 1, logprobs, prompt scoring,
//! errors) and must pass them all. Needs `python3` with the `openai` package (`.ci/run`
//! installs it); without it the test prints SKIP with the reason.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::*;
use kiln_serve::ServeOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_client_passes_its_checks() {
    let probe = std::process::Command::new("python3").args(["-c", "import openai"]).output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            let why = String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("").to_string();
            println!("SKIP: python3 cannot import openai ({why}); pip install openai");
            return;
        }
        Err(e) => {
            println!("SKIP: no python3 ({e})");
            return;
        }
    }
    let base = start(model(64, 2, 512), ServeOptions::default()).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tools/openai_client_test.py");
    let url = format!("{base}/v1");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3").args([script, "--base-url", &url, "--model", "tiny"]).output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the openai client reported failures:\n{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
}
