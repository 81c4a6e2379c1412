//! [`KFloat`]: the scalar type of float kernels (`f32`, `f64`).

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
    /// The error function.
    fn erf(self) -> Self;
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
    fn erf(self) -> f32 {
        libm::erff(self)
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
    fn erf(self) -> f64 {
        libm::erf(self)
    }
}
