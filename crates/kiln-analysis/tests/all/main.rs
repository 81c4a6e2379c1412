//! kiln-analysis integration tests; the tree mirrors `src/` (`params.rs` ↔ `src/params.rs`, …).
//! Every verified number of REFERENCE.md that this crate computes is asserted here, and
//! parameter counts are checked against models kiln actually builds.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod activations;
mod arch;
mod flops;
mod kv_cache;
mod load;
mod memory;
mod params;
mod report;
mod roofline;
mod scaling;
mod train_time;

use std::path::PathBuf;

/// `.cache/models/<name>` of the repository (fetched by `tools/fetch_models.py`), if present.
pub fn cached_model(name: &str) -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models").join(name);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("SKIP: {} not fetched (python3 tools/fetch_models.py)", p.display());
        None
    }
}
