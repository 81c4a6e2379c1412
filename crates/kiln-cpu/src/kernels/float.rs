//! [`KFloat`]: the scalar type of float kernels (`f32`, `f64`).

use super::tile_gemm::TileStrides;
use num_traits::Float;
use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

/// A float the kernels are generic over.
pub trait KFloat:
    Float + AddAssign + SubAssign + MulAssign + DivAssign + Sum + Debug + Default + Send + Sync + 'static
{
    /// Converts from `f64` (rounding).
    fn c(x: f64) -> Self;
    /// Converts to `f64`.
    fn f64(self) -> f64;
    /// `eˣ` for the hot loops: a branch-free polynomial in f32 that LLVM vectorises (relative
    /// error < 2e-7 over the whole range, exact 0 below −87.3 and +∞ above 88.7); `f64::exp`
    /// in f64, so gradient checks see exact values.
    fn fexp(self) -> Self;
    /// `erf x` for the hot loops: Abramowitz & Stegun 7.1.26 on [`KFloat::fexp`] in f32
    /// (absolute error < 1e-6 after f32 rounding), libm in f64.
    fn ferf(self) -> Self;
    /// `C = β·A·B (+ C)` on an attention tile with the register-blocked kernel of
    /// [`super::tile_gemm`] (f32 with AVX2/FMA); false when it cannot run, and the caller takes
    /// the general GEMM.
    fn tile_gemm(
        _c: &mut [Self],
        _a: &[Self],
        _b: &[Self],
        _st: TileStrides,
        _shape: (usize, usize, usize),
        _beta: Self,
        _accumulate: bool,
    ) -> bool {
        false
    }
}

/// Cephes-style `expf`: `eˣ = 2ⁿ·e^r`, `n = round(x·log₂e)`, `r = x − n·ln2` (two-part ln 2),
/// `e^r` by a degree-6 polynomial on |r| ≤ ln2/2, `2ⁿ` built in the exponent bits.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // Adding 1.5·2²³ rounds to the nearest integer and leaves it in the low mantissa bits, so
    // 2ⁿ is built from those bits: no `roundf` call, no float→int cast, every step vectorises.
    const ROUND: f32 = 12_582_912.0;
    // `max`/`min` rather than `clamp`: clamp's NaN handling blocks vectorisation here, and NaN
    // is restored at the end anyway.
    #[allow(clippy::manual_clamp)]
    let xc = x.max(-87.336_55).min(88.376_26);
    let shifted = xc * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = xc - n * 0.693_359_4 - n * -2.121_944_4e-4; // ln 2 in two parts
    let p = 1.987_569_1e-4_f32 * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    let bits = ((shifted.to_bits() as i32 - 0x4B40_0000 + 127) << 23) as u32;
    let y = er * f32::from_bits(bits);
    let y = if x < -87.336_55 { 0.0 } else { y };
    let y = if x > 88.376_26 { f32::INFINITY } else { y };
    if x.is_nan() {
        x
    } else {
        y
    }
}

/// `erf x` = `1 − (a₁t + … + a₅t⁵)·e^(−x²)`, `t = 1/(1 + p|x|)` (A&S 7.1.26), odd-extended.
#[inline(always)]
pub fn erf_f32(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (0.327_591_1_f32 * a + 1.0);
    let poly = t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let y = 1.0 - poly * exp_f32(-a * a);
    y.copysign(x)
}

impl KFloat for f32 {
    #[inline(always)]
    fn c(x: f64) -> f32 {
        x as f32
    }
    #[inline(always)]
    fn f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn fexp(self) -> f32 {
        exp_f32(self)
    }
    #[inline(always)]
    fn tile_gemm(
        c: &mut [f32],
        a: &[f32],
        b: &[f32],
        st: TileStrides,
        shape: (usize, usize, usize),
        beta: f32,
        accumulate: bool,
    ) -> bool {
        super::tile_gemm::tile_gemm(c, a, b, st, shape, beta, accumulate)
    }
    #[inline(always)]
    fn ferf(self) -> f32 {
        erf_f32(self)
    }
}

impl KFloat for f64 {
    #[inline(always)]
    fn c(x: f64) -> f64 {
        x
    }
    #[inline(always)]
    fn f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn fexp(self) -> f64 {
        self.exp()
    }
    #[inline(always)]
    fn ferf(self) -> f64 {
        libm::erf(self)
    }
}

/// Sum with 8 independent accumulators, so the loop vectorises (float addition is not
/// associative, so a single running sum stays scalar).
#[inline]
pub fn sum_lanes<T: KFloat>(xs: &[T]) -> T {
    let mut acc = [T::zero(); 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for k in 0..8 {
            acc[k] += c[k];
        }
    }
    let tail: T = chunks.remainder().iter().copied().sum();
    acc.iter().copied().sum::<T>() + tail
}

/// `Σ_j f(a_j, b_j)` accumulated in f64 with 8 independent lanes: vectorisable (one running
/// sum is a serial chain of dependent adds) and deterministic (a fixed order for any thread
/// count). The statistics of LayerNorm and RMSNorm go through it.
#[inline(always)]
pub fn sum_f64_lanes<T: Copy>(a: &[T], b: &[T], f: impl Fn(T, T) -> f64) -> f64 {
    let mut acc = [0.0f64; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ac.remainder().iter().zip(bc.remainder()).map(|(&x, &y)| f(x, y)).sum();
    for (ca, cb) in ac.zip(bc) {
        for k in 0..8 {
            acc[k] += f(ca[k], cb[k]);
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// `Σ e^(x − m)` with 8 independent accumulators (vectorised exp and sum).
#[inline]
pub fn sum_exp_shifted<T: KFloat>(xs: &[T], m: T) -> T {
    let mut acc = [T::zero(); 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for k in 0..8 {
            acc[k] += (c[k] - m).fexp();
        }
    }
    let tail: T = chunks.remainder().iter().map(|&x| (x - m).fexp()).sum();
    acc.iter().copied().sum::<T>() + tail
}

/// Maximum with 8 independent lanes (NaN-oblivious, like `f32::max`).
#[inline]
pub fn max_lanes<T: KFloat>(xs: &[T]) -> T {
    let mut acc = [T::neg_infinity(); 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for k in 0..8 {
            acc[k] = acc[k].max(c[k]);
        }
    }
    let tail = chunks.remainder().iter().fold(T::neg_infinity(), |a, &b| a.max(b));
    acc.iter().fold(tail, |a, &b| a.max(b))
}

#[cfg(test)]
mod tests {
    use super::{erf_f32, exp_f32};

    #[test]
    fn fast_exp_is_accurate_over_the_range() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (exp_f32(x) as f64, (x as f64).exp());
            worst = worst.max(((got - want) / want).abs());
            x += 0.01;
        }
        assert!(worst < 2e-7, "max relative error {worst}");
        assert_eq!(exp_f32(-200.0), 0.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(100.0), f32::INFINITY);
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(exp_f32(0.0), 1.0);
    }

    #[test]
    fn fast_erf_is_accurate() {
        let mut worst = 0.0f64;
        let mut x = -6.0f32;
        while x < 6.0 {
            worst = worst.max((erf_f32(x) as f64 - libm::erf(x as f64)).abs());
            x += 0.001;
        }
        assert!(worst < 1e-6, "max absolute error {worst}");
    }
}
