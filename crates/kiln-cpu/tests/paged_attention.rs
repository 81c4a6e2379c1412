//! The paged-attention kernel against its reference (gather + dense attention), for f32, f16 and
//! bf16 caches and int8 rows, sliding windows, GQA, scattered and shared blocks, decode and
//! chunked-prefill query tokens; the
//! paged write; and metadata errors.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use kiln_core::ops::{q8_dequantize_row, q8_row_bytes, PagedBatch};
use kiln_core::{DType, Tensor};

fn ids(v: &[i64]) -> Tensor {
    Tensor::from_vec(v.to_vec(), &[v.len()], &kiln_cpu::cpu()).unwrap()
}

/// A batch over `tables` (one row per sequence) with query tokens `(seq, visible keys)`.
fn batch(tables: &[Vec<i64>], tokens: &[(i64, i64)], bs: usize) -> PagedBatch {
    let mb = tables.iter().map(Vec::len).max().unwrap();
    let flat: Vec<i64> = tables.iter().flat_map(|t| t.iter().copied().chain(std::iter::repeat(0)).take(mb)).collect();
    let seq: Vec<i64> = tokens.iter().map(|t| t.0).collect();
    let len: Vec<i64> = tokens.iter().map(|t| t.1).collect();
    let pos: Vec<i64> = len.iter().map(|l| l - 1).collect();
    PagedBatch {
        block_tables: Tensor::from_vec(flat, &[tables.len(), mb], &kiln_cpu::cpu()).unwrap(),
        token_seq: ids(&seq),
        token_len: ids(&len),
        slots: ids(&vec![0; seq.len()]),
        positions: ids(&pos),
        block_size: bs,
    }
}

fn max_err(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
    assert_eq!(a.len(), b.len());
    a.iter().zip(&b).map(|(x, y)| (x - y).abs() as f64).fold(0.0, f64::max)
}

fn check(h: usize, hkv: usize, d: usize, bs: usize, blocks: usize, tables: &[Vec<i64>], tokens: &[(i64, i64)]) {
    let dev = kiln_cpu::cpu();
    let b = batch(tables, tokens, bs);
    let q = Tensor::randn(&[tokens.len(), h, d], 0.0, 1.0, DType::F32, 1, &dev).unwrap();
    let k = Tensor::randn(&[blocks * bs, hkv, d], 0.0, 1.0, DType::F32, 2, &dev).unwrap();
    let v = Tensor::randn(&[blocks * bs, hkv, d], 0.0, 1.0, DType::F32, 3, &dev).unwrap();
    for (dtype, tol) in [(DType::F32, 1e-5), (DType::F16, 1e-5), (DType::BF16, 1e-5)] {
        // The reference widens the same rounded cache, so every dtype matches to f32 accuracy.
        let (k, v) = (k.to_dtype(dtype).unwrap(), v.to_dtype(dtype).unwrap());
        let fast = Tensor::paged_attention(&q, &k, &v, &b, None, None).unwrap();
        let slow = Tensor::paged_attention_reference(&q, &k, &v, &b, None, None).unwrap();
        assert_eq!(fast.dims(), &[tokens.len(), h, d]);
        let e = max_err(&fast, &slow);
        assert!(e < tol, "H={h} Hkv={hkv} D={d} {dtype}: max error {e}");
    }
    // A sliding window of 3 keys (Mistral): the last 3 visible keys only.
    let fast = Tensor::paged_attention(&q, &k, &v, &b, None, Some(3)).unwrap();
    let slow = Tensor::paged_attention_reference(&q, &k, &v, &b, None, Some(3)).unwrap();
    let e = max_err(&fast, &slow);
    assert!(e < 1e-5, "H={h} Hkv={hkv} D={d} window 3: max error {e}");
    let full = Tensor::paged_attention(&q, &k, &v, &b, None, None).unwrap();
    if tokens.iter().any(|t| t.1 > 3) {
        assert!(max_err(&fast, &full) > 1e-3, "the window changes tokens that see more than 3 keys");
    }
    assert!(Tensor::paged_attention(&q, &k, &v, &b, None, Some(0)).is_err());
    // int8 rows: the kernel equals the reference on the same codes, and both stay within the
    // quantization error of f32 attention.
    let int8 = |c: &Tensor| {
        let q8 = Tensor::zeros(&[blocks * bs, hkv, q8_row_bytes(d)], DType::U8, &dev).unwrap();
        let all: Vec<i64> = (0..(blocks * bs) as i64).collect();
        q8.paged_write_(&ids(&all), c).unwrap();
        q8
    };
    let (k8, v8) = (int8(&k), int8(&v));
    let fast = Tensor::paged_attention(&q, &k8, &v8, &b, None, None).unwrap();
    let slow = Tensor::paged_attention_reference(&q, &k8, &v8, &b, None, None).unwrap();
    let e = max_err(&fast, &slow);
    assert!(e < 1e-5, "H={h} Hkv={hkv} D={d} int8: max error {e}");
    let exact = Tensor::paged_attention(&q, &k, &v, &b, None, None).unwrap();
    let e = max_err(&fast, &exact);
    assert!(e < 0.05, "H={h} Hkv={hkv} D={d} int8 vs f32: {e}");
}

#[test]
fn paged_attention_matches_gather_then_dense_attention() {
    // Three sequences over scattered blocks of 4; sequences 0 and 2 share block 5 (a common
    // prefix); sequence 1 has three query tokens (a prefill chunk), the others decode.
    let tables = vec![vec![5, 2, 9], vec![0, 7], vec![5, 11, 3, 1]];
    let tokens = [(0, 9), (1, 5), (1, 6), (1, 7), (2, 16), (0, 1)];
    check(6, 2, 16, 4, 12, &tables, &tokens); // GQA, G = 3
    check(4, 4, 20, 4, 12, &tables, &tokens); // MHA, D not a multiple of 8
    check(8, 1, 8, 4, 12, &tables, &tokens); // MQA
}

#[test]
fn paged_attention_parallel_path_matches_reference() {
    // Enough work to take the threaded path: 24 decode tokens over 64-key contexts.
    let tables: Vec<Vec<i64>> = (0..24).map(|s| (0..4).map(|j| ((s * 4 + j) * 7 % 96) as i64).collect()).collect();
    let tokens: Vec<(i64, i64)> = (0..24).map(|s| (s as i64, 40 + s as i64)).collect();
    check(9, 3, 64, 16, 96, &tables, &tokens);
}

#[test]
fn paged_write_stores_rows_at_slots_in_the_cache_dtype() {
    let dev = kiln_cpu::cpu();
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let cache = Tensor::zeros(&[8, 2, 3], dtype, &dev).unwrap();
        let src = Tensor::from_vec((0..12).map(|x| x as f32 * 0.5).collect::<Vec<_>>(), &[2, 2, 3], &dev).unwrap();
        cache.paged_write_(&ids(&[6, 1]), &src).unwrap();
        let got = cache.to_dtype(DType::F32).unwrap().to_vec::<f32>().unwrap();
        for (slot, row) in [(6usize, 0usize), (1, 1)] {
            assert_eq!(&got[slot * 6..slot * 6 + 6], &src.to_vec::<f32>().unwrap()[row * 6..row * 6 + 6], "{dtype}");
        }
        let written: f32 = got.iter().map(|x| x.abs()).sum();
        let expected: f32 = (0..12).map(|x| x as f32 * 0.5).sum();
        assert_eq!(written, expected, "{dtype}: nothing else written");
        let err = cache.paged_write_(&ids(&[8, 0]), &src).unwrap_err().to_string();
        assert!(err.contains("paged_write"), "{err}");
    }
    // int8: each (slot, head) row is its f32 scale and codes; values come back within half a step.
    let cache = Tensor::zeros(&[8, 2, q8_row_bytes(3)], DType::U8, &dev).unwrap();
    let src = Tensor::from_vec((0..12).map(|x| (x as f32 - 5.0) * 0.37).collect::<Vec<_>>(), &[2, 2, 3], &dev).unwrap();
    cache.paged_write_(&ids(&[6, 1]), &src).unwrap();
    let bytes = cache.to_vec::<u8>().unwrap();
    let want = src.to_vec::<f32>().unwrap();
    for (slot, row) in [(6usize, 0usize), (1, 1)] {
        for head in 0..2 {
            let at = (slot * 2 + head) * q8_row_bytes(3);
            let mut got = [0f32; 3];
            q8_dequantize_row(&bytes[at..at + q8_row_bytes(3)], &mut got);
            let x = &want[(row * 2 + head) * 3..(row * 2 + head) * 3 + 3];
            let step = x.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
            assert!(got.iter().zip(x).all(|(g, w)| (g - w).abs() <= step / 2.0 + 1e-7), "{got:?} vs {x:?}");
        }
    }
    assert!(bytes.iter().filter(|&&b| b != 0).count() <= 2 * 2 * q8_row_bytes(3), "nothing else written");
    // a row width that is not D + 4 is a shape error
    let wrong = Tensor::zeros(&[8, 2, 3], DType::U8, &dev).unwrap();
    assert!(wrong.paged_write_(&ids(&[0, 1]), &src).is_err());
    // scalars are shape errors, not panics
    let scalar = Tensor::from_vec(vec![1f32], &[], &dev).unwrap();
    assert!(scalar.paged_write_(&ids(&[0]), &scalar).is_err());
}

#[test]
fn bad_paged_metadata_is_an_error_not_a_panic() {
    let dev = kiln_cpu::cpu();
    let q = Tensor::zeros(&[1, 2, 8], DType::F32, &dev).unwrap();
    let k = Tensor::zeros(&[8, 2, 8], DType::F32, &dev).unwrap();
    for (tables, tokens, what) in [
        (vec![vec![2i64]], vec![(0i64, 1i64)], "block 2 of 2"),
        (vec![vec![1]], vec![(1, 1)], "sequence 1 of 1"),
        (vec![vec![1]], vec![(0, 5)], "5 keys, table of 4"),
        (vec![vec![1]], vec![(0, 0)], "no keys"),
    ] {
        let b = batch(&tables, &tokens, 4);
        let r = Tensor::paged_attention(&q, &k, &k, &b, None, None);
        assert!(r.is_err(), "{what}: accepted");
    }
    let b = batch(&[vec![0]], &[(0, 1)], 3);
    assert!(Tensor::paged_attention(&q, &k, &k, &b, None, None).is_err(), "8 slots are not blocks of 3");
}
