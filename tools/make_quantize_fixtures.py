#!/usr/bin/env python3
"""Reference bytes for kiln's f32 → Q8_0 / Q4_0 / Q4_1 quantizers, from gguf-py's
`gguf.quants.quantize` (a numpy port of ggml's `quantize_row_*_ref`, bit-exact with llama.cpp).

    python3 tools/make_quantize_fixtures.py   # writes crates/kiln-formats/tests/fixtures/quantize.json

Rows: seeded normal values at several scales, plus blocks that are all zero, constant, a single
spike, and ties at the rounding edges.
"""
import json, pathlib
import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import quantize

rng = np.random.default_rng(1234)
rows = [rng.normal(0, s, 64).astype(np.float32) for s in (0.02, 1.0, 300.0)]
rows.append(np.zeros(64, np.float32))
rows.append(np.full(64, 0.75, np.float32))
spike = np.zeros(64, np.float32); spike[5] = -3.0; spike[40] = 7.5
rows.append(spike)
edges = (np.arange(64, dtype=np.float32) - 32) / 4  # many exact .5 steps after scaling
rows.append(edges.astype(np.float32))
x = np.stack(rows)
out = {"rows": x.shape[0], "cols": x.shape[1], "values": [float(v) for v in x.reshape(-1)]}
for name, t in (("Q8_0", T.Q8_0), ("Q4_0", T.Q4_0), ("Q4_1", T.Q4_1)):
    out[name] = quantize(x, t).tobytes().hex()
p = pathlib.Path(__file__).resolve().parent.parent / "crates/kiln-formats/tests/fixtures/quantize.json"
p.write_text(json.dumps(out))
print(f"wrote {p}")
