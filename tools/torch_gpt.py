"""A small PyTorch twin of kiln's decoder-only `Gpt` (crates/kiln-models/src/gpt), for parity tests
and PyTorch reference runs.

Built from the same `config.json` dict as kiln's `GptConfig` (both presets: GPT-2 and LLaMA), with
the same parameter names and shapes as kiln's `Module::named_parameters()`, in the same order:

    transformer.wte.weight              (V, C)
    transformer.wpe.weight              (n_positions, C)         position == "learned" only
    transformer.h.{i}.ln_1.weight/.bias (C)                      bias only for layer_norm + bias
    transformer.h.{i}.attn.c_attn.*     ((H + 2·Hkv)·D, C)       rows: [q (H·D) | k (Hkv·D) | v (Hkv·D)]
    transformer.h.{i}.attn.c_proj.*     (C, H·D)
    transformer.h.{i}.ln_2.*
    transformer.h.{i}.mlp.c_fc.*, c_proj.*                       mlp == "gelu"
    transformer.h.{i}.mlp.gate_proj/up_proj/down_proj.weight     mlp == "swi_glu"
    transformer.ln_f.*
    lm_head.weight                      (V, C)                   only when not tie_word_embeddings

Semantics mirrored from kiln: pre-norm blocks; Linear weights are (out, in); LayerNorm
`(x − μ)/√(σ² + ε)·γ + β`; RMSNorm `x/√(mean x² + ε)·γ` (no bias, ever); GELU with the tanh
approximation; SwiGLU `down(silu(gate(x)) ⊙ up(x))`; RoPE with the GPT-NeoX / HF-LLaMA
"rotate half" pairing (channel i with i + D/2), θᵢ = base^(−2i/D), tables computed in float64 and
rounded to float32 as kiln does; grouped-query attention where query head h reads kv head
h // (H/Hkv); causal softmax(q·kᵀ/√D)·v; the tied head is `x·wteᵀ`; loss is mean cross-entropy
with ignore_index −100. Dropout (config "dropout") on the embeddings, the attention
probabilities and both residual branches, as in kiln (the masks differ, of course).

Helpers (a stable API; tools/bench_train_torch.py and tools/train_reference.py import them):
    GPT(cfg)                         the model; forward(idx, targets=None) -> (logits, loss)
    load_config(path)                config.json -> dict
    load_safetensors(model, path)    assigns every weight (names must match exactly); returns metadata
    save_safetensors(model, path, metadata=None)
    param_groups(model, weight_decay)   decay on params with ≥ 2 dims only (kiln's rule)
    make_optimizer(model, lr, weight_decay)   torch.optim.AdamW, betas (0.9, 0.95), eps 1e-8
    clip_grad_norm(model, max_norm)  torch.nn.utils.clip_grad_norm_, kiln's clip_grad_norm
"""
import json
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# kiln's AdamWConfig::default() (crates/kiln-train/src/adamw.rs).
BETAS = (0.9, 0.95)
EPS = 1e-8
# kiln's init (crates/kiln-models/src/gpt/mod.rs): N(0, 0.02²), residual projections / √(2L).
INIT_STD = 0.02

DEFAULTS = {
    "n_kv_head": None, "n_inner": None, "position": "learned", "norm": "layer_norm", "mlp": "gelu",
    "bias": True, "tie_word_embeddings": True, "layer_norm_epsilon": 1e-5, "rope_theta": 10000.0,
    "dropout": 0.0,
}


def gpt2_config(vocab_size, n_positions, n_embd, n_layer, n_head):
    """kiln's GptConfig::gpt2: learned positions, LayerNorm, GELU-tanh MLP (4C), biases, tied head."""
    return {
        "vocab_size": vocab_size, "n_positions": n_positions, "n_embd": n_embd, "n_layer": n_layer,
        "n_head": n_head, "n_kv_head": n_head, "n_inner": 4 * n_embd, "position": "learned",
        "norm": "layer_norm", "mlp": "gelu", "bias": True, "tie_word_embeddings": True,
        "layer_norm_epsilon": 1e-5, "rope_theta": 10000.0, "dropout": 0.0,
    }


def llama_config(vocab_size, n_positions, n_embd, n_layer, n_head, n_kv_head, n_inner):
    """kiln's GptConfig::llama: RoPE, RMSNorm, SwiGLU, no biases, untied head, GQA."""
    cfg = gpt2_config(vocab_size, n_positions, n_embd, n_layer, n_head)
    cfg.update({"n_kv_head": n_kv_head, "n_inner": n_inner, "position": "rope", "norm": "rms_norm",
                "mlp": "swi_glu", "bias": False, "tie_word_embeddings": False})
    return cfg


def load_config(path):
    """A kiln config.json as a dict."""
    with open(path) as f:
        return json.load(f)


def _full_config(cfg):
    c = dict(DEFAULTS)
    c.update(cfg)
    if c["n_kv_head"] is None:
        c["n_kv_head"] = c["n_head"]
    if c["n_inner"] is None:
        c["n_inner"] = 4 * c["n_embd"]
    assert c["n_embd"] % c["n_head"] == 0 and c["n_head"] % c["n_kv_head"] == 0, c
    assert c["position"] in ("learned", "rope") and c["norm"] in ("layer_norm", "rms_norm"), c
    assert c["mlp"] in ("gelu", "swi_glu"), c
    return c


class RMSNorm(nn.Module):
    """`x/√(mean x² + ε)·γ` over the last dim (kiln's RmsNorm: gain only)."""

    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        if hasattr(F, "rms_norm"):  # torch >= 2.4: PyTorch's own (fused where it can be)
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def make_norm(c):
    if c["norm"] == "layer_norm":
        return nn.LayerNorm(c["n_embd"], eps=c["layer_norm_epsilon"], bias=c["bias"])
    return RMSNorm(c["n_embd"], c["layer_norm_epsilon"])


class Rotary(nn.Module):
    """cos/sin tables (n_positions, D), each repeating the D/2 frequencies twice (rotate-half)."""

    def __init__(self, head_dim, n_positions, base):
        super().__init__()
        half = head_dim // 2
        inv = base ** (-2.0 * torch.arange(half, dtype=torch.float64) / head_dim)
        ang = torch.arange(n_positions, dtype=torch.float64)[:, None] * inv[None, :]
        ang = torch.cat([ang, ang], dim=-1)
        self.register_buffer("cos", ang.cos().float(), persistent=False)
        self.register_buffer("sin", ang.sin().float(), persistent=False)

    def forward(self, x):  # x: (B, n, T, D)
        t = x.shape[2]
        x1, x2 = x.chunk(2, dim=-1)
        rotated = torch.cat([-x2, x1], dim=-1)
        return x * self.cos[:t] + rotated * self.sin[:t]


class Attention(nn.Module):
    """Causal self-attention with the fused projection c_attn → [q | k | v] and GQA."""

    def __init__(self, c):
        super().__init__()
        self.n_head, self.n_kv_head = c["n_head"], c["n_kv_head"]
        self.head_dim = c["n_embd"] // c["n_head"]
        qkv = (self.n_head + 2 * self.n_kv_head) * self.head_dim
        self.c_attn = nn.Linear(c["n_embd"], qkv, bias=c["bias"])
        self.c_proj = nn.Linear(self.n_head * self.head_dim, c["n_embd"], bias=c["bias"])
        self.dropout = c["dropout"]

    def forward(self, x, rope):
        b, t, _ = x.shape
        h, hkv, d = self.n_head, self.n_kv_head, self.head_dim
        q, k, v = self.c_attn(x).split([h * d, hkv * d, hkv * d], dim=-1)
        q = q.view(b, t, h, d).transpose(1, 2)  # (B, H, T, D)
        k = k.view(b, t, hkv, d).transpose(1, 2)  # (B, Hkv, T, D)
        v = v.view(b, t, hkv, d).transpose(1, 2)
        if rope is not None:
            q, k = rope(q), rope(k)
        if hkv != h:  # query head i reads kv head i // (H/Hkv)
            k = k.repeat_interleave(h // hkv, dim=1)
            v = v.repeat_interleave(h // hkv, dim=1)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        return self.c_proj(y.transpose(1, 2).reshape(b, t, h * d))


class Mlp(nn.Module):
    """`c_proj(gelu_tanh(c_fc(x)))`."""

    def __init__(self, c):
        super().__init__()
        self.c_fc = nn.Linear(c["n_embd"], c["n_inner"], bias=c["bias"])
        self.c_proj = nn.Linear(c["n_inner"], c["n_embd"], bias=c["bias"])

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class SwiGlu(nn.Module):
    """`down_proj(silu(gate_proj(x)) ⊙ up_proj(x))`, no biases."""

    def __init__(self, c):
        super().__init__()
        self.gate_proj = nn.Linear(c["n_embd"], c["n_inner"], bias=False)
        self.up_proj = nn.Linear(c["n_embd"], c["n_inner"], bias=False)
        self.down_proj = nn.Linear(c["n_inner"], c["n_embd"], bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    """Pre-norm block: x + attn(ln_1(x)), then + mlp(ln_2(x)), residual dropout when training."""

    def __init__(self, c):
        super().__init__()
        self.ln_1 = make_norm(c)
        self.attn = Attention(c)
        self.ln_2 = make_norm(c)
        self.mlp = Mlp(c) if c["mlp"] == "gelu" else SwiGlu(c)
        self.drop = nn.Dropout(c["dropout"])

    def forward(self, x, rope):
        x = x + self.drop(self.attn(self.ln_1(x), rope))
        return x + self.drop(self.mlp(self.ln_2(x)))


class GPT(nn.Module):
    """kiln's `Gpt` in PyTorch; `cfg` is a kiln config.json dict."""

    def __init__(self, cfg):
        super().__init__()
        c = _full_config(cfg)
        self.config = c
        tr = {"wte": nn.Embedding(c["vocab_size"], c["n_embd"])}
        if c["position"] == "learned":
            tr["wpe"] = nn.Embedding(c["n_positions"], c["n_embd"])
        tr["h"] = nn.ModuleList(Block(c) for _ in range(c["n_layer"]))
        tr["ln_f"] = make_norm(c)
        self.transformer = nn.ModuleDict(tr)
        self.lm_head = None
        if not c["tie_word_embeddings"]:
            self.lm_head = nn.Linear(c["n_embd"], c["vocab_size"], bias=False)
        self.rope = None
        if c["position"] == "rope":
            self.rope = Rotary(c["n_embd"] // c["n_head"], c["n_positions"], c["rope_theta"])
        self.drop = nn.Dropout(c["dropout"])
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self):
        """kiln's init: N(0, 0.02²) for matrices and embeddings, 0.02/√(2L) for the attention
        output projection and the GELU MLP's c_proj (SwiGLU's down_proj keeps 0.02), zero biases,
        unit norm gains."""
        proj_std = INIT_STD / math.sqrt(2 * self.config["n_layer"])
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                resid = name.endswith("attn.c_proj.weight") or name.endswith("mlp.c_proj.weight")
                nn.init.normal_(p, 0.0, proj_std if resid else INIT_STD)
            elif name.endswith(".bias"):
                nn.init.zeros_(p)
            else:
                nn.init.ones_(p)

    def forward(self, idx, targets=None):
        """Logits (B, T, V) for token ids `idx` (B, T); with `targets`, also the mean
        cross-entropy (ignore_index −100), else None."""
        _, t = idx.shape
        assert t <= self.config["n_positions"], f"{t} positions exceed {self.config['n_positions']}"
        tr = self.transformer
        x = tr.wte(idx)
        if "wpe" in tr:
            x = x + tr.wpe(torch.arange(t, device=idx.device))[None]
        x = self.drop(x)
        for block in tr.h:
            x = block(x, self.rope)
        x = tr.ln_f(x)
        logits = self.lm_head(x) if self.lm_head is not None else F.linear(x, tr.wte.weight)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
        return logits, loss


def load_safetensors(model, path):
    """Copies every parameter of `model` from a safetensors file written by kiln (or by
    save_safetensors): each parameter name must be present with the same shape; other tensors in
    the file are ignored. Returns the file's metadata dict (str → str)."""
    from safetensors import safe_open

    params = dict(model.named_parameters())
    with safe_open(path, framework="pt") as f:
        names = set(f.keys())
        missing = sorted(set(params) - names)
        if missing:
            raise KeyError(f"{path}: missing tensors {missing}")
        with torch.no_grad():
            for name, p in params.items():
                t = f.get_tensor(name)
                if tuple(t.shape) != tuple(p.shape):
                    raise ValueError(f"{name}: file has {tuple(t.shape)}, model {tuple(p.shape)}")
                p.copy_(t.to(p.dtype))
        return f.metadata() or {}


def save_safetensors(model, path, metadata=None):
    """Writes the model's parameters (kiln names, contiguous) to `path`, loadable by kiln."""
    from safetensors.torch import save_file

    tensors = {n: p.detach().contiguous().cpu() for n, p in model.named_parameters()}
    save_file(tensors, path, metadata=metadata)


def param_groups(model, weight_decay):
    """AdamW groups with kiln's rule: decay parameters with ≥ 2 dims (matrices, embeddings), never
    norms or biases."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def make_optimizer(model, lr, weight_decay, **kwargs):
    """torch.optim.AdamW with kiln's betas (0.9, 0.95) and eps 1e-8. kwargs (e.g. fused=True,
    foreach=False) pass through."""
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=BETAS, eps=EPS, **kwargs)


def clip_grad_norm(model, max_norm):
    """kiln's clip_grad_norm via torch.nn.utils.clip_grad_norm_: scales all gradients by
    max_norm/(‖g‖ + 1e-6) when that is below 1 and returns ‖g‖ (the global L2 norm before
    clipping) as a float. (kiln leaves the gradients alone when ‖g‖ ≤ max_norm, PyTorch scales by
    at most 1 − 1e-6/max_norm there — immaterial.)"""
    return float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
