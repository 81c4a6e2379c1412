//! Hugging Face `config.json` parsing into kiln configs (decoder and BERT) on arbitrary bytes,
//! including building the (size-limited) model a config that validates describes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else { return };
    if let Ok(cfg) = kiln_models::gpt::GptConfig::from_hf(&v) {
        let _ = cfg.num_params();
    }
    if let Ok(cfg) = serde_json::from_value::<kiln_models::bert::BertConfig>(v) {
        if cfg.validate().is_ok() {
            let _ = cfg.num_params(true);
        }
    }
});
