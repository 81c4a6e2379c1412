#!/usr/bin/env python3
"""Write the PyTorch reference fixtures that crates/kiln-train/tests/torch_parity.rs checks kiln against
(llm.c's test design: one model, one batch; compare logits, loss, every gradient, then the losses
of a few optimizer steps).

Usage (from the repository root; needs `pip install numpy torch`):

    python3 tools/make_fixtures.py

It rewrites crates/kiln-train/tests/fixtures/{gpt2,llama}.safetensors. Everything is seeded and
runs on the CPU in float32 with one thread and deterministic algorithms, so a rerun on the same
machine and torch version reproduces the files byte for byte (another CPU or torch version may
move the values in the last bits, far inside the test's 1e-4 tolerance).

Models, built by tools/torch_gpt.py from kiln config dicts:
  gpt2   kiln's GptConfig::gpt2(67, 16, 32, 2, 4): learned positions, LayerNorm, GELU-tanh MLP
         (hidden 128), biases, tied head.
  llama  kiln's GptConfig::llama(67, 16, 32, 2, 4, 2, 88): RoPE, RMSNorm, SwiGLU (hidden 88), no
         biases, untied head, grouped-query attention (4 query heads share 2 kv heads).

Weights are random but larger than kiln's N(0, 0.02²) init, so attention is far from uniform and
the activations reach the non-linear parts of GELU/SiLU; norm gains and biases are perturbed away
from 1 and 0 so their gradients and effects are tested. The batch is B=2, T=16 random token ids
with random targets, one of which is -100 (ignored by the loss).

Each file holds (float32 unless noted), with the config as JSON in the metadata:
  <param name>       every parameter, kiln/nanoGPT names (metadata "params": the names in order)
  x, y               int64 (B, T) inputs and targets
  logits             (B, T, V)
  loss               (1) mean cross-entropy
  grad.<param name>  d loss / d param of that first forward
  train.loss         (STEPS) loss before each of STEPS AdamW steps on the same batch: forward,
                     backward, clip_grad_norm_(1.0), AdamW(lr 2e-3, betas (0.9, 0.95), eps 1e-8,
                     weight decay 0.1 on ≥ 2-dim params only) — kiln's Trainer::step order
  train.grad_norm    (STEPS) the global gradient norm before clipping, at each step
"""
import json
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_gpt  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "kiln-train", "tests", "fixtures")
B, T = 2, 16
STEPS = 10
LR = 2e-3
WEIGHT_DECAY = 0.1
GRAD_CLIP = 1.0

MODELS = {
    "gpt2": (torch_gpt.gpt2_config(67, 16, 32, 2, 4), 1),
    "llama": (torch_gpt.llama_config(67, 16, 32, 2, 4, 2, 88), 2),
}


@torch.no_grad()
def init_fixture_weights(model):
    """Seeded N(0, 0.2²) matrices and embeddings, gains 1 + N(0, 0.1²), biases N(0, 0.1²)."""
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            p.normal_(0.0, 0.2)
        elif name.endswith(".bias"):
            p.normal_(0.0, 0.1)
        else:
            p.normal_(1.0, 0.1)


def write_safetensors(path, tensors, metadata):
    """A safetensors file with a fixed header order (safetensors.torch.save_file orders the
    metadata by a hash map, so its bytes change from run to run)."""
    dtypes = {torch.float32: "F32", torch.int64: "I64"}
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for k, v in tensors.items():
        data = v.detach().contiguous().numpy().tobytes()
        header[k] = {"dtype": dtypes[v.dtype], "shape": list(v.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head + b"".join(blobs))


def make(name, cfg, seed):
    torch.manual_seed(seed)
    model = torch_gpt.GPT(cfg)
    init_fixture_weights(model)
    model.train()  # dropout is 0, so train and eval agree; kiln's test uses its training path too
    x = torch.randint(0, cfg["vocab_size"], (B, T), dtype=torch.int64)
    y = torch.randint(0, cfg["vocab_size"], (B, T), dtype=torch.int64)
    y[1, 5] = -100
    out = {n: p.detach().clone() for n, p in model.named_parameters()}
    out["x"], out["y"] = x, y

    logits, loss = model(x, y)
    loss.backward()
    out["logits"] = logits.detach().clone()
    out["loss"] = loss.detach().reshape(1).clone()
    for n, p in model.named_parameters():
        out[f"grad.{n}"] = p.grad.detach().clone()

    opt = torch_gpt.make_optimizer(model, LR, WEIGHT_DECAY, foreach=False)
    losses, norms = [], []
    for _ in range(STEPS):
        opt.zero_grad(set_to_none=True)
        _, loss = model(x, y)
        loss.backward()
        norms.append(torch_gpt.clip_grad_norm(model, GRAD_CLIP))
        losses.append(loss.item())
        opt.step()
    out["train.loss"] = torch.tensor(losses, dtype=torch.float32)
    out["train.grad_norm"] = torch.tensor(norms, dtype=torch.float32)

    meta = {
        "config": json.dumps(model.config),
        "params": json.dumps([n for n, _ in model.named_parameters()]),
        "lr": repr(LR),
        "weight_decay": repr(WEIGHT_DECAY),
        "grad_clip": repr(GRAD_CLIP),
        "steps": str(STEPS),
        "generator": f"tools/make_fixtures.py, torch {torch.__version__}",
    }
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, f"{name}.safetensors")
    write_safetensors(path, out, meta)
    print(f"{path}: {os.path.getsize(path)} bytes, loss {out['loss'].item():.6f}, "
          f"train.loss {losses[0]:.4f} -> {losses[-1]:.4f}, grad norms {norms[0]:.3f} .. {norms[-1]:.3f}")


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    for name, (cfg, seed) in MODELS.items():
        make(name, cfg, seed)


if __name__ == "__main__":
    main()
