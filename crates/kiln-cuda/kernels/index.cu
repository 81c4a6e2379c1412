// index.cu — gather (index_select, the embedding lookup), its scatter-add backward, and the id
// check both run first. x is viewed as (outer, size, inner) around the indexed dim.

// Writes the first id (in index order) outside [0, size) — other than `ignore` — into *bad,
// which the host initialised to INT64_MIN. atomicMin over positions keeps the first one.
extern "C" __global__ void check_ids(const i64* ids, i64 n, i64 size, i64 ignore, unsigned long long* first_bad) {
    FOR_EACH(i, n) {
        const i64 id = ids[i];
        if (id != ignore && (id < 0 || id >= size)) atomicMin(first_bad, (unsigned long long)i);
    }
}

// y (outer, n_ids, inner) = x (outer, size, inner)[:, ids, :], elements of 4 bytes.
extern "C" __global__ void index_select_b4(const u32* x, const i64* ids, u32* y, i64 outer, i64 size, i64 n_ids,
                                           i64 inner) {
    FOR_EACH(k, outer * n_ids * inner) {
        const i64 j = k % inner, q = (k / inner) % n_ids, o = k / (inner * n_ids);
        y[k] = x[(o * size + ids[q]) * inner + j];
    }
}

// out (outer, size, inner), zero-filled by the host: out[:, ids[q], :] += src[:, q, :].
// atomicAdd makes repeated ids sum in an unspecified order (f32 rounding may differ run to run).
extern "C" __global__ void index_add_f32(const i64* ids, const float* src, float* out, i64 outer, i64 size, i64 n_ids,
                                         i64 inner) {
    FOR_EACH(k, outer * n_ids * inner) {
        const i64 j = k % inner, q = (k / inner) % n_ids, o = k / (inner * n_ids);
        atomicAdd(&out[(o * size + ids[q]) * inner + j], src[k]);
    }
}
