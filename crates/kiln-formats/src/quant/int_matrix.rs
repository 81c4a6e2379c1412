//! [`IntMatrix`]: the integer weight formats of the quantization notes (seed ch. 22; notes
//! 002/004) that ggml's 32-blocks do not cover — a per-channel int8 matrix and group-wise
//! asymmetric int4 with larger groups — kept quantized in memory and multiplied without
//! materialising `W` (`y = x·Wᵀ`, rows = output channels):
//!
//! ```text
//! W8A16    w[r,k] = s_r · c[r,k],        c ∈ [−127, 127], s_r = max_k |w[r,k]| / 127
//!          y[i,r] = s_r · Σ_k c[r,k]·x[i,k]                     (activations stay f32)
//! W8A8     same weights; each activation row (token) quantized on the fly, symmetric:
//!          x[i,k] ≈ t_i · q[i,k], t_i = max_k |x[i,k]| / 127
//!          y[i,r] = s_r · t_i · Σ_k c[r,k]·q[i,k]               (an integer dot per (i, r))
//! INT4-Gg  w[r,k] = d[r,g] · u[r,k] + m[r,g],  u ∈ 0..15, g = ⌊k / G⌋, G ∈ {32, 64, 128}
//!          d = (max − min) / 15, m = min over the group (asymmetric); d and m stored as f16
//!          y[i,r] = Σ_g d[r,g] · Σ_{blocks b of g} t_ib·Σ u·q  +  Σ_g m[r,g] · Σ_{b of g} t_ib·Σ q
//!          (activations quantized to 8 bits per 32-block, as llama.cpp does for Q4_1)
//! ```
//!
//! Bytes per weight: W8 1 (+ 4 per row), INT4-G32/64/128 0.625 / 0.5625 / 0.53125. Rounding
//! happens against the stored (f16) scales, so dequantization reproduces exactly the values
//! the codes were chosen for. INT4 nibbles keep ggml's order within each 32-block (byte `j` holds
//! element `j` low and `j + 16` high), so the Q4_1 block kernel serves. The AVX2 kernels
//! (`int_avx2.rs`) are chosen at run time; the scalar references here compute the same sums.

use super::matrix::{check_matmul_t, split_rows_t};
use super::vec_dot::Q8Row;
use super::QK;
use crate::{FormatError, Result};
use half::f16;
use kiln_core::quant::QuantMatrix;
use rayon::prelude::*;

/// The INT4 group sizes kiln stores.
pub const INT4_GROUPS: [usize; 3] = [32, 64, 128];

/// One of [`IntMatrix`]'s formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntFormat {
    /// int8 weights, one scale per output channel; activations unquantized.
    W8A16,
    /// int8 weights per channel; activations int8 per token (dynamic, symmetric).
    W8A8,
    /// int4 weights with an f16 scale and minimum per `group` consecutive weights of a row.
    Int4 {
        /// Weights per (scale, minimum): one of [`INT4_GROUPS`].
        group: usize,
    },
}

impl IntFormat {
    /// Parses `w8a16`, `w8a8` or `int4-g32` / `int4-g64` / `int4-g128` (any case).
    pub fn from_name(s: &str) -> Option<IntFormat> {
        match s.to_ascii_lowercase().as_str() {
            "w8a16" => Some(IntFormat::W8A16),
            "w8a8" => Some(IntFormat::W8A8),
            other => other
                .strip_prefix("int4-g")
                .and_then(|g| g.parse::<usize>().ok())
                .filter(|g| INT4_GROUPS.contains(g))
                .map(|group| IntFormat::Int4 { group }),
        }
    }

    /// The canonical name (`W8A16`, `W8A8`, `INT4-G128`, …).
    pub fn name(&self) -> &'static str {
        match self {
            IntFormat::W8A16 => "W8A16",
            IntFormat::W8A8 => "W8A8",
            IntFormat::Int4 { group: 32 } => "INT4-G32",
            IntFormat::Int4 { group: 64 } => "INT4-G64",
            IntFormat::Int4 { group: 128 } => "INT4-G128",
            // a group size kiln does not store (refused by `quantize` and `from_parts`)
            IntFormat::Int4 { .. } => "INT4",
        }
    }

    /// What a row length must be a multiple of (1 for the per-channel formats).
    pub fn row_multiple(&self) -> usize {
        match self {
            IntFormat::Int4 { group } => *group,
            _ => 1,
        }
    }
}

/// A (rows, cols) weight matrix in an [`IntFormat`], row-major.
#[derive(Clone, Debug)]
pub struct IntMatrix {
    fmt: IntFormat,
    rows: usize,
    cols: usize,
    /// W8: `rows·cols` two's-complement codes; INT4: `rows · cols/2` bytes of nibbles.
    codes: Vec<u8>,
    /// W8: one f32 scale per row; INT4: `rows · cols/G` f16 scales.
    scales: Scales,
    /// INT4: `rows · cols/G` f16 minima (empty for W8).
    mins: Vec<f16>,
}

#[derive(Clone, Debug)]
enum Scales {
    Row(Vec<f32>),
    Group(Vec<f16>),
}

fn bad(fmt: IntFormat, msg: String) -> FormatError {
    FormatError::IntQuant { format: fmt.name(), msg }
}

/// The INT4 grid of one group: f16 scale and minimum (as stored) from the values' range.
pub(super) fn int4_grid(x: &[f32]) -> (f16, f16) {
    let (lo, hi) = x.iter().fold((f32::MAX, -f32::MAX), |(a, b), &v| (a.min(v), b.max(v)));
    (f16::from_f32((hi - lo) / 15.0), f16::from_f32(lo))
}

/// The INT4 code nearest to `v` on the stored grid `(d, m)`.
pub(super) fn int4_code(v: f32, d: f32, m: f32) -> u8 {
    if d > 0.0 {
        ((v - m) / d).round().clamp(0.0, 15.0) as u8
    } else {
        0
    }
}

/// Element `j` (0..32) of a 32-block of nibbles.
fn nibble(block: &[u8], j: usize) -> u8 {
    if j < 16 {
        block[j] & 0x0F
    } else {
        block[j - 16] >> 4
    }
}

impl IntMatrix {
    /// Rounds a row-major (rows, cols) f32 matrix to nearest in `fmt`, rows in parallel.
    pub fn quantize(fmt: IntFormat, rows: usize, cols: usize, w: &[f32]) -> Result<IntMatrix> {
        IntMatrix::check_shape(fmt, rows, cols, w.len())?;
        if w.iter().any(|v| !v.is_finite()) {
            return Err(bad(fmt, "the weights hold a NaN or an infinity".into()));
        }
        match fmt {
            IntFormat::W8A16 | IntFormat::W8A8 => {
                let mut codes = vec![0u8; rows * cols];
                let mut scales = vec![0f32; rows];
                codes.par_chunks_mut(cols).zip(scales.par_iter_mut()).zip(w.par_chunks(cols)).for_each(
                    |((c, s), x)| {
                        *s = x.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0;
                        let inv = if *s > 0.0 { 1.0 / *s } else { 0.0 };
                        for (c, &v) in c.iter_mut().zip(x) {
                            *c = ((v * inv).round().clamp(-127.0, 127.0) as i8) as u8;
                        }
                    },
                );
                Ok(IntMatrix { fmt, rows, cols, codes, scales: Scales::Row(scales), mins: Vec::new() })
            }
            IntFormat::Int4 { group } => {
                let ng = cols / group;
                let mut codes = vec![0u8; rows * cols / 2];
                let mut d = vec![f16::ZERO; rows * ng];
                let mut m = vec![f16::ZERO; rows * ng];
                codes
                    .par_chunks_mut(group / 2)
                    .zip(d.par_iter_mut())
                    .zip(m.par_iter_mut())
                    .zip(w.par_chunks(group))
                    .for_each(|(((c, d), m), x)| {
                        (*d, *m) = int4_grid(x);
                        let (df, mf) = (d.to_f32(), m.to_f32());
                        for (blk, xs) in c.chunks_exact_mut(QK / 2).zip(x.chunks_exact(QK)) {
                            for j in 0..QK / 2 {
                                blk[j] = int4_code(xs[j], df, mf) | (int4_code(xs[j + 16], df, mf) << 4);
                            }
                        }
                    });
                Ok(IntMatrix { fmt, rows, cols, codes, scales: Scales::Group(d), mins: m })
            }
        }
    }

    fn check_shape(fmt: IntFormat, rows: usize, cols: usize, n: usize) -> Result<()> {
        if let IntFormat::Int4 { group } = fmt {
            if !INT4_GROUPS.contains(&group) {
                return Err(bad(fmt, format!("group size {group}: kiln stores groups of {INT4_GROUPS:?}")));
            }
        }
        if cols == 0 || rows.checked_mul(cols) != Some(n) {
            return Err(bad(fmt, format!("{n} values for a {rows}×{cols} matrix")));
        }
        if !cols.is_multiple_of(fmt.row_multiple()) {
            return Err(bad(
                fmt,
                format!("row length {cols} is not a multiple of the group size {}", fmt.row_multiple()),
            ));
        }
        Ok(())
    }

    /// The format.
    pub fn format_kind(&self) -> IntFormat {
        self.fmt
    }

    /// The stored parts as `(suffix, bytes, shape)`: the codes (`""`, I8 (rows, cols) for W8,
    /// U8 (rows, cols/2) for INT4), the scales (`".scales"`, F32 (rows) for W8, F16 (rows,
    /// cols/G) for INT4) and the INT4 minima (`".mins"`, F16 (rows, cols/G)); little-endian.
    pub fn parts(&self) -> Vec<(&'static str, Vec<u8>, Vec<usize>)> {
        let le16 = |v: &[f16]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        match &self.scales {
            Scales::Row(s) => vec![
                ("", self.codes.clone(), vec![self.rows, self.cols]),
                (".scales", s.iter().flat_map(|x| x.to_le_bytes()).collect(), vec![self.rows]),
            ],
            Scales::Group(d) => {
                let ng = self.cols / self.fmt.row_multiple();
                vec![
                    ("", self.codes.clone(), vec![self.rows, self.cols / 2]),
                    (".scales", le16(d), vec![self.rows, ng]),
                    (".mins", le16(&self.mins), vec![self.rows, ng]),
                ]
            }
        }
    }

    /// The inverse of [`IntMatrix::parts`]: `parts` holds the bytes of each part in that order
    /// (2 for W8, 3 for INT4). Sizes are checked; scales must be finite and non-negative.
    pub fn from_parts(fmt: IntFormat, rows: usize, cols: usize, parts: &[&[u8]]) -> Result<IntMatrix> {
        let n = rows.checked_mul(cols).ok_or_else(|| bad(fmt, format!("{rows}×{cols} overflows")))?;
        IntMatrix::check_shape(fmt, rows, cols, n)?;
        let want: Vec<usize> = match fmt {
            IntFormat::Int4 { group } => vec![n / 2, 2 * (n / group), 2 * (n / group)],
            _ => vec![n, 4 * rows],
        };
        let got: Vec<usize> = parts.iter().map(|p| p.len()).collect();
        if got != want {
            return Err(bad(fmt, format!("parts of {got:?} bytes for a {rows}×{cols} matrix, expected {want:?}")));
        }
        let f16s = |b: &[u8]| b.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]])).collect::<Vec<f16>>();
        let sane = |v: f32| v.is_finite() && v >= 0.0;
        let m = match fmt {
            IntFormat::Int4 { .. } => {
                let (d, mins) = (f16s(parts[1]), f16s(parts[2]));
                if !d.iter().all(|v| sane(v.to_f32())) || !mins.iter().all(|v| v.is_finite()) {
                    return Err(bad(fmt, "a scale or minimum is negative, infinite or NaN".into()));
                }
                IntMatrix { fmt, rows, cols, codes: parts[0].to_vec(), scales: Scales::Group(d), mins }
            }
            _ => {
                let s: Vec<f32> =
                    parts[1].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
                if !s.iter().all(|&v| sane(v)) {
                    return Err(bad(fmt, "a row scale is negative, infinite or NaN".into()));
                }
                IntMatrix { fmt, rows, cols, codes: parts[0].to_vec(), scales: Scales::Row(s), mins: Vec::new() }
            }
        };
        Ok(m)
    }

    /// Row `r` dequantized into `out` (`cols` values; sizes checked by the callers).
    fn row_into(&self, r: usize, out: &mut [f32]) {
        let cols = self.cols;
        match &self.scales {
            Scales::Row(s) => {
                for (o, &c) in out.iter_mut().zip(&self.codes[r * cols..(r + 1) * cols]) {
                    *o = s[r] * (c as i8) as f32;
                }
            }
            Scales::Group(d) => {
                let g = self.fmt.row_multiple();
                let ng = cols / g;
                let codes = &self.codes[r * cols / 2..(r + 1) * cols / 2];
                for (j, (o, blk)) in out.chunks_exact_mut(QK).zip(codes.chunks_exact(QK / 2)).enumerate() {
                    let gi = r * ng + j * QK / g;
                    let (dg, mg) = (d[gi].to_f32(), self.mins[gi].to_f32());
                    for (k, o) in o.iter_mut().enumerate() {
                        *o = dg * nibble(blk, k) as f32 + mg;
                    }
                }
            }
        }
    }
}

/// An activation row quantized symmetrically to int8 with one scale (W8A8's per-token scale).
#[derive(Clone, Debug, Default)]
pub struct TokenQ8 {
    /// `max|x| / 127`.
    pub d: f32,
    /// `round(x / d)`.
    pub q: Vec<i8>,
}

impl TokenQ8 {
    /// Quantizes `x`.
    pub fn new(x: &[f32]) -> TokenQ8 {
        let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
        let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
        TokenQ8 { d: amax / 127.0, q: x.iter().map(|&v| (v * inv).round().clamp(-127.0, 127.0) as i8).collect() }
    }
}

/// Σ c·q in integers (W8A8's inner product), one element at a time.
pub fn dot_w8a8_scalar(c: &[u8], q: &[i8]) -> i32 {
    c.iter().zip(q).map(|(&c, &q)| (c as i8) as i32 * q as i32).sum()
}

/// Σ c·x with f32 activations (W8A16's inner product), one element at a time.
pub fn dot_w8a16_scalar(c: &[u8], x: &[f32]) -> f32 {
    c.iter().zip(x).map(|(&c, &x)| (c as i8) as f32 * x).sum()
}

/// Σ W[k]·x[k] for one INT4 row (`codes` its nibbles, `d`/`m` its group scales and minima)
/// against 8-bit activation blocks `x`, with `gsum[g]` = Σ over group g's blocks of `d·Σq`.
pub fn dot_int4_scalar(codes: &[u8], d: &[f16], m: &[f16], x: &Q8Row, gsum: &[f32]) -> f32 {
    let bpg = x.blocks() / d.len().max(1);
    let mut sum = 0f32;
    for (b, blk) in codes.chunks_exact(QK / 2).enumerate() {
        let q = &x.q[b * QK..(b + 1) * QK];
        let isum: i32 = (0..QK).map(|j| nibble(blk, j) as i32 * q[j] as i32).sum();
        sum += d[b / bpg].to_f32() * x.d[b] * isum as f32;
    }
    sum + m.iter().zip(gsum).map(|(m, s)| m.to_f32() * s).sum::<f32>()
}

/// Weight rows per L1-resident panel of a prompt product (16 rows of 768 int8 = 12 KiB).
const PANEL: usize = 16;

/// [`split_rows_t`] in tiles: `f(r, i0..i1, res)` fills the products of weight row `r` with
/// activation rows `i0..i1` (at most 4). Each task walks its rows in panels of [`PANEL`]; a
/// tile of four activation rows passes over the whole panel before the next tile, so both stay
/// in L1.
fn each_tile_t(rows: usize, m: usize, out: &mut [f32], f: impl Fn(usize, std::ops::Range<usize>, &mut [f32]) + Sync) {
    split_rows_t(rows, m, out, |r0, chunk| {
        for (p, panel) in chunk.chunks_mut(PANEL * m).enumerate() {
            for i0 in (0..m).step_by(4) {
                let i1 = (i0 + 4).min(m);
                for (j, res) in panel.chunks_mut(m).enumerate() {
                    f(r0 + p * PANEL + j, i0..i1, &mut res[i0..i1]);
                }
            }
        }
        true
    });
}

/// Whether the AVX2 kernels can run here.
fn simd() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        super::int_avx2::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `res[i] = s · t_i · Σ c·q_i`: weight row `c` (scale `s`) against every token of `xs`, four
/// tokens at a time on the AVX2 path (`fast`), the scalar reference otherwise.
fn row_w8a8(fast: bool, c: &[u8], s: f32, xs: &[TokenQ8], res: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if fast && xs.iter().all(|t| t.q.len() == c.len()) {
        use super::int_avx2::{dot_w8a8, dot_w8a8_x4};
        let (w, n) = (c.as_ptr() as *const i8, c.len());
        let mut i = 0;
        while i + 4 <= xs.len() {
            // SAFETY: AVX2 detected (`fast`); the weight row and the four tokens hold n values.
            let d = unsafe { dot_w8a8_x4(w, [0, 1, 2, 3].map(|k| xs[i + k].q.as_ptr()), n) };
            for k in 0..4 {
                res[i + k] = s * xs[i + k].d * d[k] as f32;
            }
            i += 4;
        }
        for (o, t) in res[i..].iter_mut().zip(&xs[i..]) {
            // SAFETY: as above, one token.
            *o = s * t.d * unsafe { dot_w8a8(w, t.q.as_ptr(), n) } as f32;
        }
        return;
    }
    let _ = fast;
    for (o, t) in res.iter_mut().zip(xs) {
        *o = s * t.d * dot_w8a8_scalar(c, &t.q) as f32;
    }
}

/// `res[i] = s · Σ c·x_i`: weight row `c` (scale `s`) against every activation row of `x`
/// (`res.len()` rows of `c.len()`), four rows at a time on the AVX2 path.
fn row_w8a16(fast: bool, c: &[u8], s: f32, x: &[f32], res: &mut [f32]) {
    let n = c.len();
    #[cfg(target_arch = "x86_64")]
    if fast && x.len() == n * res.len() {
        use super::int_avx2::{dot_w8a16, dot_w8a16_x4};
        let w = c.as_ptr() as *const i8;
        let mut i = 0;
        while i + 4 <= res.len() {
            // SAFETY: AVX2 + FMA detected (`fast`); rows i..i+4 of `x` and the weight row hold n values.
            let d = unsafe { dot_w8a16_x4(w, [0, 1, 2, 3].map(|k| x[(i + k) * n..].as_ptr()), n) };
            for k in 0..4 {
                res[i + k] = s * d[k];
            }
            i += 4;
        }
        for (k, o) in res.iter_mut().enumerate().skip(i) {
            // SAFETY: as above, one row.
            *o = s * unsafe { dot_w8a16(w, x[k * n..].as_ptr(), n) };
        }
        return;
    }
    let _ = fast;
    for (o, xi) in res.iter_mut().zip(x.chunks_exact(n)) {
        *o = s * dot_w8a16_scalar(c, xi);
    }
}

/// `res[i] = Σ W·x_i` for one INT4 row (`codes`, group scales `d` and minima `m`) against every
/// 8-bit activation row of `xs` (with their group sums `gsums`), four rows at a time on the
/// AVX2 path.
fn row_int4(fast: bool, codes: &[u8], d: &[f16], m: &[f16], xs: &[Q8Row], gsums: &[Vec<f32>], res: &mut [f32]) {
    let ng = d.len();
    #[cfg(target_arch = "x86_64")]
    if fast
        && ng > 0
        && m.len() == ng
        && xs.iter().zip(gsums).all(|(x, g)| x.blocks() * QK == codes.len() * 2 && g.len() == ng)
        && xs.len() == gsums.len()
        && (codes.len() * 2 / QK).is_multiple_of(ng)
    {
        use super::int_avx2::{dot_int4, dot_int4_x4};
        let nb = codes.len() * 2 / QK;
        let (w, dp, mp, bpg) = (codes.as_ptr(), d.as_ptr() as *const u16, m.as_ptr() as *const u16, nb / ng);
        let mut i = 0;
        while i + 4 <= xs.len() {
            let x = [&xs[i], &xs[i + 1], &xs[i + 2], &xs[i + 3]];
            let g = [&gsums[i][..], &gsums[i + 1][..], &gsums[i + 2][..], &gsums[i + 3][..]];
            // SAFETY: AVX2/FMA/F16C detected (`fast`); the row holds nb blocks of 16 bytes, d and
            // m ng = nb / bpg values, every activation row nb blocks and every gsum ng values.
            res[i..i + 4].copy_from_slice(&unsafe { dot_int4_x4(w, dp, mp, bpg, nb, x, g) });
            i += 4;
        }
        for ((o, x), g) in res[i..].iter_mut().zip(&xs[i..]).zip(&gsums[i..]) {
            // SAFETY: as above, one row.
            *o = unsafe { dot_int4(w, dp, mp, bpg, nb, x, g) };
        }
        return;
    }
    let _ = fast;
    for ((o, x), g) in res.iter_mut().zip(xs).zip(gsums) {
        *o = dot_int4_scalar(codes, d, m, x, g);
    }
}

/// Four INT4 rows (codes, scales, minima) against one 8-bit activation row `x` (group sums
/// `gsum`): the AVX2 four-row kernel when `fast`, else the reference per row.
fn int4_rows4(fast: bool, rows: [(&[u8], &[f16], &[f16]); 4], x: &Q8Row, gsum: &[f32]) -> [f32; 4] {
    #[cfg(target_arch = "x86_64")]
    {
        let nb = x.blocks();
        let ng = gsum.len();
        if fast
            && ng > 0
            && nb.is_multiple_of(ng)
            && rows.iter().all(|(c, d, m)| c.len() * 2 == nb * QK && d.len() == ng && m.len() == ng)
        {
            // SAFETY: AVX2/FMA/F16C detected (`fast`); every row holds nb blocks of 16 bytes and
            // ng scales and minima, `x` nb blocks and `gsum` ng sums (checked above).
            return unsafe {
                super::int_avx2::dot_int4_rows4(
                    rows.map(|r| r.0.as_ptr()),
                    rows.map(|r| r.1.as_ptr() as *const u16),
                    rows.map(|r| r.2.as_ptr() as *const u16),
                    nb / ng,
                    nb,
                    x,
                    gsum,
                )
            };
        }
    }
    let _ = fast;
    rows.map(|(c, d, m)| dot_int4_scalar(c, d, m, x, gsum))
}

impl QuantMatrix for IntMatrix {
    fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    fn format(&self) -> &'static str {
        self.fmt.name()
    }

    fn bytes(&self) -> usize {
        let s = match &self.scales {
            Scales::Row(s) => 4 * s.len(),
            Scales::Group(d) => 2 * d.len(),
        };
        self.codes.len() + s + 2 * self.mins.len()
    }

    fn matmul_t(&self, x: &[f32], m: usize, out: &mut [f32]) -> kiln_core::Result<()> {
        let (rows, cols) = (self.rows, self.cols);
        check_matmul_t("IntMatrix::matmul_t", (rows, cols), x.len(), m, out.len())?;
        let fast = simd();
        match (&self.scales, self.fmt) {
            (Scales::Row(s), IntFormat::W8A8) => {
                let xq: Vec<TokenQ8> = x.chunks_exact(cols).map(TokenQ8::new).collect();
                each_tile_t(rows, m, out, |r, i, res| {
                    row_w8a8(fast, &self.codes[r * cols..(r + 1) * cols], s[r], &xq[i], res)
                })
            }
            (Scales::Row(s), _) => each_tile_t(rows, m, out, |r, i, res| {
                let xs = &x[i.start * cols..i.end * cols];
                row_w8a16(fast, &self.codes[r * cols..(r + 1) * cols], s[r], xs, res)
            }),
            (Scales::Group(d), fmt) => {
                let ng = cols / fmt.row_multiple();
                let bpg = fmt.row_multiple() / QK;
                let xq = Q8Row::rows(x, cols);
                // Σ over each group's activation blocks of d·Σq: what the group minimum multiplies
                let gsums: Vec<Vec<f32>> =
                    xq.iter().map(|q| q.s.chunks_exact(bpg).map(|s| s.iter().sum()).collect()).collect();
                let row = |r: usize| {
                    (
                        &self.codes[r * cols / 2..(r + 1) * cols / 2],
                        &d[r * ng..(r + 1) * ng],
                        &self.mins[r * ng..(r + 1) * ng],
                    )
                };
                if m > 1 {
                    each_tile_t(rows, m, out, |r, i, res| {
                        let (c, dr, mr) = row(r);
                        row_int4(fast, c, dr, mr, &xq[i.clone()], &gsums[i], res)
                    });
                    return Ok(());
                }
                // decoding: four weight rows per activation load
                split_rows_t(rows, 1, out, |r0, chunk| {
                    let mut quads = chunk.chunks_exact_mut(4);
                    let mut r = r0;
                    for o in &mut quads {
                        o.copy_from_slice(&int4_rows4(
                            fast,
                            [row(r), row(r + 1), row(r + 2), row(r + 3)],
                            &xq[0],
                            &gsums[0],
                        ));
                        r += 4;
                    }
                    for o in quads.into_remainder() {
                        let (c, dr, mr) = row(r);
                        row_int4(fast, c, dr, mr, &xq, &gsums, std::slice::from_mut(o));
                        r += 1;
                    }
                    true
                });
            }
        }
        Ok(())
    }

    fn dequantize_row(&self, r: usize, out: &mut [f32]) -> kiln_core::Result<()> {
        if r >= self.rows || out.len() != self.cols {
            return Err(kiln_core::Error::Invalid {
                op: "IntMatrix::dequantize_row",
                msg: format!("row {r} into {} values of a {}×{} matrix", out.len(), self.rows, self.cols),
            });
        }
        self.row_into(r, out);
        Ok(())
    }

    fn dequantize(&self) -> kiln_core::Result<Vec<f32>> {
        let mut out = vec![0f32; self.rows * self.cols];
        out.par_chunks_mut(self.cols).enumerate().for_each(|(r, o)| self.row_into(r, o));
        Ok(out)
    }
}
