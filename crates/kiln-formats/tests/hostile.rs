//! Hostile and damaged GGUF files: each must give a clear error naming the problem — never a panic,
//! an out-of-bounds read, or an allocation sized by a count the file cannot back.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::{fixture, gstr, gt, vt, Builder};
use kiln_formats::{FormatError, GgufFile};

/// The error `bytes` gives; panics (failing the test) if they parse.
fn err(bytes: &[u8]) -> FormatError {
    match GgufFile::parse(bytes) {
        Ok(g) => panic!("parsed a file that should fail: {g:?}"),
        Err(e) => {
            let _ = e.to_string(); // Display must not panic either
            e
        }
    }
}

/// A small valid file: one string key, two F32 tensors.
fn base() -> Builder {
    Builder::new().kv_str("general.architecture", "test").tensor_f32("a", &[4, 2], &[0.5; 8]).tensor_f32(
        "b",
        &[8],
        &[1.5; 8],
    )
}

#[test]
fn hand_built_file_parses() {
    let g = GgufFile::parse(&base().build()).unwrap();
    assert_eq!(g.tensors().len(), 2);
    assert_eq!(g.tensor_info("a").unwrap().shape(), [2, 4]);
    assert_eq!(g.dequantize(g.tensor_info("b").unwrap()).unwrap(), [1.5; 8]);
    // No tensors, no metadata: valid.
    assert!(GgufFile::parse(&Builder::new().build()).is_ok());
}

#[test]
fn every_prefix_is_an_error() {
    for bytes in [std::fs::read(fixture("types.gguf")).unwrap(), base().build()] {
        assert!(GgufFile::parse(&bytes).is_ok());
        for n in 0..bytes.len() {
            if let Ok(g) = GgufFile::parse(&bytes[..n]) {
                panic!("a prefix of {n} of {} bytes parsed: {g:?}", bytes.len());
            }
        }
    }
}

#[test]
fn bad_magic_and_versions() {
    let mut b = base().build();
    b[..4].copy_from_slice(b"GGML");
    assert!(matches!(err(&b), FormatError::BadMagic { found } if found == b"GGML"));
    assert!(matches!(err(b"GG"), FormatError::Truncated { .. }));
    assert!(matches!(err(b""), FormatError::Truncated { .. }));
    for v in [0, 1, 4, u32::MAX] {
        let b = Builder { version: v, ..base() }.build();
        assert!(matches!(err(&b), FormatError::UnsupportedVersion(x) if x == v), "version {v}");
    }
    let msg = err(&Builder { version: 1, ..base() }.build()).to_string();
    assert!(msg.contains("version 1"), "{msg}");
}

#[test]
fn huge_counts_fail_before_allocating() {
    let huge = 1u64 << 62;
    let b = Builder { n_tensors: Some(huge), ..base() }.build();
    assert!(matches!(err(&b), FormatError::Truncated { field, .. } if field.contains("tensor infos")));
    let b = Builder { n_kv: Some(huge), ..base() }.build();
    assert!(matches!(err(&b), FormatError::Truncated { field, .. } if field.contains("metadata")));
    let b = Builder { n_kv: Some(u64::MAX), n_tensors: Some(u64::MAX), ..base() }.build();
    assert!(matches!(err(&b), FormatError::Truncated { .. }));
}

#[test]
fn string_length_beyond_the_file() {
    let huge = (1u64 << 62).to_le_bytes();
    // A key.
    let mut kv = huge.to_vec();
    kv.extend(b"abc");
    let e = err(&base().kv_bytes(&kv).build());
    assert!(matches!(&e, FormatError::Truncated { needed, .. } if *needed == 1 << 62), "{e}");
    // A string value.
    let e = err(&base().kv_raw("k", vt::STRING, &huge).build());
    assert!(matches!(&e, FormatError::Truncated { field, .. } if field.contains("`k`")), "{e}");
    // u64::MAX (does not fit usize arithmetic either).
    let e = err(&base().kv_raw("k", vt::STRING, &u64::MAX.to_le_bytes()).build());
    assert!(matches!(e, FormatError::Truncated { .. }));
    // A tensor name.
    let mut info = huge.to_vec();
    info.extend(b"name");
    assert!(matches!(err(&base().info_bytes(&info).build()), FormatError::Truncated { .. }));
    // Just one byte more than there is: a 100-byte string with 99 bytes after its length.
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    b.extend(gstr(b"k"));
    b.extend(vt::STRING.to_le_bytes());
    b.extend(100u64.to_le_bytes());
    b.extend([b'x'; 99]);
    let e = err(&b);
    assert!(matches!(e, FormatError::Truncated { needed: 100, available: 99, .. }), "{e}");
    b.push(b'x');
    assert_eq!(GgufFile::parse(&b).unwrap().get_str("k").unwrap(), "x".repeat(100));
}

#[test]
fn array_count_beyond_the_file() {
    for elem in [vt::U8, vt::U64, vt::STRING, vt::ARRAY, vt::BOOL] {
        for count in [1u64 << 62, u64::MAX, 1 << 20] {
            let mut payload = elem.to_le_bytes().to_vec();
            payload.extend(count.to_le_bytes());
            let e = err(&base().kv_raw("tokenizer.ggml.tokens", vt::ARRAY, &payload).build());
            assert!(
                matches!(&e, FormatError::Truncated { field, .. } if field.contains("tokenizer.ggml.tokens")),
                "element type {elem}, count {count}: {e}"
            );
        }
    }
    // Inside a nested array.
    let mut payload = vt::ARRAY.to_le_bytes().to_vec();
    payload.extend(1u64.to_le_bytes());
    payload.extend(vt::STRING.to_le_bytes());
    payload.extend((1u64 << 62).to_le_bytes());
    assert!(matches!(err(&base().kv_raw("k", vt::ARRAY, &payload).build()), FormatError::Truncated { .. }));
}

/// `depth` arrays nested inside each other, innermost an empty i32 array.
fn nested(depth: usize) -> Vec<u8> {
    let mut payload = vec![];
    for _ in 0..depth - 1 {
        payload.extend(vt::ARRAY.to_le_bytes());
        payload.extend(1u64.to_le_bytes());
    }
    payload.extend(vt::I32.to_le_bytes());
    payload.extend(0u64.to_le_bytes());
    payload
}

#[test]
fn nesting_depth_is_bounded() {
    let ok = base().kv_raw("k", vt::ARRAY, &nested(kiln_formats::gguf::MAX_ARRAY_DEPTH)).build();
    assert!(GgufFile::parse(&ok).is_ok());
    let deep = base().kv_raw("k", vt::ARRAY, &nested(kiln_formats::gguf::MAX_ARRAY_DEPTH + 1)).build();
    assert!(matches!(err(&deep), FormatError::ArrayTooDeep { .. }));
    // Deep enough to overflow the stack if the parser recursed without a bound.
    let abyss = base().kv_raw("k", vt::ARRAY, &nested(1_000_000)).build();
    assert!(matches!(err(&abyss), FormatError::ArrayTooDeep { .. }));
}

#[test]
fn bad_values() {
    let e = err(&base().kv_raw("k", 13, &[]).build());
    assert!(matches!(&e, FormatError::BadValueType { id: 13, field } if field.contains("`k`")), "{e}");
    let mut payload = 99u32.to_le_bytes().to_vec();
    payload.extend(1u64.to_le_bytes());
    assert!(matches!(err(&base().kv_raw("k", vt::ARRAY, &payload).build()), FormatError::BadValueType { id: 99, .. }));
    assert!(matches!(err(&base().kv_raw("k", vt::BOOL, &[2]).build()), FormatError::BadBool { byte: 2, .. }));
    let e = err(&base().kv_raw("k", vt::STRING, &gstr(b"\xff\xfe")).build());
    assert!(matches!(&e, FormatError::InvalidUtf8 { field, .. } if field.contains("`k`")), "{e}");
    assert!(matches!(err(&base().kv_bytes(&gstr(b"\xc3")).build()), FormatError::InvalidUtf8 { .. }));
    assert!(matches!(err(&base().info_raw(b"\x80", &[1], gt::F32, 0).build()), FormatError::InvalidUtf8 { .. }));
    let e = err(&base().kv_str("general.architecture", "again").build());
    assert!(matches!(&e, FormatError::DuplicateKey(k) if k == "general.architecture"), "{e}");
}

#[test]
fn alignment_key() {
    for (payload, ty) in
        [(0u32.to_le_bytes().to_vec(), vt::U32), (3u32.to_le_bytes().to_vec(), vt::U32), (gstr(b"32"), vt::STRING)]
    {
        let b = Builder::new().kv_raw("general.alignment", ty, &payload).tensor_f32("a", &[8], &[0.0; 8]).build();
        assert!(matches!(err(&b), FormatError::BadAlignment { .. }));
    }
    // A non-default alignment moves the data section and constrains the offsets.
    let b = Builder { alignment: 64, ..Builder::new() }
        .kv_raw("general.alignment", vt::U8, &[64])
        .tensor_f32("a", &[4], &[1.0; 4])
        .tensor_f32("b", &[4], &[2.0; 4]);
    let g = GgufFile::parse(&b.build()).unwrap();
    assert_eq!((g.alignment(), g.data_offset() % 64, g.tensor_info("b").unwrap().offset), (64, 0, 64));
    assert_eq!(g.dequantize(g.tensor_info("b").unwrap()).unwrap(), [2.0; 4]);
    let mut bad = Builder { alignment: 64, ..Builder::new() }.kv_raw("general.alignment", vt::U8, &[64]);
    bad.data = vec![0; 128];
    let bad = bad.info_raw(b"a", &[4], gt::F32, 32).build();
    assert!(matches!(err(&bad), FormatError::MisalignedOffset { alignment: 64, offset: 32, .. }));
}

/// `base()` plus a tensor info `name` with raw fields, and `extra` data bytes so offsets have room.
fn with_info(dims: &[u64], ty: u32, offset: u64) -> Vec<u8> {
    let mut b = base();
    b.data.resize(b.data.len() + 256, 0);
    b.info_raw(b"c", dims, ty, offset).build()
}

#[test]
fn tensor_info_errors() {
    let e = err(&with_info(&[1, 1, 1, 1, 1], gt::F32, 64));
    assert!(matches!(&e, FormatError::TooManyDims { tensor, n_dims: 5 } if tensor == "c"), "{e}");
    assert!(matches!(err(&with_info(&[1; 64], gt::F32, 64)), FormatError::TooManyDims { .. }));
    let e = err(&with_info(&[8], 999, 64));
    assert!(matches!(&e, FormatError::UnknownGgmlType { tensor, id: 999 } if tensor == "c"), "{e}");
    assert!(e.to_string().contains("999") && e.to_string().contains("`c`"));
    for removed in [4, 5, 31] {
        assert!(matches!(err(&with_info(&[8], removed, 64)), FormatError::UnknownGgmlType { .. }));
    }
    // Dims whose product overflows u64, exceeds ggml's int64, or one dim beyond i64::MAX.
    for dims in [
        &[1 << 32, 1 << 32][..],
        &[1 << 62, 2],
        &[1 << 63],
        &[u64::MAX, 0],
        &[3, 1 << 62, 1 << 62, 5],
        &[1 << 62, 1 << 62, 0],
    ] {
        let e = err(&with_info(dims, gt::F32, 64));
        assert!(matches!(&e, FormatError::BadDims { tensor, .. } if tensor == "c"), "{dims:?}: {e}");
    }
    // Q4_0 rows must be whole 32-element blocks.
    let e = err(&with_info(&[16, 2], gt::Q4_0, 64));
    assert!(matches!(e, FormatError::RowNotBlockMultiple { ne0: 16, block: 32, .. }));
    // A product that fits but whose bytes lie far beyond the file.
    let e = err(&with_info(&[1 << 30, 1 << 30], gt::F32, 64));
    assert!(matches!(&e, FormatError::DataOutOfBounds { tensor, .. } if tensor == "c"), "{e}");
}

#[test]
fn tensor_data_placement_errors() {
    // Offset past the end of the file, and offsets near u64::MAX (aligned, so the add overflows).
    for offset in [1 << 40, u64::MAX - 31, 320] {
        let e = err(&with_info(&[8], gt::F32, offset));
        assert!(matches!(&e, FormatError::DataOutOfBounds { tensor, .. } if tensor == "c"), "{offset}: {e}");
    }
    // Misaligned.
    let e = err(&with_info(&[8], gt::F32, 68));
    assert!(matches!(&e, FormatError::MisalignedOffset { tensor, offset: 68, alignment: 32 } if tensor == "c"), "{e}");
    // Overlapping: "c" starts inside "a" (bytes 0..32), or sits exactly on "b".
    for offset in [0, 32] {
        let e = err(&with_info(&[8], gt::F32, offset));
        assert!(
            matches!(&e, FormatError::Overlap { second, .. } if second == "c" || second == "a" || second == "b"),
            "{e}"
        );
    }
    // Partial overlap of a longer tensor.
    let mut b = Builder::new().tensor_f32("long", &[16], &[0.0; 16]);
    b.data.resize(128, 0);
    let e = err(&b.info_raw(b"short", &[8], gt::F32, 32).build());
    assert!(matches!(&e, FormatError::Overlap { first, second, .. } if first == "long" && second == "short"), "{e}");
    // Duplicate names.
    let e = err(&base().tensor_f32("a", &[8], &[0.0; 8]).build());
    assert!(matches!(&e, FormatError::DuplicateTensor(n) if n == "a"), "{e}");
    // Empty tensors overlap nothing.
    assert!(GgufFile::parse(&with_info(&[0, 5], gt::F32, 0)).is_ok());
}

#[test]
fn known_but_unsupported_types_parse_then_refuse_to_dequantize() {
    let b = Builder::new().tensor_bytes("iq", &[256, 2], gt::IQ2_XXS, &[0; 2 * 66]).build();
    let g = GgufFile::parse(&b).unwrap();
    let info = g.tensor_info("iq").unwrap();
    assert_eq!(g.tensor_data(info).len(), 132);
    assert!(matches!(g.dequantize(info), Err(FormatError::UnsupportedType(t)) if t.name() == "IQ2_XXS"));
    let msg = g.tensor("iq", &kiln_cpu::cpu()).unwrap_err().to_string();
    assert!(msg.contains("unsupported ggml type IQ2_XXS"), "{msg}");
}

#[test]
fn open_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.gguf");
    let e = GgufFile::open(&missing).unwrap_err();
    assert!(matches!(e, FormatError::Io { .. }) && e.to_string().contains("missing.gguf"), "{e}");
    let bad = dir.path().join("bad.gguf");
    std::fs::write(&bad, with_info(&[8], 999, 64)).unwrap();
    let msg = GgufFile::open(&bad).unwrap_err().to_string();
    assert!(msg.contains("bad.gguf") && msg.contains("tensor `c`") && msg.contains("999"), "{msg}");
    // And through kiln-core's error type.
    let core: kiln_core::Error = GgufFile::open(&bad).unwrap_err().into();
    assert!(core.to_string().contains("bad.gguf"));
}

/// xorshift64*: a tiny seeded generator, so the mutation sequence is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Parses `bytes` and, when they parse, uses every accessor; returns whether they parsed.
fn exercise(bytes: &[u8]) -> bool {
    match GgufFile::parse(bytes) {
        Err(e) => {
            let _ = e.to_string();
            false
        }
        Ok(g) => {
            for (k, _) in g.metadata() {
                let _ = (g.get_str(k), g.get_u32(k), g.get_u64(k), g.get_f32(k), g.get_bool(k));
                let _ = (g.get_str_array(k), g.get_i32_array(k), g.get_f32_array(k));
            }
            let dev = kiln_cpu::cpu();
            for t in g.tensors() {
                let _ = (g.tensor_data(t), t.shape(), t.row_bytes(), t.n_rows());
                let _ = g.dequantize(t);
                let _ = g.tensor(&t.name, &dev);
            }
            let _ = kiln_formats::gguf::safetensors_metadata(&g);
            true
        }
    }
}

#[test]
fn random_mutations_never_panic() {
    let original = std::fs::read(fixture("types.gguf")).unwrap();
    let header_len = GgufFile::parse(&original).unwrap().data_offset() as usize;
    // Values that stress length, count and offset fields.
    let interesting = [0u64, 1, 31, 0xFF, 1 << 31, 1 << 32, 1 << 62, u64::MAX, original.len() as u64];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut parsed = 0;
    // KILN_GGUF_MUTATIONS=N runs a longer campaign (the default keeps the suite fast).
    let cases: usize = std::env::var("KILN_GGUF_MUTATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    for case in 0..cases {
        let mut b = original.clone();
        for _ in 0..1 + rng.below(4) {
            // Three edits in four land in the header, where the structure is.
            let pos = if rng.below(4) < 3 { rng.below(header_len) } else { rng.below(b.len()) }.min(b.len() - 1);
            match rng.below(5) {
                0 => b[pos] ^= 1 << rng.below(8),
                1 => b[pos] = rng.next() as u8,
                2 => {
                    let v = interesting[rng.below(interesting.len())].to_le_bytes();
                    let n = v.len().min(b.len() - pos);
                    b[pos..pos + n].copy_from_slice(&v[..n]);
                }
                3 => {
                    b.remove(pos);
                }
                _ => b.insert(pos, rng.next() as u8),
            }
        }
        match std::panic::catch_unwind(|| exercise(&b)) {
            Ok(ok) => parsed += usize::from(ok),
            Err(_) => panic!("mutation case {case} panicked"),
        }
    }
    eprintln!("{parsed} of {cases} mutated files still parsed (and were fully exercised)");
    assert!(parsed > 0 && parsed < cases);
}
