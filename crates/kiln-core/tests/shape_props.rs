//! Property tests of the shape algebra: views agree with an index-by-index model, broadcasting is
//! NumPy's, and reshape/permute/narrow compose as they should.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cloned_ref_to_slice_refs)] // tests fail loudly by design

use kiln_core::shape::{broadcast_shapes, contiguous_strides, numel};
use kiln_core::{DType, Layout, Tensor};
use proptest::prelude::*;

fn shape_strategy(max_rank: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..5, 1..=max_rank)
}

/// Row-major multi-index of flat position `i`.
fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = i % shape[d];
        i /= shape[d];
    }
    idx
}

fn ravel(idx: &[usize], shape: &[usize]) -> usize {
    idx.iter().zip(contiguous_strides(shape)).map(|(a, s)| a * s).sum()
}

fn iota(shape: &[usize]) -> Tensor {
    let v: Vec<f64> = (0..numel(shape)).map(|i| i as f64).collect();
    Tensor::from_f64(&v, shape, DType::F64, &kiln_cpu::cpu()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn permute_matches_index_model(shape in shape_strategy(4), seed in 0u64..1000) {
        let rank = shape.len();
        let mut perm: Vec<usize> = (0..rank).collect();
        // Fisher–Yates with a seeded LCG.
        let mut s = seed;
        for i in (1..rank).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            perm.swap(i, (s >> 33) as usize % (i + 1));
        }
        let x = iota(&shape);
        let y = x.permute(&perm).unwrap();
        let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
        prop_assert_eq!(y.dims(), &out_shape[..]);
        let vals = y.to_vec::<f64>().unwrap();
        for (i, v) in vals.iter().enumerate() {
            let oi = unravel(i, &out_shape);
            let mut ii = vec![0; rank];
            for (d, &p) in perm.iter().enumerate() { ii[p] = oi[d]; }
            prop_assert_eq!(*v as usize, ravel(&ii, &shape));
        }
        // Permuting back is the identity.
        let mut inv = vec![0; rank];
        for (i, &p) in perm.iter().enumerate() { inv[p] = i; }
        prop_assert_eq!(y.permute(&inv).unwrap().to_vec::<f64>().unwrap(), x.to_vec::<f64>().unwrap());
    }

    #[test]
    fn narrow_matches_index_model(shape in shape_strategy(4), d in 0usize..4, a in 0usize..4, l in 1usize..4) {
        let d = d % shape.len();
        prop_assume!(a + l <= shape[d]);
        let x = iota(&shape);
        let y = x.narrow(d as isize, a, l).unwrap();
        let mut out_shape = shape.clone();
        out_shape[d] = l;
        for (i, v) in y.to_vec::<f64>().unwrap().iter().enumerate() {
            let mut idx = unravel(i, &out_shape);
            idx[d] += a;
            prop_assert_eq!(*v as usize, ravel(&idx, &shape));
        }
    }

    #[test]
    fn broadcasting_is_numpy(a in shape_strategy(3), b in shape_strategy(3), ones in prop::collection::vec(any::<bool>(), 3)) {
        // Make b compatible with a's trailing dims, with some dims set to 1.
        let b: Vec<usize> = b.iter().enumerate().map(|(i, _)| {
            let ai = a.len() as isize - b.len() as isize + i as isize;
            if ai < 0 { 1 + (i % 2) } else if ones[i] { 1 } else { a[ai as usize] }
        }).collect();
        let out = broadcast_shapes("t", &a, &b).unwrap();
        prop_assert_eq!(out.len(), a.len().max(b.len()));
        let x = iota(&a);
        let y = iota(&b);
        let z = x.add(&y).unwrap();
        prop_assert_eq!(z.dims(), &out[..]);
        let (xl, yl) = (Layout::contiguous(&a), Layout::contiguous(&b));
        let zv = z.to_vec::<f64>().unwrap();
        for (i, v) in zv.iter().enumerate() {
            let idx = unravel(i, &out);
            let pick = |l: &Layout| -> f64 {
                let lead = out.len() - l.rank();
                let sub: Vec<usize> = (0..l.rank()).map(|k| if l.shape()[k] == 1 { 0 } else { idx[lead + k] }).collect();
                ravel(&sub, l.shape()) as f64
            };
            prop_assert_eq!(*v, pick(&xl) + pick(&yl));
        }
        // sum_to inverts broadcasting's shape.
        let back = z.sum_to(&b).unwrap();
        prop_assert_eq!(back.dims(), &b[..]);
    }

    #[test]
    fn reshape_round_trips(shape in shape_strategy(4)) {
        let x = iota(&shape);
        let flat = x.reshape(&[x.numel()]).unwrap();
        prop_assert!(flat.same_storage(&x));
        let back = flat.reshape(&shape).unwrap();
        prop_assert_eq!(back.to_vec::<f64>().unwrap(), x.to_vec::<f64>().unwrap());
        // A transposed (strided) tensor reshapes through a copy with the same element order.
        if shape.len() >= 2 {
            let t = x.t().unwrap();
            let r = t.reshape(&[t.numel()]).unwrap();
            prop_assert_eq!(r.to_vec::<f64>().unwrap(), t.to_vec::<f64>().unwrap());
        }
    }

    #[test]
    fn cat_then_split_is_identity(shape in shape_strategy(3), extra in 1usize..4, d in 0usize..3) {
        let d = d % shape.len();
        let x = iota(&shape);
        let mut s2 = shape.clone();
        s2[d] = extra;
        let y = iota(&s2).affine(1.0, 1000.0).unwrap();
        let c = Tensor::cat(&[&x, &y], d as isize).unwrap();
        let parts = c.split(&[shape[d], extra], d as isize).unwrap();
        prop_assert_eq!(parts[0].to_vec::<f64>().unwrap(), x.to_vec::<f64>().unwrap());
        prop_assert_eq!(parts[1].to_vec::<f64>().unwrap(), y.to_vec::<f64>().unwrap());
    }

    #[test]
    fn reductions_match_naive(shape in shape_strategy(3), d in 0usize..3) {
        let d = d % shape.len();
        let x = iota(&shape).affine(0.5, -3.0).unwrap();
        let v = x.to_vec::<f64>().unwrap();
        let s = x.sum(&[d as isize], false).unwrap().to_vec::<f64>().unwrap();
        let m = x.max(&[d as isize], false).unwrap().to_vec::<f64>().unwrap();
        let mut out_shape = shape.clone();
        out_shape.remove(d);
        let mut ns = vec![0.0; numel(&out_shape)];
        let mut nm = vec![f64::NEG_INFINITY; numel(&out_shape)];
        for (i, &val) in v.iter().enumerate() {
            let mut idx = unravel(i, &shape);
            idx.remove(d);
            let o = if out_shape.is_empty() { 0 } else { ravel(&idx, &out_shape) };
            ns[o] += val;
            nm[o] = nm[o].max(val);
        }
        prop_assert_eq!(s, ns);
        prop_assert_eq!(m, nm);
    }
}
