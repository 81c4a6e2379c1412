//! The CUDA C sources of kiln's kernels (`crates/kiln-cuda/kernels/*.cu`), embedded in the binary
//! and compiled at run time by NVRTC for the device's architecture — no `nvcc` at build time, and
//! a binary built on a machine without CUDA runs on any machine with a driver and NVRTC.
//!
//! All sources are compiled as one program: `common.cuh` followed by every `.cu` file.

use cudarc::nvrtc::{self, CompileOptions};
use kiln_core::{Error, Result};

/// One kernel source file and the `extern "C"` entry points the backend launches from it.
#[derive(Clone, Copy, Debug)]
pub struct KernelSource {
    /// File name under `crates/kiln-cuda/kernels/`.
    pub file: &'static str,
    /// CUDA C source.
    pub src: &'static str,
    /// Kernel names the Rust side looks up.
    pub entries: &'static [&'static str],
}

/// Types and helpers every source uses (prepended once).
pub const COMMON: &str = include_str!("../kernels/common.cuh");

/// Every kernel source.
pub const SOURCES: &[KernelSource] = &[
    KernelSource {
        file: "elementwise.cu",
        src: include_str!("../kernels/elementwise.cu"),
        entries: &[
            "unary_f32",
            "unary_bwd_f32",
            "binary_f32",
            "cmp_any",
            "where_cond_b1",
            "where_cond_b2",
            "where_cond_b4",
            "where_cond_b8",
            "copy_strided_b1",
            "copy_strided_b2",
            "copy_strided_b4",
            "copy_strided_b8",
            "copy_into_b1",
            "copy_into_b2",
            "copy_into_b4",
            "copy_into_b8",
            "cast_any",
            "fill_any",
            "fill_rows_f32",
        ],
    },
    KernelSource { file: "reduce.cu", src: include_str!("../kernels/reduce.cu"), entries: &["reduce_f32"] },
    KernelSource {
        file: "norm.cu",
        src: include_str!("../kernels/norm.cu"),
        entries: &[
            "layer_norm_fwd_f32",
            "layer_norm_bwd_dx_f32",
            "norm_bwd_dw_f32",
            "rms_norm_fwd_f32",
            "rms_norm_bwd_dx_f32",
        ],
    },
    KernelSource {
        file: "softmax.cu",
        src: include_str!("../kernels/softmax.cu"),
        entries: &["softmax_fwd_f32", "softmax_bwd_f32", "cross_entropy_fwd_f32", "cross_entropy_bwd_f32"],
    },
    KernelSource { file: "rope.cu", src: include_str!("../kernels/rope.cu"), entries: &["rope_f32"] },
    KernelSource {
        file: "index.cu",
        src: include_str!("../kernels/index.cu"),
        entries: &["check_ids", "index_select_b4", "index_add_f32"],
    },
    KernelSource { file: "optim.cu", src: include_str!("../kernels/optim.cu"), entries: &["adamw_f32"] },
    KernelSource {
        file: "random.cu",
        src: include_str!("../kernels/random.cu"),
        entries: &["rand_uniform_any", "rand_normal_any"],
    },
    KernelSource {
        file: "attention.cu",
        src: include_str!("../kernels/attention.cu"),
        entries: &["attn_fwd_f32", "attn_bwd_dsum_f32", "attn_bwd_dq_f32", "attn_bwd_dkv_f32"],
    },
    KernelSource {
        file: "paged_attention.cu",
        src: include_str!("../kernels/paged_attention.cu"),
        entries: &["paged_attn_f32", "paged_write_f32", "paged_write_q8"],
    },
];

/// The whole program: `common.cuh` then every source, each preceded by a `#line` directive so
/// NVRTC's messages name the right file and line.
pub fn program() -> String {
    let mut s = format!("#line 1 \"common.cuh\"\n{COMMON}\n");
    for k in SOURCES {
        s.push_str(&format!("#line 1 \"{}\"\n{}\n", k.file, k.src));
    }
    s
}

/// Every entry point of every source.
pub fn entries() -> impl Iterator<Item = &'static str> {
    SOURCES.iter().flat_map(|k| k.entries.iter().copied())
}

/// True when the NVRTC library can be opened (`LD_LIBRARY_PATH` may point at it, e.g. the
/// `nvidia-cuda-nvrtc-cu12` wheel's `lib/`).
pub fn nvrtc_available() -> bool {
    // SAFETY: only tries to dlopen the library by its usual names.
    unsafe { nvrtc::sys::is_culib_present() }
}

/// Compiles [`program`] to PTX for `arch` (`compute_80`, `compute_90`, …) with NVRTC. Errors carry
/// NVRTC's log.
pub fn compile_ptx(arch: &str) -> Result<nvrtc::Ptx> {
    if !nvrtc_available() {
        return Err(Error::Backend {
            backend: "cuda",
            op: "nvrtc",
            msg: "the NVRTC library (libnvrtc.so) was not found; install the CUDA toolkit or the \
                  nvidia-cuda-nvrtc-cu12 wheel and put its lib/ on LD_LIBRARY_PATH"
                .into(),
        });
    }
    let opts = CompileOptions {
        options: vec![format!("--gpu-architecture={arch}"), "--std=c++17".into()],
        name: Some("kiln.cu".into()),
        ..Default::default()
    };
    nvrtc::compile_ptx_with_opts(program(), opts).map_err(|e| Error::Backend {
        backend: "cuda",
        op: "nvrtc",
        msg: format!("compiling kiln's kernels for {arch}: {e}"),
    })
}
