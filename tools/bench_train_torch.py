"""PyTorch eager training throughput of a kiln model, the baseline of `kiln bench train`.

Builds the same model as kiln from its config.json (tools/torch_gpt.py), and times optimizer
steps exactly like kiln's training loop: forward, cross-entropy, backward, global-norm clipping,
AdamW (kiln's betas, eps and weight-decay groups). Prints one JSON line:
{"step_s": median seconds per step, "tok_per_s": ..., "torch": version}.

    python3 tools/bench_train_torch.py --config runs/default/config.json --batch 8 --threads 2
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import torch_gpt  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="kiln config.json")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (TF32 stays off)")
    ap.add_argument("--precision", default="f32", choices=["f32", "bf16", "f16"],
                    help="bf16/f16: forward and loss under torch.autocast, with GradScaler for f16")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(1337)
    with open(args.config) as f:
        cfg = json.load(f)
    dev = torch.device(args.device)
    model = torch_gpt.GPT(cfg).to(dev)
    model.train()
    opt = torch_gpt.make_optimizer(model, args.lr, args.weight_decay)
    fwd = torch.compile(model) if args.compile else model
    v, t = cfg["vocab_size"], cfg["n_positions"]
    x = torch.randint(0, v, (args.batch, t), device=dev)
    y = torch.randint(0, v, (args.batch, t), device=dev)
    params = [p for p in model.parameters() if p.requires_grad]

    half = {"bf16": torch.bfloat16, "f16": torch.float16}.get(args.precision)
    scaler = torch.amp.GradScaler(dev.type, enabled=args.precision == "f16")

    def step():
        with torch.autocast(dev.type, dtype=half or torch.float32, enabled=half is not None):
            _, loss = fwd(x, y)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        if args.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, args.grad_clip)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    secs = statistics.median(times)
    print(json.dumps({"step_s": secs, "tok_per_s": args.batch * t / secs, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
