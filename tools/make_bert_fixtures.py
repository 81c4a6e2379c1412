#!/usr/bin/env python3
"""Write the reference fixtures that crates/kiln-models/tests/bert_parity.rs and
crates/kiln-cli/tests/embed.rs check kiln's BERT, tokenizer and sentence embeddings against.

Usage (from the repository root; needs `pip install torch transformers tokenizers
sentence-transformers safetensors`, and `python3 tools/fetch_models.py minilm` for the MiniLM part):

    python3 tools/make_bert_fixtures.py

Everything runs on the CPU in float32 with one thread, seeded. It (re)writes, under
crates/kiln-models/tests/fixtures/:

  tiny_bert/                 a random-weight BERT (V=111, C=16, L=2, H=4, F=32, 48 positions,
                             GELU) saved by transformers' save_pretrained (config.json,
                             model.safetensors with a pooler), a small WordPiece tokenizer
                             (tokenizer.json, tokenizer_config.json) and the sentence-transformers
                             files (modules.json, 1_Pooling/config.json: mean pooling,
                             2_Normalize, sentence_bert_config.json) — a complete embedding model.
  tiny_bert_variant/         the same encoder as a BertForMaskedLM checkpoint with GELU-tanh
                             (`gelu_new`): `bert.`-prefixed names, unused `cls.*` head tensors,
                             f16 weights, sharded (model.safetensors.index.json + shards).
  tiny_bert_outputs.safetensors
      input_ids, attention_mask, token_type_ids   int64 (B=4, S) padded batch (one sentence pair)
      last_hidden_state (B,S,16), pooler_output (B,16)   transformers BertModel, fp32
      variant.last_hidden_state (B,S,16)   tiny_bert_variant's encoder (f16-rounded weights, fp32 maths)
      st_embeddings (4,16)   sentence-transformers on tiny_bert for TINY_TEXTS (metadata "texts")
  minilm.json                the MiniLM sentences and HF's token ids for each (unpadded)
  minilm_outputs.safetensors (only when .cache/models/minilm exists)
      input_ids, attention_mask   int64 (8, S) padded batch from the HF tokenizer (max_length 256)
      hidden (N,384)   transformers AutoModel's last hidden state at the N real (unpadded) tokens,
                       rows in batch order
      st_embeddings (8,384)   sentence-transformers' (normalised, mean-pooled) embeddings
"""
import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "crates", "kiln-models", "tests", "fixtures")
MINILM = os.path.join(ROOT, ".cache", "models", "minilm")

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Café naïve façade, déjà vu — Ünïcödé àccents!",
    "東京 and 北京; emoji 🙂 is unknown.",
    "In 2023, 3.14 × 10^6 paid $1,234.56.",
    "Wait... what?! (Yes—really.) #tags & \"quotes\"",
    "   ",
    "A man is eating food.",
    "Sentence embeddings map a whole sentence to one vector, so that sentences with similar "
    "meanings land close together; mean pooling averages the encoder's token vectors over the "
    "real tokens, ignoring padding, and the result is normalised to unit length for cosine search.",
]
C, F = 16, 32  # the tiny model's width and feed-forward width
TINY_TEXTS = ["the cat sat on the mat", "a dog", "the quick brown fox jumps over the lazy dog", "cats and dogs!"]

WORDS = (
    "the a an and on over cat dog fox mat sat quick brown lazy jumps is was of to in it "
    "that this with for as by at from big small red blue green run walk see".split()
)


def tiny_tokenizer():
    """A WordPiece tokenizer with BERT's normaliser, pre-tokeniser and [CLS]/[SEP] template."""
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + chars + ["##" + c for c in chars[:26]]
    vocab += ["##s", "##ing", "##ed"]
    vocab = list(dict.fromkeys(vocab))
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab.index("[CLS]")), ("[SEP]", vocab.index("[SEP]"))],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok, len(vocab)


@torch.no_grad()
def randomise(model):
    """Weights larger than BERT's N(0, 0.02²) init so attention is far from uniform and GELU's
    non-linear region is reached; norm gains and biases moved away from 1 and 0."""
    g = torch.Generator().manual_seed(1)
    for name, p in model.named_parameters():
        if "LayerNorm.weight" in name:
            p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
        elif "embeddings" in name:
            p.copy_(torch.randn(p.shape, generator=g))
        elif name.endswith("bias"):
            p.copy_(0.1 * torch.randn(p.shape, generator=g))
        else:
            p.copy_(0.3 * torch.randn(p.shape, generator=g))


def pad_batch(encodings, pad_id):
    s = max(len(e.ids) for e in encodings)
    ids = [e.ids + [pad_id] * (s - len(e.ids)) for e in encodings]
    mask = [[1] * len(e.ids) + [0] * (s - len(e.ids)) for e in encodings]
    types = [e.type_ids + [0] * (s - len(e.ids)) for e in encodings]
    return torch.tensor(ids), torch.tensor(mask), torch.tensor(types)


def write_st_files(d, max_seq_length):
    os.makedirs(os.path.join(d, "1_Pooling"), exist_ok=True)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    pooling = {
        "word_embedding_dimension": C,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }
    for name, obj in [
        ("modules.json", modules),
        ("1_Pooling/config.json", pooling),
        ("sentence_bert_config.json", {"max_seq_length": max_seq_length, "do_lower_case": False}),
    ]:
        with open(os.path.join(d, name), "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")


def tiny():
    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig, BertForMaskedLM, BertModel, BertTokenizerFast

    tok, vocab_size = tiny_tokenizer()
    cfg = BertConfig(
        vocab_size=vocab_size,
        hidden_size=C,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=F,
        max_position_embeddings=48,
        type_vocab_size=2,
        hidden_act="gelu",
        pad_token_id=0,
    )
    torch.manual_seed(0)
    model = BertModel(cfg).eval()
    randomise(model)
    d = os.path.join(OUT, "tiny_bert")
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(d, safe_serialization=True)
    fast = BertTokenizerFast(tokenizer_object=tok, model_max_length=48)
    fast.save_pretrained(d)
    for extra in ["special_tokens_map.json", "vocab.txt"]:
        p = os.path.join(d, extra)
        if os.path.exists(p):
            os.remove(p)
    write_st_files(d, 32)

    encs = [tok.encode("the quick brown fox jumps over the lazy dog"), tok.encode("a cat"),
            tok.encode("the dog sat", "on the big red mat"), tok.encode("")]
    ids, mask, types = pad_batch(encs, 0)
    out = model(input_ids=ids, attention_mask=mask, token_type_ids=types)

    # The variant: the same encoder inside BertForMaskedLM (bert.-prefixed names, cls.* heads),
    # GELU-tanh, f16 weights, sharded.
    vcfg = BertConfig(**{**cfg.to_dict(), "hidden_act": "gelu_new"})
    mlm = BertForMaskedLM(vcfg).eval()
    missing = mlm.bert.load_state_dict(model.state_dict(), strict=False)
    assert not missing.missing_keys or all("pooler" in k for k in missing.missing_keys), missing
    mlm = mlm.half()
    vd = os.path.join(OUT, "tiny_bert_variant")
    shutil.rmtree(vd, ignore_errors=True)
    mlm.save_pretrained(vd, safe_serialization=True, max_shard_size="10KB")
    mlm = mlm.float()
    vout = mlm.bert(input_ids=ids, attention_mask=mask, token_type_ids=types)

    st = SentenceTransformer(d, device="cpu")
    st_emb = torch.tensor(st.encode(TINY_TEXTS, batch_size=2, convert_to_numpy=True))
    save_file(
        {
            "input_ids": ids.contiguous(),
            "attention_mask": mask.contiguous(),
            "token_type_ids": types.contiguous(),
            "last_hidden_state": out.last_hidden_state.contiguous(),
            "pooler_output": out.pooler_output.contiguous(),
            "variant.last_hidden_state": vout.last_hidden_state.contiguous(),
            "st_embeddings": st_emb.contiguous(),
        },
        os.path.join(OUT, "tiny_bert_outputs.safetensors"),
        metadata={"texts": json.dumps(TINY_TEXTS)},
    )
    print(f"tiny_bert: V={vocab_size}, batch {tuple(ids.shape)}, shards: {sorted(os.listdir(vd))}")


def minilm():
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(MINILM)
    ids = [tokenizer(s, truncation=True, max_length=256)["input_ids"] for s in SENTENCES]
    with open(os.path.join(OUT, "minilm.json"), "w") as f:
        json.dump({"sentences": SENTENCES, "input_ids": ids}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    batch = tokenizer(SENTENCES, padding=True, truncation=True, max_length=256, return_tensors="pt")
    model = AutoModel.from_pretrained(MINILM, dtype=torch.float32).eval()
    hidden = model(**batch).last_hidden_state
    real = batch["attention_mask"].bool()
    st = SentenceTransformer(MINILM, device="cpu")
    emb = torch.tensor(st.encode(SENTENCES, batch_size=3, convert_to_numpy=True))
    save_file(
        {
            "input_ids": batch["input_ids"].contiguous(),
            "attention_mask": batch["attention_mask"].contiguous(),
            "hidden": hidden[real].contiguous(),
            "st_embeddings": emb.contiguous(),
        },
        os.path.join(OUT, "minilm_outputs.safetensors"),
    )
    print(f"minilm: {len(SENTENCES)} sentences, lengths {[len(i) for i in ids]}, {int(real.sum())} real tokens")


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    with torch.no_grad():
        tiny()
        if os.path.exists(os.path.join(MINILM, "model.safetensors")):
            minilm()
        else:
            print(f"minilm: {MINILM} missing (python3 tools/fetch_models.py minilm); its fixtures not rewritten")
    mine = ["tiny_bert", "tiny_bert_variant", "tiny_bert_outputs.safetensors", "minilm.json", "minilm_outputs.safetensors"]
    paths = [os.path.join(OUT, m) for m in mine]
    total = sum(os.path.getsize(p) for p in paths if os.path.isfile(p))
    total += sum(os.path.getsize(os.path.join(r, f)) for p in paths for r, _, fs in os.walk(p) for f in fs)
    print(f"BERT fixtures: {total / 1024:.0f} KB in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
