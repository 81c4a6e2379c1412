#!/usr/bin/env python3
"""Fixtures for crates/kiln-formats' GGUF reader and dequantizer tests, made with the reference
implementation: the `gguf` package (gguf-py, llama.cpp's own Python library).

Writes into crates/kiln-formats/tests/fixtures/:

  types.gguf                  a small GGUF v3 file: metadata of every value type (all scalar types,
                              typed arrays of each, empty and nested arrays, UTF-8 strings) and one
                              tensor of each supported ggml type (F32, F16, BF16, Q4_0, Q4_1, Q5_0,
                              Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K; 2-D, 3-D and 4-D shapes).
                              Legacy quants and BF16 are quantized with gguf.quants.quantize from
                              seeded normal data; gguf-py has no K-quant quantizer, so K-quant blocks
                              are seeded random bytes with finite f16 scales (every code pattern
                              occurs). The last tensor ends exactly at the end of the file, so every
                              proper prefix of the file is invalid.
  types.json                  what the file holds: metadata (typed), tensor names / types / dims /
                              offsets.
  types_expected.safetensors  each tensor dequantized by gguf.quants.dequantize (f32, row-major).
  smollm2_q4_1.json           for the real SmolLM2-135M-Instruct Q4_1 GGUF (when present, see
                              tools/fetch_models.py): version, counts, every metadata key with its
                              type and value (long arrays: length and first/last 3 entries), every
                              tensor's name / type / dims / absolute data offset, and the sha256 of
                              its gguf.quants.dequantize output as little-endian f32 bytes.

The file is written by this script's own ~30-line GGUF writer (gguf-py's GGUFWriter cannot write
typed arrays of every element type or nested arrays) and then read back with gguf.GGUFReader, which
must agree with what was meant (tensors bit for bit), so the fixture is valid by the reference's
reading. Deterministic: seeded numpy Generator.

    pip install gguf numpy
    python3 tools/fetch_models.py smollm2     # optional, for smollm2_q4_1.json
    python3 tools/make_gguf_fixtures.py
"""

import hashlib
import json
import os
import struct

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q
from gguf import GGUFValueType as V
from gguf.quants import dequantize, quantize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "crates", "kiln-formats", "tests", "fixtures")
SMOLLM2 = os.path.join(ROOT, ".cache", "models", "smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
SEED = 20250611
ALIGNMENT = 32  # GGUF's default (general.alignment absent or 32)

# ----------------------------------------------------------------------------- metadata


def A(elem, items):
    """An array value: (element type, items); items of a nested array are A(...) themselves."""
    return (elem, items)


METADATA = [
    ("general.architecture", V.STRING, "kiln-test"),
    ("general.name", V.STRING, "h\u00e9llo, w\u00f6rld \u2713 \U0001f525"),
    ("general.alignment", V.UINT32, ALIGNMENT),
    ("test.u8", V.UINT8, 200),
    ("test.i8", V.INT8, -100),
    ("test.u16", V.UINT16, 60000),
    ("test.i16", V.INT16, -30000),
    ("test.u32", V.UINT32, 4_000_000_000),
    ("test.i32", V.INT32, -2_000_000_000),
    ("test.f32", V.FLOAT32, 1.234567),
    ("test.bool_true", V.BOOL, True),
    ("test.bool_false", V.BOOL, False),
    ("test.string_empty", V.STRING, ""),
    ("test.u64", V.UINT64, 2**63 + 5),
    ("test.i64", V.INT64, -(2**62) - 7),
    ("test.f64", V.FLOAT64, 2.718281828459045),
    ("test.small_u64", V.UINT64, 7),
    ("test.array.u8", V.ARRAY, A(V.UINT8, [0, 1, 255])),
    ("test.array.i8", V.ARRAY, A(V.INT8, [-128, 0, 127])),
    ("test.array.u16", V.ARRAY, A(V.UINT16, [0, 65535])),
    ("test.array.i16", V.ARRAY, A(V.INT16, [-32768, 32767])),
    ("test.array.u32", V.ARRAY, A(V.UINT32, [0, 4294967295])),
    ("test.array.i32", V.ARRAY, A(V.INT32, [-2147483648, 0, 2147483647])),
    ("test.array.f32", V.ARRAY, A(V.FLOAT32, [0.1, -2.5, 1e-30])),
    ("test.array.bool", V.ARRAY, A(V.BOOL, [True, False, True])),
    ("test.array.string", V.ARRAY, A(V.STRING, ["", "a", "\u00fc\u00f1\u00ee", "\u0120the"])),
    ("test.array.u64", V.ARRAY, A(V.UINT64, [0, 2**64 - 1])),
    ("test.array.i64", V.ARRAY, A(V.INT64, [-(2**63), 2**63 - 1])),
    ("test.array.f64", V.ARRAY, A(V.FLOAT64, [0.1, -1e300])),
    ("test.array.empty", V.ARRAY, A(V.INT32, [])),
    ("test.array.nested_i32", V.ARRAY, A(V.ARRAY, [A(V.INT32, [1, 2]), A(V.INT32, [3, 4, 5])])),
    ("test.array.nested_str", V.ARRAY, A(V.ARRAY, [A(V.STRING, ["a"]), A(V.STRING, ["b", "c"]), A(V.STRING, [])])),
    ("test.array.nested3", V.ARRAY, A(V.ARRAY, [A(V.ARRAY, [A(V.FLOAT32, [0.5, -0.25])]), A(V.ARRAY, [])])),
    ("tokenizer.ggml.model", V.STRING, "gpt2"),
    ("tokenizer.ggml.tokens", V.ARRAY, A(V.STRING, ["<unk>", "a", "b", "ab", "\u0120a"])),
    ("tokenizer.ggml.scores", V.ARRAY, A(V.FLOAT32, [0.0, -1.0, -2.0, -3.5, -4.25])),
    ("tokenizer.ggml.token_type", V.ARRAY, A(V.INT32, [2, 1, 1, 1, 1])),
    ("tokenizer.ggml.merges", V.ARRAY, A(V.STRING, ["a b", "\u0120 a"])),
]

SCALAR = {V.UINT8: "<B", V.INT8: "<b", V.UINT16: "<H", V.INT16: "<h", V.UINT32: "<I", V.INT32: "<i",
          V.FLOAT32: "<f", V.BOOL: "<?", V.UINT64: "<Q", V.INT64: "<q", V.FLOAT64: "<d"}


def pack_string(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def pack_value(t, v):
    if t == V.STRING:
        return pack_string(v)
    if t == V.ARRAY:
        elem, items = v
        return struct.pack("<IQ", elem, len(items)) + b"".join(pack_value(elem, x) for x in items)
    return struct.pack(SCALAR[t], v)


def stored(t, v):
    """The value as stored (f32 rounded), for JSON: scalars plain, arrays as typed dicts."""
    if t == V.ARRAY:
        elem, items = v
        return {"type": "ARRAY", "element_type": elem.name, "values": [stored(elem, x) for x in items]}
    if t == V.FLOAT32:
        return struct.unpack("<f", struct.pack("<f", v))[0]
    return v


# ----------------------------------------------------------------------------- tensors

def legacy(rng, name, qtype, shape):
    """Seeded normal data (a few rows scaled up) quantized by gguf-py."""
    x = rng.standard_normal(shape, dtype=np.float32)
    x[..., 0, :] *= 8.0
    raw = quantize(x, qtype)
    return name, qtype, shape, raw


def random_blocks(rng, name, qtype, shape, f16_fields):
    """Random K-quant blocks: every byte random except the f16 scale fields (at byte offsets
    `f16_fields` within each block), set to finite positive values like a real quantizer writes."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    n_blocks = int(np.prod(shape)) // block
    blocks = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    for off in f16_fields:
        d = rng.uniform(1e-3, 5e-2, n_blocks).astype(np.float16)
        d[0] = np.float16(6e-8)  # an f16 subnormal: the conversion must be exact there too
        blocks[:, off:off + 2] = d.view(np.uint8).reshape(n_blocks, 2)
    raw = blocks.reshape(*shape[:-1], shape[-1] // block * size)
    return name, qtype, shape, raw


def make_tensors():
    rng = np.random.default_rng(SEED)
    t = []
    f16 = rng.standard_normal((4, 256)).astype(np.float16)
    f16.flat[:6] = [np.float16(6e-8), np.float16(-0.0), np.float16(65504), np.float16(np.inf),
                    np.float16(-np.inf), np.float16(1e-5)]
    t.append(("t.f16", Q.F16, (4, 256), f16))
    bf = rng.standard_normal((4, 256), dtype=np.float32)
    bf.flat[:3] = [np.inf, -0.0, 1e-40]
    t.append(("t.bf16", Q.BF16, (4, 256), quantize(bf, Q.BF16)))
    for name, q in [("t.q4_0", Q.Q4_0), ("t.q4_1", Q.Q4_1), ("t.q5_0", Q.Q5_0), ("t.q5_1", Q.Q5_1),
                    ("t.q8_0", Q.Q8_0)]:
        t.append(legacy(rng, name, q, (4, 256)))
    t.append(legacy(rng, "t.q8_0.3d", Q.Q8_0, (2, 3, 64)))
    # f16 scale field offsets inside each block (see ggml-common.h / kquants.rs).
    t.append(random_blocks(rng, "t.q2_k", Q.Q2_K, (4, 256), [80, 82]))
    t.append(random_blocks(rng, "t.q3_k", Q.Q3_K, (4, 256), [108]))
    t.append(random_blocks(rng, "t.q4_k", Q.Q4_K, (4, 256), [0, 2]))
    t.append(random_blocks(rng, "t.q4_k.wide", Q.Q4_K, (2, 512), [0, 2]))
    t.append(random_blocks(rng, "t.q5_k", Q.Q5_K, (4, 256), [0, 2]))
    t.append(random_blocks(rng, "t.q6_k", Q.Q6_K, (4, 256), [208]))
    t.append(("t.f32.4d", Q.F32, (2, 3, 4, 32), rng.standard_normal((2, 3, 4, 32), dtype=np.float32)))
    # Last: 4096 bytes, a multiple of the alignment, so the file ends exactly at its last byte.
    f32 = rng.standard_normal((4, 256), dtype=np.float32)
    f32.view(np.uint32).flat[:4] = [0x7FC01234, 0x80000000, 0x00000001, 0x7F800000]  # NaN payload, -0, subnormal, inf
    t.append(("t.f32", Q.F32, (4, 256), f32))
    return t


def pad(n):
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def write_gguf(path, metadata, tensors):
    """GGUF v3: header, metadata, tensor infos (dims fastest-first), padding, aligned tensor data."""
    kv = b"".join(pack_string(k) + struct.pack("<I", t) + pack_value(t, v) for k, t, v in metadata)
    infos, data, offsets = b"", b"", []
    for name, qtype, shape, raw in tensors:
        off = pad(len(data))
        data = data.ljust(off, b"\0") + np.ascontiguousarray(raw).tobytes()
        offsets.append(off)
        dims = list(reversed(shape))
        infos += pack_string(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        infos += struct.pack("<IQ", qtype, off)
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata)) + kv + infos
    with open(path, "wb") as f:
        f.write(head.ljust(pad(len(head)), b"\0") + data)
    return offsets


def write_safetensors(path, named):
    """Minimal safetensors writer: 8-byte header length, JSON header, raw little-endian data."""
    header, blobs, off = {}, [], 0
    for name, arr in named:
        b = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def same_bits(a, b):
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def make_types_fixture():
    tensors = make_tensors()
    path = os.path.join(FIXTURES, "types.gguf")
    offsets = write_gguf(path, METADATA, tensors)
    expected = [(name, dequantize(raw, qtype).reshape(shape)) for name, qtype, shape, raw in tensors]

    # Read back with the reference reader: tensors must dequantize to the same bits, and every
    # flat (non-nested) metadata value must read back as written.
    r = gguf.GGUFReader(path)
    assert [t.name for t in r.tensors] == [t[0] for t in tensors]
    for rt, (name, qtype, shape, _), (_, exp) in zip(r.tensors, tensors, expected):
        assert rt.tensor_type == qtype and list(rt.shape) == list(reversed(shape)), name
        assert same_bits(dequantize(rt.data, rt.tensor_type).reshape(shape), exp), name
    for key, t, v in METADATA:
        f = r.fields[key]
        assert f.types[0] == t, key
        if t != V.ARRAY:
            assert f.contents() == stored(t, v), key
        elif v[1] and v[0] != V.ARRAY:
            assert f.types[-1] == v[0] and f.contents() == [stored(v[0], x) for x in v[1]], key

    doc = {
        "version": 3,
        "alignment": ALIGNMENT,
        "metadata": [dict(key=k, **({"type": t.name, "value": stored(t, v)} if t != V.ARRAY else stored(t, v)))
                     for k, t, v in METADATA],
        "tensors": [{"name": name, "type": qtype.name, "dims": list(reversed(shape)), "offset": off,
                     "n_bytes": int(np.asarray(raw).nbytes)}
                    for (name, qtype, shape, raw), off in zip(tensors, offsets)],
    }
    with open(os.path.join(FIXTURES, "types.json"), "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")
    write_safetensors(os.path.join(FIXTURES, "types_expected.safetensors"), expected)
    print(f"types.gguf: {len(tensors)} tensors, {len(METADATA)} metadata keys, {os.path.getsize(path)} bytes")


# ----------------------------------------------------------------------------- real model


def json_scalar(x):
    if isinstance(x, (np.floating, float)):
        return float(x)
    if isinstance(x, (np.integer, int)) and not isinstance(x, bool):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def make_smollm2_fixture():
    if not os.path.exists(SMOLLM2):
        print(f"skipping smollm2_q4_1.json: {SMOLLM2} is absent (python3 tools/fetch_models.py smollm2)")
        return
    r = gguf.GGUFReader(SMOLLM2)
    meta = []
    for key, f in r.fields.items():
        if key.startswith("GGUF."):
            continue  # the reader's pseudo-fields for the header
        t = V(int(f.types[0]))
        if t == V.ARRAY:
            elem = V(int(f.types[-1])) if len(f.types) > 1 else None
            assert len(f.types) <= 2, f"{key}: nested arrays are not expected in this model"
            vals = [json_scalar(x) for x in f.contents()]
            meta.append({"key": key, "type": "ARRAY", "element_type": elem.name if elem else None,
                         "len": len(vals), "first": vals[:3], "last": vals[-3:]})
        else:
            meta.append({"key": key, "type": t.name, "value": json_scalar(f.contents())})
    tensors = []
    for t in r.tensors:
        x = dequantize(t.data, t.tensor_type)
        digest = hashlib.sha256(np.ascontiguousarray(x, dtype="<f4").tobytes()).hexdigest()
        tensors.append({"name": t.name, "type": t.tensor_type.name, "dims": [int(d) for d in t.shape],
                        "data_offset": int(t.data_offset), "n_bytes": int(t.n_bytes), "sha256": digest})
    doc = {
        "file": os.path.basename(SMOLLM2),
        "gguf_package": gguf.__version__ if hasattr(gguf, "__version__") else None,
        "version": int(r.fields["GGUF.version"].contents()),
        "tensor_count": len(r.tensors),
        "alignment": int(r.alignment),
        "metadata": meta,
        "tensors": tensors,
    }
    with open(os.path.join(FIXTURES, "smollm2_q4_1.json"), "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"smollm2_q4_1.json: {len(tensors)} tensors, {len(meta)} metadata keys")


def main():
    os.makedirs(FIXTURES, exist_ok=True)
    make_types_fixture()
    make_smollm2_fixture()


if __name__ == "__main__":
    main()
