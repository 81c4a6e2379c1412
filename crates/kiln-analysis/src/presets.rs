//! Named architectures ([`Arch::preset`]), with the published shapes of each model.
//!
//! Sources: GPT-2 — Radford et al. 2019, Table 2, and the HF `gpt2*` configs (V = 50257,
//! P = 1024); BERT — Devlin et al. 2019 §3 (base L=12 C=768 H=12, large L=24 C=1024 H=16;
//! V = 30522 uncased WordPiece, P = 512, 2 token types, pooler); LLaMA — Touvron et al. 2023,
//! Table 2 (V = 32000, P = 2048, F from the released configs: 11008, 13824, 22016); GPT-3 175B —
//! Brown et al. 2020, Table 2.1 (L=96, C=12288, H=96, P=2048, GPT-2's V = 50257, dense
//! parameter count); SmolLM2-135M and all-MiniLM-L6-v2 — the configs of the checkpoints kiln
//! runs (REFERENCE.md); Mixtral 8×7B — Jiang et al. 2024 and its released config (V = 32000,
//! P = 32768, C = 4096, L = 32, H = 32 / 8, F = 14336, 8 experts, top 2; 46.7 B parameters,
//! 12.9 B active).

use crate::arch::Arch;
use crate::error::{AnalysisError, Result};

/// The preset names [`Arch::preset`] knows.
pub const PRESETS: [&str; 13] = [
    "gpt2-small",
    "gpt2-medium",
    "gpt2-large",
    "gpt2-xl",
    "bert-base",
    "bert-large",
    "llama-7b",
    "llama-13b",
    "llama-65b",
    "gpt3-175b",
    "smollm2-135m",
    "minilm-l6",
    "mixtral-8x7b",
];

impl Arch {
    /// A named architecture (case-insensitive; `_` reads as `-`):
    ///
    /// | name | family | V | P | C | L | H / Hkv | F | head |
    /// |---|---|---|---|---|---|---|---|---|
    /// | `gpt2-small` (124,439,808) | GPT-2 | 50257 | 1024 | 768 | 12 | 12 | 4C | tied |
    /// | `gpt2-medium` | GPT-2 | 50257 | 1024 | 1024 | 24 | 16 | 4C | tied |
    /// | `gpt2-large` | GPT-2 | 50257 | 1024 | 1280 | 36 | 20 | 4C | tied |
    /// | `gpt2-xl` | GPT-2 | 50257 | 1024 | 1600 | 48 | 25 | 4C | tied |
    /// | `bert-base` (109,482,240) | BERT + pooler | 30522 | 512 | 768 | 12 | 12 | 3072 | — |
    /// | `bert-large` | BERT + pooler | 30522 | 512 | 1024 | 24 | 16 | 4096 | — |
    /// | `llama-7b` | LLaMA | 32000 | 2048 | 4096 | 32 | 32 / 32 | 11008 | untied |
    /// | `llama-13b` | LLaMA | 32000 | 2048 | 5120 | 40 | 40 / 40 | 13824 | untied |
    /// | `llama-65b` | LLaMA | 32000 | 2048 | 8192 | 80 | 64 / 64 | 22016 | untied |
    /// | `gpt3-175b` | GPT-2 | 50257 | 2048 | 12288 | 96 | 96 | 4C | tied |
    /// | `smollm2-135m` | LLaMA | 49152 | 8192 | 576 | 30 | 9 / 3 | 1536 | tied |
    /// | `minilm-l6` | BERT + pooler | 30522 | 512 | 384 | 6 | 12 | 1536 | — |
    /// | `mixtral-8x7b` | LLaMA + MoE 8 experts, top 2 | 32000 | 32768 | 4096 | 32 | 32 / 8 | 14336 | untied |
    ///
    /// An unknown name is an error listing the known ones.
    pub fn preset(name: &str) -> Result<Arch> {
        let key = name.trim().to_ascii_lowercase().replace('_', "-");
        let arch = match key.as_str() {
            "gpt2-small" | "gpt2" => Arch::gpt2("gpt2-small", 50257, 1024, 768, 12, 12),
            "gpt2-medium" => Arch::gpt2("gpt2-medium", 50257, 1024, 1024, 24, 16),
            "gpt2-large" => Arch::gpt2("gpt2-large", 50257, 1024, 1280, 36, 20),
            "gpt2-xl" => Arch::gpt2("gpt2-xl", 50257, 1024, 1600, 48, 25),
            "bert-base" => Arch::bert("bert-base", 30522, 512, 768, 12, 12, 3072, 2, true),
            "bert-large" => Arch::bert("bert-large", 30522, 512, 1024, 24, 16, 4096, 2, true),
            "llama-7b" => Arch::llama("llama-7b", 32000, 2048, 4096, 32, 32, 32, 11008, false),
            "llama-13b" => Arch::llama("llama-13b", 32000, 2048, 5120, 40, 40, 40, 13824, false),
            "llama-65b" => Arch::llama("llama-65b", 32000, 2048, 8192, 80, 64, 64, 22016, false),
            "gpt3-175b" | "gpt3" => Arch::gpt2("gpt3-175b", 50257, 2048, 12288, 96, 96),
            "smollm2-135m" => Arch::llama("smollm2-135m", 49152, 8192, 576, 30, 9, 3, 1536, true),
            "minilm-l6" => Arch::bert("minilm-l6", 30522, 512, 384, 6, 12, 1536, 2, true),
            "mixtral-8x7b" | "mixtral" => {
                Arch::llama("mixtral-8x7b", 32000, 32768, 4096, 32, 32, 8, 14336, false).with_moe(8, 2)
            }
            _ => {
                return Err(AnalysisError::UnknownPreset { name: name.to_string(), known: PRESETS.join(", ") });
            }
        };
        Ok(arch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_valid() {
        for name in PRESETS {
            let a = Arch::preset(name).unwrap();
            assert_eq!(a.name, name);
            a.validate().unwrap();
        }
        assert_eq!(Arch::preset("GPT2_SMALL").unwrap().name, "gpt2-small");
        let e = Arch::preset("gpt5").unwrap_err().to_string();
        assert!(e.contains("unknown preset \"gpt5\"") && e.contains("llama-65b"), "{e}");
    }
}
