//! Serves a small random GPT (character tokenizer over printable ASCII and newline, no chat
//! template, so chat uses the default `<|role|>` prompt) with the OpenAI API, e.g. to try
//! clients against it:
//!
//! ```sh
//! cargo run --release -p kiln-serve --example serve_random -- --port 8000
//! python3 tools/openai_client_test.py --base-url http://127.0.0.1:8000/v1
//! ```
//!
//! Options: `--host H` (default 127.0.0.1), `--port P` (default 8000; 0 picks a free one),
//! `--name NAME` (default `random-char-gpt`), `--queue-len N`, `--timeout-secs S`.

use kiln_data::{CharTokenizer, Tokenizer};
use kiln_models::gpt::{Gpt, GptConfig};
use kiln_serve::{serve_blocking, ServeOptions, ServedModel};
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut host, mut port, mut name) = ("127.0.0.1".to_string(), "8000".to_string(), "random-char-gpt".to_string());
    let mut opts = ServeOptions::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--host" => host = value()?,
            "--port" => port = value()?,
            "--name" => name = value()?,
            "--queue-len" => opts.queue_len = value()?.parse()?,
            "--timeout-secs" => opts.request_timeout = Duration::from_secs_f64(value()?.parse()?),
            other => return Err(format!("unknown option {other} (see the example's doc comment)").into()),
        }
    }
    let text: String = (32u8..127).map(char::from).chain(['\n']).collect();
    let tok = Tokenizer::Char(CharTokenizer::train(&text));
    let cfg = GptConfig::gpt2(tok.vocab_size(), 512, 64, 2, 4);
    let model = Gpt::new(cfg, 1, &kiln_cpu::cpu())?;
    let served = ServedModel { name, model, tok, chat: None, stop: vec![], bos: None };
    serve_blocking(&format!("{host}:{port}"), served, opts)?;
    Ok(())
}
