//! Every kernel source compiles with NVRTC, for Ampere and Hopper, and exports every entry point
//! the backend launches. Needs only the NVRTC library (no GPU): CI installs the PyPI wheel
//! `nvidia-cuda-nvrtc-cu12` and puts its `lib/` on `LD_LIBRARY_PATH`. Skips, saying so, when the
//! library is absent.

use kiln_cuda::kernels;

#[test]
fn kernels_compile_with_nvrtc() {
    if !kernels::nvrtc_available() {
        println!("SKIP kernels_compile_with_nvrtc: libnvrtc not found (pip install nvidia-cuda-nvrtc-cu12 and add its lib/ to LD_LIBRARY_PATH)");
        return;
    }
    for arch in ["compute_80", "compute_90"] {
        let ptx = match kernels::compile_ptx(arch) {
            Ok(p) => p.to_src(),
            Err(e) => panic!("{e}"),
        };
        for name in kernels::entries() {
            assert!(ptx.contains(&format!(".entry {name}(")), "{arch}: entry `{name}` missing from the PTX");
        }
    }
}
