//! Shared test helpers: fixture paths, a byte-level GGUF builder for hand-made (and hostile) files,
//! and SHA-256 (to compare dequantized weights with the digests gguf-py produced).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each test file uses a subset

use std::path::PathBuf;

/// `crates/kiln-formats/tests/fixtures/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures").join(name)
}

/// The real SmolLM2 model, fetched by `python3 tools/fetch_models.py smollm2` (git-ignored).
pub fn smollm2_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}

// ------------------------------------------------------------------------------------ builder

/// GGUF value type ids.
pub mod vt {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
}

/// ggml type ids used by the hand-made files.
pub mod gt {
    pub const F32: u32 = 0;
    pub const Q4_0: u32 = 2;
    pub const IQ2_XXS: u32 = 16;
}

/// A GGUF string: u64 length + bytes.
pub fn gstr(s: &[u8]) -> Vec<u8> {
    let mut v = (s.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(s);
    v
}

/// Builds GGUF files byte by byte, so tests can write exactly the (broken) field they want.
#[derive(Clone)]
pub struct Builder {
    pub magic: [u8; 4],
    pub version: u32,
    /// Overrides the tensor / metadata counts written in the header (hostile counts).
    pub n_tensors: Option<u64>,
    pub n_kv: Option<u64>,
    pub kv: Vec<u8>,
    pub kv_count: u64,
    pub infos: Vec<u8>,
    pub info_count: u64,
    pub alignment: usize,
    pub data: Vec<u8>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            magic: *b"GGUF",
            version: 3,
            n_tensors: None,
            n_kv: None,
            kv: vec![],
            kv_count: 0,
            infos: vec![],
            info_count: 0,
            alignment: 32,
            data: vec![],
        }
    }
}

impl Builder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A key/value pair with a raw value payload (the bytes after the type id).
    pub fn kv_raw(mut self, key: &str, type_id: u32, payload: &[u8]) -> Self {
        self.kv.extend(gstr(key.as_bytes()));
        self.kv.extend(type_id.to_le_bytes());
        self.kv.extend_from_slice(payload);
        self.kv_count += 1;
        self
    }

    /// A whole key/value pair given as raw bytes (for broken keys).
    pub fn kv_bytes(mut self, bytes: &[u8]) -> Self {
        self.kv.extend_from_slice(bytes);
        self.kv_count += 1;
        self
    }

    /// A whole tensor info given as raw bytes (for broken names).
    pub fn info_bytes(mut self, bytes: &[u8]) -> Self {
        self.infos.extend_from_slice(bytes);
        self.info_count += 1;
        self
    }

    pub fn kv_u32(self, key: &str, v: u32) -> Self {
        self.kv_raw(key, vt::U32, &v.to_le_bytes())
    }

    pub fn kv_str(self, key: &str, v: &str) -> Self {
        self.kv_raw(key, vt::STRING, &gstr(v.as_bytes()))
    }

    /// A tensor info with raw fields (no data appended).
    pub fn info_raw(mut self, name: &[u8], dims: &[u64], type_id: u32, offset: u64) -> Self {
        self.infos.extend(gstr(name));
        self.infos.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            self.infos.extend(d.to_le_bytes());
        }
        self.infos.extend(type_id.to_le_bytes());
        self.infos.extend(offset.to_le_bytes());
        self.info_count += 1;
        self
    }

    /// An F32 tensor: info at the next aligned data offset, and its values appended.
    pub fn tensor_f32(mut self, name: &str, dims: &[u64], values: &[f32]) -> Self {
        let offset = self.data.len().next_multiple_of(self.alignment);
        self.data.resize(offset, 0);
        for v in values {
            self.data.extend(v.to_le_bytes());
        }
        self.info_raw(name.as_bytes(), dims, gt::F32, offset as u64)
    }

    /// Raw bytes for a tensor of any type: info at the next aligned offset, `bytes` appended.
    pub fn tensor_bytes(mut self, name: &str, dims: &[u64], type_id: u32, bytes: &[u8]) -> Self {
        let offset = self.data.len().next_multiple_of(self.alignment);
        self.data.resize(offset, 0);
        self.data.extend_from_slice(bytes);
        self.info_raw(name.as_bytes(), dims, type_id, offset as u64)
    }

    /// The file: header, metadata, infos, padding to the alignment, data.
    pub fn build(&self) -> Vec<u8> {
        let mut out = self.magic.to_vec();
        out.extend(self.version.to_le_bytes());
        out.extend(self.n_tensors.unwrap_or(self.info_count).to_le_bytes());
        out.extend(self.n_kv.unwrap_or(self.kv_count).to_le_bytes());
        out.extend(&self.kv);
        out.extend(&self.infos);
        out.resize(out.len().next_multiple_of(self.alignment), 0);
        out.extend(&self.data);
        out
    }
}

// ------------------------------------------------------------------------------------ sha256

/// SHA-256 (FIPS 180-4), streaming. Small and slow-ish (~300 MB/s optimised); enough for tests.
pub struct Sha256 {
    h: [u32; 8],
    block: [u8; 64],
    fill: usize,
    len: u64,
}

const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
    0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
    0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
    0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2,
];

impl Default for Sha256 {
    fn default() -> Self {
        Sha256 {
            h: [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19],
            block: [0; 64],
            fill: 0,
            len: 0,
        }
    }
}

impl Sha256 {
    fn compress(h: &mut [u32; 8], block: &[u8; 64]) {
        let mut w = [0u32; 64];
        for (i, c) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = *h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh.wrapping_add(s1).wrapping_add(ch).wrapping_add(K[i]).wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.fill > 0 {
            let n = (64 - self.fill).min(data.len());
            self.block[self.fill..self.fill + n].copy_from_slice(&data[..n]);
            self.fill += n;
            data = &data[n..];
            if self.fill < 64 {
                return;
            }
            let block = self.block;
            Self::compress(&mut self.h, &block);
            self.fill = 0;
        }
        let mut chunks = data.chunks_exact(64);
        for c in &mut chunks {
            Self::compress(&mut self.h, c.try_into().unwrap());
        }
        let rest = chunks.remainder();
        self.block[..rest.len()].copy_from_slice(rest);
        self.fill = rest.len();
    }

    pub fn hex(mut self) -> String {
        let bits = self.len * 8;
        self.update(&[0x80]);
        while self.fill != 56 {
            self.update(&[0]);
        }
        self.update(&bits.to_be_bytes());
        self.h.iter().map(|x| format!("{x:08x}")).collect()
    }
}

/// SHA-256 of f32 values' little-endian bytes, as hex.
pub fn sha256_f32(values: &[f32]) -> String {
    let mut s = Sha256::default();
    let mut buf = Vec::with_capacity(4096 * 4);
    for chunk in values.chunks(4096) {
        buf.clear();
        for v in chunk {
            buf.extend(v.to_le_bytes());
        }
        s.update(&buf);
    }
    s.hex()
}

// ------------------------------------------------------------------------------------ json checks

use kiln_formats::{Array, Value};
use serde_json::Value as Json;

/// Reads and parses a JSON fixture.
pub fn read_json(path: &std::path::Path) -> Json {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The elements of an array as scalar `Value`s (nested arrays as `Value::Array`).
pub fn elements(a: &Array) -> Vec<Value> {
    fn map<T: Clone>(v: &[T], f: impl Fn(T) -> Value) -> Vec<Value> {
        v.iter().cloned().map(f).collect()
    }
    match a {
        Array::U8(v) => map(v, Value::U8),
        Array::I8(v) => map(v, Value::I8),
        Array::U16(v) => map(v, Value::U16),
        Array::I16(v) => map(v, Value::I16),
        Array::U32(v) => map(v, Value::U32),
        Array::I32(v) => map(v, Value::I32),
        Array::F32(v) => map(v, Value::F32),
        Array::Bool(v) => map(v, Value::Bool),
        Array::String(v) => map(v, Value::String),
        Array::Array(v) => map(v, Value::Array),
        Array::U64(v) => map(v, Value::U64),
        Array::I64(v) => map(v, Value::I64),
        Array::F64(v) => map(v, Value::F64),
    }
}

/// Asserts a scalar value equals its JSON (f32 compared exactly after widening to f64, as Python
/// stored it).
pub fn check_scalar(ctx: &str, v: &Value, j: &Json) {
    match v {
        Value::String(s) => assert_eq!(Some(s.as_str()), j.as_str(), "{ctx}"),
        Value::Bool(b) => assert_eq!(Some(*b), j.as_bool(), "{ctx}"),
        Value::F32(x) => assert_eq!(Some(f64::from(*x)), j.as_f64(), "{ctx}"),
        Value::F64(x) => assert_eq!(Some(*x), j.as_f64(), "{ctx}"),
        Value::Array(a) => check_array(ctx, a, j),
        other => {
            let want = j.as_u64().map(i128::from).or_else(|| j.as_i64().map(i128::from));
            assert_eq!(other.as_integer(), want, "{ctx}");
        }
    }
}

/// Asserts an array equals `{"element_type": ..., "values": [...]}` (nested arrays recursively).
pub fn check_array(ctx: &str, a: &Array, j: &Json) {
    assert_eq!(Some(a.element_type().name()), j["element_type"].as_str(), "{ctx}: element type");
    let want = j["values"].as_array().unwrap_or_else(|| panic!("{ctx}: no values"));
    let got = elements(a);
    assert_eq!(got.len(), want.len(), "{ctx}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        check_scalar(&format!("{ctx}[{i}]"), g, w);
    }
}

/// Asserts a metadata value equals `{"type": ..., "value": ...}` or a typed array object.
pub fn check_value(ctx: &str, v: &Value, j: &Json) {
    assert_eq!(Some(v.value_type().name()), j["type"].as_str(), "{ctx}: type");
    match v {
        Value::Array(a) => check_array(ctx, a, j),
        _ => check_scalar(ctx, v, &j["value"]),
    }
}

/// Index and values of the first differing f32 bit pattern, if any.
pub fn first_bit_mismatch(got: &[f32], want_le: &[u8]) -> Option<(usize, f32, f32)> {
    let (want, _) = want_le.as_chunks::<4>();
    assert_eq!(got.len(), want.len(), "element count");
    got.iter().zip(want).enumerate().find_map(|(i, (g, w))| {
        let w = f32::from_le_bytes(*w);
        (g.to_bits() != w.to_bits()).then_some((i, *g, w))
    })
}
