//! The small GGUF fixture written by `tools/make_gguf_fixtures.py`: metadata of every value type
//! equal to what gguf-py wrote and read back, every supported ggml type dequantized bit-equal to
//! `gguf.quants.dequantize`, the row-wise API agreeing with the whole-tensor one, kiln tensors with
//! reversed dims, and the safetensors conversion.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::{check_value, first_bit_mismatch, fixture, read_json};
use kiln_core::DType;
use kiln_formats::quant::{dequantize_row_into, GgmlType};
use kiln_formats::{convert_to_safetensors, FormatError, GgufFile};
use std::collections::HashSet;

fn open() -> GgufFile {
    GgufFile::open(fixture("types.gguf")).unwrap()
}

#[test]
fn header_and_metadata_match_the_reference() {
    let g = open();
    let doc = read_json(&fixture("types.json"));
    assert_eq!(u64::from(g.version()), doc["version"].as_u64().unwrap());
    assert_eq!(g.alignment(), doc["alignment"].as_u64().unwrap());
    assert_eq!(g.data_offset() % g.alignment(), 0);
    let meta = doc["metadata"].as_array().unwrap();
    assert_eq!(g.metadata().len(), meta.len());
    for ((key, value), j) in g.metadata().iter().zip(meta) {
        assert_eq!(Some(key.as_str()), j["key"].as_str());
        check_value(key, value, j);
    }
}

#[test]
fn typed_getters() {
    let g = open();
    assert_eq!(g.get_str("general.architecture").unwrap(), "kiln-test");
    assert_eq!(g.get_str("general.name").unwrap(), "h\u{e9}llo, w\u{f6}rld \u{2713} \u{1f525}");
    assert_eq!(g.get_str("test.string_empty").unwrap(), "");
    // Integers of any type, when they fit.
    assert_eq!(g.get_u32("test.u8").unwrap(), 200);
    assert_eq!(g.get_u32("test.u16").unwrap(), 60000);
    assert_eq!(g.get_u32("test.u32").unwrap(), 4_000_000_000);
    assert_eq!(g.get_u32("test.small_u64").unwrap(), 7);
    assert_eq!(g.get_u64("test.u64").unwrap(), (1 << 63) + 5);
    assert_eq!(g.get_i64("test.i64").unwrap(), -(1 << 62) - 7);
    assert_eq!(g.get_i64("test.i8").unwrap(), -100);
    assert!(matches!(g.get_u32("test.u64"), Err(FormatError::WrongType { .. })));
    assert!(matches!(g.get_u32("test.i8"), Err(FormatError::WrongType { .. })));
    assert!(matches!(g.get_u64("test.i32"), Err(FormatError::WrongType { .. })));
    assert!(matches!(g.get_u32("test.f32"), Err(FormatError::WrongType { .. })));
    assert!(matches!(g.get_u32("no.such.key"), Err(FormatError::MissingKey(k)) if k == "no.such.key"));
    // Floats and bools.
    assert_eq!(g.get_f32("test.f32").unwrap(), 1.234567f32);
    assert_eq!(g.get_f32("test.f64").unwrap(), std::f64::consts::E as f32);
    assert!(g.get_f32("test.u8").is_err());
    assert!(g.get_bool("test.bool_true").unwrap());
    assert!(!g.get_bool("test.bool_false").unwrap());
    assert!(g.get_bool("test.u8").is_err());
    // Tokenizer-style arrays.
    assert_eq!(g.get_str_array("tokenizer.ggml.tokens").unwrap(), ["<unk>", "a", "b", "ab", "\u{120}a"]);
    assert_eq!(g.get_str_array("tokenizer.ggml.merges").unwrap(), ["a b", "\u{120} a"]);
    assert_eq!(g.get_f32_array("tokenizer.ggml.scores").unwrap(), [0.0, -1.0, -2.0, -3.5, -4.25]);
    assert_eq!(g.get_i32_array("tokenizer.ggml.token_type").unwrap(), [2, 1, 1, 1, 1]);
    assert_eq!(g.get_i32_array("test.array.u8").unwrap(), [0, 1, 255]);
    assert_eq!(g.get_i32_array("test.array.i16").unwrap(), [-32768, 32767]);
    assert_eq!(g.get_i32_array("test.array.empty").unwrap(), Vec::<i32>::new());
    assert!(g.get_i32_array("test.array.u32").is_err()); // 4294967295 does not fit
    assert!(g.get_str_array("test.array.i32").is_err());
    assert!(g.get_str_array("general.architecture").is_err());
    assert_eq!(g.get_f32_array("test.array.f64").unwrap(), [0.1f32, f32::NEG_INFINITY]); // -1e300 rounds to -inf
    assert_eq!(g.get_array("test.array.nested_i32").unwrap().len(), 2);
    // Error messages name the key and what was found.
    let msg = g.get_str("test.u8").unwrap_err().to_string();
    assert!(msg.contains("test.u8") && msg.contains("UINT8 200"), "{msg}");
}

#[test]
fn tensors_dequantize_bit_equal_to_gguf_py() {
    let g = open();
    let doc = read_json(&fixture("types.json"));
    let st_bytes = std::fs::read(fixture("types_expected.safetensors")).unwrap();
    let expected = safetensors::SafeTensors::deserialize(&st_bytes).unwrap();
    let infos = doc["tensors"].as_array().unwrap();
    assert_eq!(g.tensors().len(), infos.len());
    let mut types = HashSet::new();
    for (info, j) in g.tensors().iter().zip(infos) {
        let name = &info.name;
        assert_eq!(Some(name.as_str()), j["name"].as_str());
        assert_eq!(Some(info.ggml_type.name()), j["type"].as_str(), "{name}");
        let dims: Vec<u64> = j["dims"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).collect();
        assert_eq!(info.dims, dims, "{name}");
        assert_eq!(Some(info.offset), j["offset"].as_u64(), "{name}");
        assert_eq!(Some(info.n_bytes), j["n_bytes"].as_u64(), "{name}");
        assert_eq!(g.tensor_data(info).len() as u64, info.n_bytes);
        assert!(std::ptr::eq(g.tensor_info(name).unwrap(), info));

        let got = g.dequantize(info).unwrap();
        let want = expected.tensor(name).unwrap();
        assert_eq!(want.shape(), info.shape(), "{name}: row-major shape");
        if let Some((i, a, b)) = first_bit_mismatch(&got, want.data()) {
            panic!(
                "{name} ({}): element {i} is {a:e} ({:#010x}), gguf-py has {b:e} ({:#010x})",
                info.ggml_type,
                a.to_bits(),
                b.to_bits()
            );
        }

        // Row by row through the allocation-free API: the same bits.
        let (row_len, row_bytes) = (info.row_len() as usize, info.row_bytes() as usize);
        let data = g.tensor_data(info);
        let mut row = vec![0f32; row_len];
        for r in 0..info.n_rows() as usize {
            dequantize_row_into(info.ggml_type, &data[r * row_bytes..(r + 1) * row_bytes], &mut row).unwrap();
            let want_row = &got[r * row_len..(r + 1) * row_len];
            assert!(row.iter().zip(want_row).all(|(a, b)| a.to_bits() == b.to_bits()), "{name} row {r}");
        }
        types.insert(info.ggml_type);
    }
    for ty in GgmlType::SUPPORTED {
        assert!(types.contains(&ty), "fixture lacks a {ty} tensor");
    }
}

#[test]
fn kiln_tensors_reverse_dims_and_keep_half_types() {
    let g = open();
    let dev = kiln_cpu::cpu();
    for info in g.tensors() {
        let t = g.tensor(&info.name, &dev).unwrap();
        assert_eq!(t.dims(), info.shape().as_slice(), "{}", info.name);
        let want = g.dequantize(info).unwrap();
        let got: Vec<f32> = match info.ggml_type {
            GgmlType::F16 => {
                assert_eq!(t.dtype(), DType::F16);
                t.to_vec::<half::f16>().unwrap().iter().map(|x| x.to_f32()).collect()
            }
            GgmlType::BF16 => {
                assert_eq!(t.dtype(), DType::BF16);
                t.to_vec::<half::bf16>().unwrap().iter().map(|x| x.to_f32()).collect()
            }
            _ => {
                assert_eq!(t.dtype(), DType::F32);
                t.to_vec::<f32>().unwrap()
            }
        };
        assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{}", info.name);
    }
    // GGUF [32, 4, 3, 2] is row-major [2, 3, 4, 32].
    assert_eq!(g.tensor("t.f32.4d", &dev).unwrap().dims(), &[2, 3, 4, 32]);
    let err = g.tensor("no.such.tensor", &dev).unwrap_err().to_string();
    assert!(err.contains("no.such.tensor"), "{err}");
}

#[test]
fn convert_to_safetensors_round_trips() {
    let g = open();
    let dev = kiln_cpu::cpu();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("types.safetensors");
    convert_to_safetensors(&g, &out, &dev).unwrap();
    let names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["types.safetensors"], "no temp file left behind");

    let (tensors, meta) = kiln_core::safetensors::load(&out, &dev).unwrap();
    assert_eq!(tensors.len(), g.tensors().len());
    for (name, t) in &tensors {
        let orig = g.tensor(name, &dev).unwrap();
        assert_eq!(t.dims(), orig.dims(), "{name}");
        assert_eq!(t.dtype(), orig.dtype(), "{name}");
        let bits =
            |x: &kiln_core::Tensor| -> Vec<u64> { x.to_vec_f64().unwrap().iter().map(|v| v.to_bits()).collect() };
        assert_eq!(bits(t), bits(&orig), "{name}");
    }
    assert_eq!(meta["general.architecture"], "kiln-test");
    assert_eq!(meta["test.u8"], "200");
    assert_eq!(meta["test.i64"], (-(1i64 << 62) - 7).to_string());
    assert_eq!(meta["test.u64"], ((1u64 << 63) + 5).to_string());
    assert_eq!(meta["test.f32"], "1.234567");
    assert_eq!(meta["test.bool_true"], "true");
    assert_eq!(meta["test.string_empty"], "");
    assert!(!meta.contains_key("tokenizer.ggml.tokens"), "arrays are not scalars");
    let scalars = g.metadata().iter().filter(|(_, v)| !matches!(v, kiln_formats::Value::Array(_))).count();
    assert_eq!(meta.len(), scalars);
}

#[test]
fn version_2_parse_and_bytes_apis_agree() {
    let bytes = std::fs::read(fixture("types.gguf")).unwrap();
    let from_file = open();
    let from_slice = GgufFile::parse(&bytes).unwrap();
    let from_vec = GgufFile::from_vec(bytes.clone()).unwrap();
    // GGUF v2 has the same layout as v3 (v3 only added big-endian files).
    let mut v2 = bytes.clone();
    v2[4..8].copy_from_slice(&2u32.to_le_bytes());
    let v2 = GgufFile::parse(&v2).unwrap();
    assert_eq!(v2.version(), 2);
    assert_eq!(from_file.path(), Some(fixture("types.gguf").as_path()));
    assert_eq!(from_slice.path(), None);
    for g in [&from_slice, &from_vec, &v2] {
        assert_eq!(g.metadata(), from_file.metadata());
        assert_eq!(g.tensors(), from_file.tensors());
        assert_eq!(g.data_offset(), from_file.data_offset());
        for t in g.tensors() {
            assert_eq!(g.tensor_data(t), from_file.tensor_data(t));
        }
    }
}
