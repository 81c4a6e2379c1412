// random.cu — counter-based fills: element i of a fill with seed s is a pure function of (s, i)
// (splitmix64, common.cuh), equal to kiln-cpu's values computed in f64, so a model initialised on
// the GPU has the CPU's weights (up to the final rounding to the storage dtype).

extern "C" __global__ void rand_uniform_any(int dt, void* y, i64 n, double lo, double hi, u64 seed) {
    FOR_EACH(i, n) { store_f64(dt, y, i, lo + (hi - lo) * uniform01(seed, (u64)i)); }
}

// Box–Muller on the uniforms of counters 2i and 2i+1.
extern "C" __global__ void rand_normal_any(int dt, void* y, i64 n, double mean, double std, u64 seed) {
    FOR_EACH(i, n) {
        const double u1 = 1.0 - uniform01(seed, (u64)i * 2), u2 = uniform01(seed, (u64)i * 2 + 1);
        store_f64(dt, y, i, mean + std * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
    }
}
