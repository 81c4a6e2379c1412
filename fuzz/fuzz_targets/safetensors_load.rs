//! kiln's safetensors mapping (header, dtypes, offsets → kiln tensors) on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = kiln_core::safetensors::load_bytes(data, std::path::Path::new("fuzz.safetensors"), &kiln_cpu::cpu());
});
