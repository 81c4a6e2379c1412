//! GGUF parsing, metadata access and dequantization of every tensor on arbitrary bytes: any
//! outcome but a panic, an out-of-bounds read or an unbounded allocation is fine.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(g) = kiln_formats::GgufFile::parse(data) {
        for (k, _) in g.metadata() {
            let _ = g.get_str(k);
            let _ = g.get_u64(k);
            let _ = g.get_str_array(k);
        }
        for info in g.tensors() {
            // dequantize only what the file really holds (bounded by its size)
            if info.n_bytes <= data.len() as u64 {
                let _ = g.dequantize(info);
            }
        }
        let _ = kiln_models::gpt::config_from_gguf(&g);
    }
});
