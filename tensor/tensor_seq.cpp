// tensor_seq.cpp -- tensor.h's "Sequence models" section: causal attention
// with a key mask (left-padded batches, the HF/TRL convention), its KV-cache
// form, the packed decoding path (an unfilled KV cache, attention straight
// from a fused [B,T,3*H*D] projection, an inference tanh-GELU), token
// sampling from logits (temperature, top-k, top-p; greedy) and the inference
// region used by the decoding paths.
//
// Why a translation unit of its own: these are the per-step ops of batched
// sampling, written straight on ATen so that one C call is one short chain of
// kernels (the sampler runs them B*G rows at a time, tens of times per
// completion). The header cost is that of tensor_ops.cpp's op set, no more.
//
// Every extern "C" entry point catches every C++ exception (rt::guard).

#include "tensor_internal.hpp"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <type_traits>
#include <cmath>
#include <limits>
#include <vector>

using rt::alive;
using rt::op;

namespace {

// Nonzero = real token, in any dtype; bool stays as it is (no copy).
at::Tensor as_bool_mask(const at::Tensor &m) {
    return m.scalar_type() == at::kBool ? m : m.ne(0);
}

// The most negative finite value of a floating dtype: a masked score.
double lowest_finite(at::ScalarType st) {
    switch (st) {
    case at::kDouble: return std::numeric_limits<double>::lowest();
    case at::kFloat: return static_cast<double>(std::numeric_limits<float>::lowest());
    case at::kHalf: return static_cast<double>(std::numeric_limits<c10::Half>::lowest());
    case at::kBFloat16: return static_cast<double>(std::numeric_limits<c10::BFloat16>::lowest());
    default: TORCH_CHECK(false, "attention scores must be floating point, got ", st);
    }
}

// ---- direct kernel for inference (no autograd), CPU, float/double ----
//
// Decoding attends one query (or a few) per row over a cache: as matmuls that
// is B*H tiny GEMMs per layer, each paying BLAS call overhead, plus a masked
// [B,H,Tq,Tk] score tensor written and read back. This kernel makes one pass
// per (b, h) row instead: scores, softmax and the weighted sum of values,
// with K and V read once, in a fixed order (results do not depend on the
// thread count).

// Dot product in 8 independent lanes (vectorizes without reassociation).
template <class T> __attribute__((always_inline)) inline T dot8(const T *a, const T *b, int64_t n) {
    T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t d = 0;
    for (; d + 8 <= n; d += 8)
        for (int l = 0; l < 8; l++) acc[l] += a[d + l] * b[d + l];
    T tail = 0;
    for (; d < n; d++) tail += a[d] * b[d];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

// o += p * x over n elements, in 8-wide chunks (GCC's -O2 cost model
// vectorizes fixed-width chunks, not a loop of unknown length).
template <class T>
__attribute__((always_inline)) inline void axpy8(T *__restrict o, T p, const T *__restrict x, int64_t n) {
    int64_t d = 0;
    for (; d + 8 <= n; d += 8)
        for (int l = 0; l < 8; l++) o[d + l] += p * x[d + l];
    for (; d < n; d++) o[d] += p * x[d];
}

// Where the rows are and how they are laid out (strides in elements).
template <class T> struct attn_args {
    const T *q, *k, *v;
    T *out;
    const bool *mask; // [B,Tk] (row stride ms0, columns dense) or NULL
    int64_t ms0;
    int64_t H, Tq, Tk, D, Dv;
    int64_t qs0, qs1, qs2, ks0, ks1, ks2, vs0, vs1, vs2;
    int64_t os0, os1, os2; // of out [B,H,Tq,Dv] or of a [B,Tq,H*Dv] merged-heads layout
    T scale;
};

// Rows [begin, end) of the flattened (b, h); s is a [Tk] scratch buffer.
template <class T>
__attribute__((always_inline)) inline void attention_rows(const attn_args<T> &a, int64_t begin, int64_t end, T *s) {
    const T ninf = -std::numeric_limits<T>::infinity();
    for (int64_t bh = begin; bh < end; bh++) {
        const int64_t b = bh / a.H, h = bh % a.H;
        const T *qb = a.q + b * a.qs0 + h * a.qs1, *kb = a.k + b * a.ks0 + h * a.ks1, *vb = a.v + b * a.vs0 + h * a.vs1;
        const bool *mb = a.mask ? a.mask + b * a.ms0 : nullptr;
        for (int64_t i = 0; i < a.Tq; i++) {
            const T *qi = qb + i * a.qs2;
            T *oi = a.out + b * a.os0 + h * a.os1 + i * a.os2;
            const int64_t last = a.Tk - a.Tq + i; // the last key this query sees
            T mx = ninf;
            for (int64_t j = 0; j <= last; j++) {
                if (mb && !mb[j]) {
                    s[j] = ninf;
                    continue;
                }
                s[j] = dot8(qi, kb + j * a.ks2, a.D) * a.scale;
                if (s[j] > mx) mx = s[j];
            }
            for (int64_t d = 0; d < a.Dv; d++) oi[d] = 0;
            if (mx == ninf) continue; // no visible key: zeros
            T sum = 0;
            for (int64_t j = 0; j <= last; j++) {
                s[j] = s[j] == ninf ? T(0) : std::exp(s[j] - mx);
                sum += s[j];
            }
            for (int64_t j = 0; j <= last; j++) {
                const T p = s[j];
                if (p == T(0)) continue;
                axpy8(oi, p, vb + j * a.vs2, a.Dv);
            }
            const T inv = T(1) / sum;
            for (int64_t d = 0; d < a.Dv; d++) oi[d] *= inv;
        }
    }
}

// The same code compiled for AVX2+FMA, chosen at run time (the generic build
// targets x86-64 without AVX). FMA contracts a*b+c, so the two builds may
// differ in the last bit; one machine always takes the same one.
template <class T>
__attribute__((target("avx2,fma"))) void attention_rows_avx2(const attn_args<T> &a, int64_t begin, int64_t end,
                                                             T *s) {
    attention_rows(a, begin, end, s);
}

bool have_avx2() {
    static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return yes;
}

// ---- float32 decoding kernel, AVX2+FMA, head_dim a multiple of 8 up to 64 ----
//
// The generic loop above spends most of its time per key on a horizontal
// reduction and a scalar exp. Here 8 keys go together: their 8 dot products
// are reduced into one vector (a transposing hadd tree), the softmax weights
// come from a vectorised exp, and the head_dim-wide output accumulator stays
// in registers while the values are added in. Two passes over the keys
// (scores into an L1 scratch row, then weights and values) need no
// rescaling of the accumulator and round like the matmul composition: the
// max is exact and every weight is exp(s - max) once. Row order and the
// order of every sum are fixed, so any thread count gives the same bits.

// exp(x) for x <= 0 to about 2 ulp (Cephes' expf: x = n ln2 + r, a degree-5
// polynomial in r, 2^n through the exponent bits). Inputs below -87.3 give
// tiny normal numbers, never 0: masked lanes are zeroed by the caller.
__attribute__((target("avx2,fma"))) inline __m256 exp256(__m256 x) {
    const __m256 hi = _mm256_set1_ps(88.3762626647949f), lo = _mm256_set1_ps(-87.3365478515625f);
    x = _mm256_max_ps(_mm256_min_ps(x, hi), lo);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    // r = x - n ln2, ln2 split in two so n*C1 is exact
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

// Sum of the 8 lanes in a fixed order.
__attribute__((target("avx2,fma"))) inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// Lanes j < n of an 8-key block are visible: set where mask[j] (or no mask).
__attribute__((target("avx2,fma"))) inline __m256 visible8(const bool *m, int n) {
    __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i in = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane);
    if (m) {
        int64_t bytes = 0;
        if (n == 8)
            std::memcpy(&bytes, m, 8);
        else
            std::memcpy(&bytes, m, static_cast<size_t>(n)); // never past the row's end
        __m256i mv = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(bytes));
        in = _mm256_andnot_si256(_mm256_cmpeq_epi32(mv, _mm256_setzero_si256()), in);
    }
    return _mm256_castsi256_ps(in);
}

// Scores of keys k[0..n) (n <= 8; the rest repeat key 0 and are masked by
// the caller): s_j = q . k_j, 8 at once. ND = head_dim / 8.
template <int ND>
__attribute__((target("avx2,fma"))) inline __m256 scores8(const __m256 *qv, const float *k, int64_t ks, int n) {
    __m256 t[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
        const float *kj = k + (j < n ? j : 0) * ks;
        __m256 acc = _mm256_mul_ps(qv[0], _mm256_loadu_ps(kj));
#pragma GCC unroll 8
        for (int d = 1; d < ND; d++) acc = _mm256_fmadd_ps(qv[d], _mm256_loadu_ps(kj + 8 * d), acc);
        t[j] = acc;
    }
    // transposing reduction: lane j of the result is the sum of t[j]
    __m256 s01 = _mm256_hadd_ps(t[0], t[1]), s23 = _mm256_hadd_ps(t[2], t[3]);
    __m256 s45 = _mm256_hadd_ps(t[4], t[5]), s67 = _mm256_hadd_ps(t[6], t[7]);
    __m256 s0123 = _mm256_hadd_ps(s01, s23), s4567 = _mm256_hadd_ps(s45, s67);
    return _mm256_add_ps(_mm256_permute2f128_ps(s0123, s4567, 0x20), _mm256_permute2f128_ps(s0123, s4567, 0x31));
}

// Prefetches the n rows of `row` floats each starting at p, rows `stride`
// floats apart, into L1 (an 8-key block of a head's keys or values; T0 measured
// 1.5% faster than T1 for the whole sampler).
__attribute__((target("avx2,fma"))) inline void prefetch_rows(const float *p, int64_t stride, int n, int64_t row) {
    for (int l = 0; l < n; l++)
        for (int64_t d = 0; d < row; d += 16) // one 64-byte line per 16 floats
            _mm_prefetch(reinterpret_cast<const char *>(p + l * stride + d), _MM_HINT_T0);
}

// Rows [begin, end) of the flattened (b, h), float32, head_dim = 8*ND = Dv;
// s is a scratch row of at least Tk + 8 floats. The kernel is bound by
// reading the cache (a decoding step reads every cached key and value once),
// so each pass prefetches what the next one reads: pass 1 this row's values,
// pass 2 the next row's keys.
template <int ND>
__attribute__((target("avx2,fma"))) void attention_rows_f32x8(const attn_args<float> &a, int64_t begin, int64_t end,
                                                              float *s) {
    const __m256 ninf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
    const __m256 scale = _mm256_set1_ps(a.scale);
    for (int64_t bh = begin; bh < end; bh++) {
        const int64_t b = bh / a.H, h = bh % a.H;
        const float *qb = a.q + b * a.qs0 + h * a.qs1, *kb = a.k + b * a.ks0 + h * a.ks1,
                    *vb = a.v + b * a.vs0 + h * a.vs1;
        const bool *mb = a.mask ? a.mask + b * a.ms0 : nullptr;
        for (int64_t i = 0; i < a.Tq; i++) {
            const float *qi = qb + i * a.qs2;
            float *oi = a.out + b * a.os0 + h * a.os1 + i * a.os2;
            const int64_t nk = a.Tk - a.Tq + i + 1; // keys 0..nk-1 are causally visible
            __m256 qv[ND];
#pragma GCC unroll 8
            for (int d = 0; d < ND; d++) qv[d] = _mm256_mul_ps(_mm256_loadu_ps(qi + 8 * d), scale);
            // pass 1: scores (masked -> -inf) and their max
            __m256 mx = ninf;
            for (int64_t j = 0; j < nk; j += 8) {
                const int n = static_cast<int>(std::min<int64_t>(8, nk - j));
                prefetch_rows(vb + j * a.vs2, a.vs2, n, 8 * ND);
                __m256 sc = scores8<ND>(qv, kb + j * a.ks2, a.ks2, n);
                sc = _mm256_blendv_ps(ninf, sc, visible8(mb ? mb + j : nullptr, n));
                _mm256_storeu_ps(s + j, sc);
                mx = _mm256_max_ps(mx, sc);
            }
            __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
            m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
            m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
            const float m = _mm_cvtss_f32(m4);
            if (m == -std::numeric_limits<float>::infinity()) { // no visible key: zeros
                for (int64_t d = 0; d < a.Dv; d++) oi[d] = 0.0f;
                continue;
            }
            // the next row's keys, from its last query's pass 2 (same Tk when decoding)
            const float *kn = i + 1 == a.Tq && bh + 1 < end
                                  ? a.k + (bh + 1) / a.H * a.ks0 + (bh + 1) % a.H * a.ks1
                                  : nullptr;
            // pass 2: weights exp(s - max) (0 where masked), their sum, and
            // the weighted values; a masked key's value is never read
            const __m256 mv = _mm256_set1_ps(m);
            __m256 acc[ND], sum = _mm256_setzero_ps();
#pragma GCC unroll 8
            for (int d = 0; d < ND; d++) acc[d] = _mm256_setzero_ps();
            for (int64_t j = 0; j < nk; j += 8) {
                const int n = static_cast<int>(std::min<int64_t>(8, nk - j));
                if (kn) prefetch_rows(kn + j * a.ks2, a.ks2, n, 8 * ND);
                const __m256 sc = _mm256_loadu_ps(s + j);
                const __m256 live = _mm256_cmp_ps(sc, ninf, _CMP_NEQ_OQ);
                const __m256 p = _mm256_and_ps(exp256(_mm256_sub_ps(sc, mv)), live);
                sum = _mm256_add_ps(sum, p);
                alignas(32) float pj[8];
                _mm256_store_ps(pj, p);
                const float *vj = vb + j * a.vs2;
                if (n == 8 && _mm256_movemask_ps(live) == 0xff) { // the common case: 8 visible keys
#pragma GCC unroll 8
                    for (int l = 0; l < 8; l++) {
                        const __m256 pl = _mm256_set1_ps(pj[l]);
#pragma GCC unroll 8
                        for (int d = 0; d < ND; d++)
                            acc[d] = _mm256_fmadd_ps(pl, _mm256_loadu_ps(vj + l * a.vs2 + 8 * d), acc[d]);
                    }
                } else {
                    for (int l = 0; l < n; l++) {
                        if (pj[l] == 0.0f) continue;
                        const __m256 pl = _mm256_set1_ps(pj[l]);
#pragma GCC unroll 8
                        for (int d = 0; d < ND; d++)
                            acc[d] = _mm256_fmadd_ps(pl, _mm256_loadu_ps(vj + l * a.vs2 + 8 * d), acc[d]);
                    }
                }
            }
            const __m256 inv = _mm256_set1_ps(1.0f / hsum256(sum));
#pragma GCC unroll 8
            for (int d = 0; d < ND; d++) _mm256_storeu_ps(oi + 8 * d, _mm256_mul_ps(acc[d], inv));
        }
    }
}

// The float32 AVX2 kernel for this head_dim, or NULL (generic loop).
using f32_rows_fn = void (*)(const attn_args<float> &, int64_t, int64_t, float *);
f32_rows_fn f32x8_kernel_for(int64_t D, int64_t Dv) {
    if (D != Dv) return nullptr;
    switch (D) {
    case 8: return attention_rows_f32x8<1>;
    case 16: return attention_rows_f32x8<2>;
    case 24: return attention_rows_f32x8<3>;
    case 32: return attention_rows_f32x8<4>;
    case 40: return attention_rows_f32x8<5>;
    case 48: return attention_rows_f32x8<6>;
    case 56: return attention_rows_f32x8<7>;
    case 64: return attention_rows_f32x8<8>;
    default: return nullptr;
    }
}

// Rows [0, rows) of the flattened (b, h) in a.H-sized groups, split over
// intra-op threads (each row is computed whole by one thread, so the result
// does not depend on the split).
template <class T> void attention_run(const attn_args<T> &a, int64_t rows) {
    const int64_t work = a.Tq * a.Tk * (a.D + a.Dv);
    const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(work, 1));
    const bool avx2 = have_avx2();
    f32_rows_fn fast = nullptr;
    if constexpr (std::is_same<T, float>::value)
        if (avx2) fast = f32x8_kernel_for(a.D, a.Dv);
    at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
        std::vector<T> s(static_cast<size_t>(a.Tk + 8)); // + 8: the last block's scores
        if constexpr (std::is_same<T, float>::value)
            if (fast) return fast(a, begin, end, s.data());
        if (avx2)
            attention_rows_avx2(a, begin, end, s.data());
        else
            attention_rows(a, begin, end, s.data());
    });
}

template <class T>
void attention_kernel(const at::Tensor &q, const at::Tensor &k, const at::Tensor &v, const at::Tensor &km,
                      double scale, at::Tensor &out) {
    attn_args<T> a;
    a.q = q.data_ptr<T>();
    a.k = k.data_ptr<T>();
    a.v = v.data_ptr<T>();
    a.out = out.data_ptr<T>();
    a.mask = km.defined() ? km.data_ptr<bool>() : nullptr;
    a.ms0 = km.defined() ? km.stride(0) : 0;
    a.H = q.size(1);
    a.Tq = q.size(2);
    a.Tk = k.size(2);
    a.D = q.size(3);
    a.Dv = v.size(3);
    a.qs0 = q.stride(0), a.qs1 = q.stride(1), a.qs2 = q.stride(2);
    a.ks0 = k.stride(0), a.ks1 = k.stride(1), a.ks2 = k.stride(2);
    a.vs0 = v.stride(0), a.vs1 = v.stride(1), a.vs2 = v.stride(2);
    a.os0 = out.stride(0), a.os1 = out.stride(1), a.os2 = out.stride(2);
    a.scale = static_cast<T>(scale);
    attention_run(a, q.size(0) * a.H);
}

// True when the kernel applies: CPU float/double, nothing to differentiate,
// few queries per row (long full sequences are faster as BLAS matmuls).
bool use_kernel(const at::Tensor &q, const at::Tensor &k, const at::Tensor &v) {
    const bool grad = c10::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad());
    const at::ScalarType st = q.scalar_type();
    return !grad && q.is_cpu() && k.is_cpu() && v.is_cpu() && (st == at::kFloat || st == at::kDouble) &&
           k.scalar_type() == st && v.scalar_type() == st && q.size(2) <= 32;
}

// Attention of q [B,H,Tq,D] over k [B,H,Tk,D], v [B,H,Tk,Dv]. Query i sits at
// absolute position Tk-Tq+i and sees keys j <= Tk-Tq+i with key_mask[b,j] set
// (key_mask undefined: every key real). Masked scores are set to the lowest
// finite value rather than -inf, so a query with no visible key (a pad query)
// gets a finite uniform softmax, and its output row is then replaced by
// zeros: no NaN in the forward or the backward.
at::Tensor masked_attention(const at::Tensor &q, const at::Tensor &k, const at::Tensor &v,
                            const at::Tensor &key_mask, double scale) {
    TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "q, k, v must be [B,H,T,D]; got q ", q.sizes(),
                ", k ", k.sizes(), ", v ", v.sizes());
    const int64_t B = q.size(0), Tq = q.size(2), Tk = k.size(2);
    TORCH_CHECK(q.size(0) == k.size(0) && q.size(1) == k.size(1) && q.size(3) == k.size(3) &&
                    k.size(0) == v.size(0) && k.size(1) == v.size(1) && k.size(2) == v.size(2),
                "incompatible shapes q ", q.sizes(), ", k ", k.sizes(), ", v ", v.sizes());
    TORCH_CHECK(Tk >= Tq, "more queries (", Tq, ") than keys (", Tk, ")");
    TORCH_CHECK(at::isFloatingType(q.scalar_type()), "q must be floating point, got ", q.scalar_type());
    if (scale <= 0) scale = 1.0 / std::sqrt(static_cast<double>(q.size(3)));
    if (key_mask.defined())
        TORCH_CHECK(key_mask.dim() == 2 && key_mask.size(0) == B && key_mask.size(1) == Tk, "key_mask has shape ",
                    key_mask.sizes(), ", expected [", B, ", ", Tk, "] ([B, Tk] for k ", k.sizes(), ")");

    if (use_kernel(q, k, v)) {
        // the last dimension must be dense; the cache's narrowed views are
        at::Tensor qc = q.stride(3) == 1 ? q : q.contiguous();
        at::Tensor kc = k.stride(3) == 1 ? k : k.contiguous();
        at::Tensor vc = v.stride(3) == 1 ? v : v.contiguous();
        at::Tensor km = key_mask.defined() ? as_bool_mask(key_mask).contiguous() : at::Tensor();
        at::Tensor out = at::empty({B, q.size(1), Tq, v.size(3)}, q.options());
        if (q.scalar_type() == at::kDouble)
            attention_kernel<double>(qc, kc, vc, km, scale, out);
        else
            attention_kernel<float>(qc, kc, vc, km, scale, out);
        return out;
    }

    // allowed [B,1,Tq,Tk] (or [Tq,Tk] without a key mask)
    at::Tensor allowed;
    if (Tq > 1) allowed = at::ones({Tq, Tk}, q.options().dtype(at::kBool)).tril(Tk - Tq);
    if (key_mask.defined()) {
        at::Tensor km = as_bool_mask(key_mask).view({B, 1, 1, Tk});
        allowed = allowed.defined() ? at::logical_and(allowed, km) : km;
    }

    at::Tensor att = at::matmul(q * scale, k.transpose(-2, -1)); // [B,H,Tq,Tk]
    if (allowed.defined()) att = att.masked_fill(allowed.logical_not(), lowest_finite(att.scalar_type()));
    at::Tensor out = at::matmul(at::softmax(att, -1), v); // [B,H,Tq,Dv]
    if (key_mask.defined()) {
        // A query row with no visible key gives zeros.
        at::Tensor any = allowed.any(-1, /*keepdim=*/true); // [B,1,Tq,1]
        out = at::where(any, out, at::zeros({}, out.options()));
    }
    return out;
}

} // namespace

extern "C" RT_API rt_tensor *rt_causal_attention_masked(rt_scope *S, const rt_tensor *q, const rt_tensor *k,
                                                        const rt_tensor *v, const rt_tensor *key_mask, double scale) {
    if (!alive(__func__, q, "q") || !alive(__func__, k, "k") || !alive(__func__, v, "v") ||
        !alive(__func__, key_mask, "key_mask"))
        return nullptr;
    return op(S, __func__, [&] { return masked_attention(q->t, k->t, v->t, key_mask->t, scale); });
}

extern "C" RT_API rt_tensor *rt_causal_attention_cached_masked(rt_scope *S, rt_kv_cache *c, const rt_tensor *q,
                                                               const rt_tensor *k, const rt_tensor *v,
                                                               const rt_tensor *key_mask, double scale) {
    if (!alive(__func__, q, "q") || !alive(__func__, key_mask, "key_mask")) return nullptr;
    if (!alive(__func__, c, "cache") || !alive(__func__, k, "k") || !alive(__func__, v, "v")) return nullptr;
    // Check the mask against the length the cache will have before appending,
    // so a bad mask leaves the cache untouched.
    {
        const int64_t want = rt_kv_cache_len(c) + (k->t.dim() == 4 ? k->t.size(2) : 0);
        const at::Tensor &m = key_mask->t;
        if (m.dim() != 2 || m.size(0) != q->t.size(0) || m.size(1) != want) {
            char buf[64];
            rt_set_error("%s: key_mask has shape %s, expected [%lld, %lld] (batch, cached %lld + new %lld positions)",
                         __func__, rt_shape_str(key_mask, buf, sizeof buf), (long long)q->t.size(0),
                         (long long)want, (long long)rt_kv_cache_len(c), (long long)(want - rt_kv_cache_len(c)));
            return nullptr;
        }
    }
    rt_tensor *k_all = nullptr, *v_all = nullptr;
    if (rt_kv_cache_append(c, nullptr, k, v, &k_all, &v_all) != RT_OK) return nullptr;
    rt_tensor *out = op(S, __func__, [&] { return masked_attention(q->t, k_all->t, v_all->t, key_mask->t, scale); });
    rt_free(k_all);
    rt_free(v_all);
    return out;
}

// ---------------------------------------------------------------------------
// Decoding with packed projections: an uninitialised cache, attention from
// one [B,T,3*H*D] projection, the tanh-GELU of the decoding MLP
// ---------------------------------------------------------------------------

struct rt_attn_cache {
    rt_tensor *k, *v; // [B,H,max_len,D], owned; positions >= len are never read
    int64_t len, max_len;
};

namespace {

// The tanh-approximation GELU in its sigmoid form,
//   0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)),  u = sqrt(2/pi) (x + 0.044715 x^3),
// which has no cancellation for negative x; exp256 keeps it within a few ulp.
__attribute__((target("avx2,fma"))) inline __m256 gelu256(__m256 xv) {
    const __m256 c1 = _mm256_set1_ps(-2.0f * 0.7978845608028654f), c3 = _mm256_set1_ps(0.044715f);
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 x2 = _mm256_mul_ps(xv, xv);
    const __m256 m2u = _mm256_mul_ps(_mm256_mul_ps(c1, xv), _mm256_fmadd_ps(c3, x2, one)); // -2u
    return _mm256_div_ps(xv, _mm256_add_ps(one, exp256(m2u)));
}

__attribute__((target("avx2,fma"))) void gelu_tanh_f32_avx2(const float *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, gelu256(_mm256_loadu_ps(x + i)));
    for (; i < n; i++) {
        const float m2u = -2.0f * 0.7978845608028654f * x[i] * (1.0f + 0.044715f * x[i] * x[i]);
        y[i] = x[i] / (1.0f + std::exp(std::min(m2u, 88.3762626647949f)));
    }
}

at::Tensor gelu_tanh_inference(const at::Tensor &x) {
    if (!(x.is_cpu() && x.scalar_type() == at::kFloat && have_avx2())) return at::gelu(x, "tanh");
    at::Tensor xc = x.contiguous();
    at::Tensor y = at::empty_like(xc);
    const float *px = xc.data_ptr<float>();
    float *py = y.data_ptr<float>();
    at::parallel_for(0, xc.numel(), 32768, [&](int64_t begin, int64_t end) {
        gelu_tanh_f32_avx2(px + begin, py + begin, end - begin);
    });
    return y;
}

// qkv [B,T,3*H*D] -> [B,T,H*D]: append its k, v parts to c, then attend its
// q part over everything cached. Shapes are checked by the caller.
at::Tensor attention_qkv(rt_attn_cache *c, const at::Tensor &qkv, const at::Tensor &key_mask, double scale) {
    const at::Tensor &ck = c->k->t, &cv = c->v->t;
    const int64_t B = ck.size(0), H = ck.size(1), D = ck.size(3), T = qkv.size(1), len = c->len;
    at::Tensor parts = qkv.reshape({B, T, 3, H, D});
    at::Tensor q = parts.select(2, 0).permute({0, 2, 1, 3}); // [B,H,T,D], strided views of qkv
    {
        at::NoGradGuard no_grad;
        ck.narrow(2, len, T).copy_(parts.select(2, 1).permute({0, 2, 1, 3}));
        cv.narrow(2, len, T).copy_(parts.select(2, 2).permute({0, 2, 1, 3}));
    }
    c->len = len + T;
    at::Tensor k = ck.narrow(2, 0, len + T), v = cv.narrow(2, 0, len + T); // [B,H,len+T,D]
    if (scale <= 0) scale = 1.0 / std::sqrt(static_cast<double>(D));
    if (use_kernel(q, k, v) && q.stride(3) == 1) {
        // the kernel writes the merged-heads layout directly
        at::Tensor out = at::empty({B, T, H, D}, qkv.options());
        at::Tensor out_bhtd = out.permute({0, 2, 1, 3});
        at::Tensor km = as_bool_mask(key_mask).contiguous();
        if (qkv.scalar_type() == at::kDouble)
            attention_kernel<double>(q, k, v, km, scale, out_bhtd);
        else
            attention_kernel<float>(q, k, v, km, scale, out_bhtd);
        return out.view({B, T, H * D});
    }
    return masked_attention(q, k, v, key_mask, scale).transpose(1, 2).reshape({B, T, H * D});
}

} // namespace

extern "C" RT_API rt_attn_cache *rt_attn_cache_new(int64_t batch, int64_t heads, int64_t max_len, int64_t head_dim,
                                                   rt_opts o) {
    if (batch <= 0 || heads <= 0 || max_len <= 0 || head_dim <= 0) {
        rt_set_error("%s: sizes must be positive: batch %lld, heads %lld, max_len %lld, head_dim %lld", __func__,
                     (long long)batch, (long long)heads, (long long)max_len, (long long)head_dim);
        return nullptr;
    }
    if (o.dtype != RT_F32 && o.dtype != RT_F64) {
        rt_set_error("%s: dtype %s is not supported (float32 or float64)", __func__, rt_dtype_name(o.dtype));
        return nullptr;
    }
    const int64_t shape[4] = {batch, heads, max_len, head_dim};
    rt_tensor *k = rt_empty(nullptr, shape, 4, o), *v = k ? rt_empty(nullptr, shape, 4, o) : nullptr;
    rt_attn_cache *c =
        v ? rt::guard<rt_attn_cache *>(__func__, nullptr, [&] { return new rt_attn_cache{k, v, 0, max_len}; })
          : nullptr;
    if (!c) {
        rt_free(k);
        rt_free(v);
    }
    return c;
}

namespace {

// True when T more positions fit in c; else the overflow message.
bool cache_has_room(const char *fn, const rt_attn_cache *c, int64_t T) {
    if (c->len + T <= c->max_len) return true;
    rt_set_error("%s: KV cache overflow: %lld cached + %lld new positions exceed max_len %lld", fn, (long long)c->len,
                 (long long)T, (long long)c->max_len);
    return false;
}

} // namespace

extern "C" RT_API void rt_attn_cache_free(rt_attn_cache *c) {
    if (!c) return;
    rt_free(c->k);
    rt_free(c->v);
    delete c;
}

extern "C" RT_API int64_t rt_attn_cache_len(const rt_attn_cache *c) { return c ? c->len : -1; }

extern "C" RT_API void rt_attn_cache_clear(rt_attn_cache *c) {
    if (c) c->len = 0;
}

extern "C" RT_API rt_tensor *rt_attention_qkv_cached(rt_scope *S, rt_attn_cache *c, const rt_tensor *qkv,
                                                     const rt_tensor *key_mask, double scale) {
    if (!alive(__func__, qkv, "qkv") || !alive(__func__, key_mask, "key_mask")) return nullptr;
    if (!alive(__func__, c, "cache")) return nullptr;
    const at::Tensor &x = qkv->t, &m = key_mask->t, &ck = c->k->t;
    const int64_t B = ck.size(0), H = ck.size(1), D = ck.size(3);
    char buf[64];
    if (x.dim() != 3 || x.size(0) != B || x.size(2) != 3 * H * D || x.size(1) < 1 ||
        x.scalar_type() != ck.scalar_type() || x.device() != ck.device()) {
        rt_set_error("%s: qkv %s (%s) must be [%lld, T, %lld] in the cache's dtype and device (batch, T >= 1, "
                     "3 x %lld heads x %lld)",
                     __func__, rt_shape_str(qkv, buf, sizeof buf), rt_dtype_name(rt_dtype_of(qkv)), (long long)B,
                     (long long)(3 * H * D), (long long)H, (long long)D);
        return nullptr;
    }
    const int64_t T = x.size(1), want = c->len + T;
    if (!cache_has_room(__func__, c, T)) return nullptr;
    if (m.dim() != 2 || m.size(0) != B || m.size(1) != want) {
        rt_set_error("%s: key_mask has shape %s, expected [%lld, %lld] (batch, cached %lld + new %lld positions)",
                     __func__, rt_shape_str(key_mask, buf, sizeof buf), (long long)B, (long long)want,
                     (long long)c->len, (long long)T);
        return nullptr;
    }
    return op(S, __func__, [&] { return attention_qkv(c, x, m, scale); });
}

extern "C" RT_API rt_tensor *rt_gelu_tanh_inference(rt_scope *S, const rt_tensor *x) {
    if (!alive(__func__, x, "x")) return nullptr;
    return op(S, __func__, [&] {
        at::NoGradGuard no_grad;
        TORCH_CHECK(at::isFloatingType(x->t.scalar_type()), "x must be floating point, got ", x->t.scalar_type());
        return gelu_tanh_inference(x->t);
    });
}

// ---------------------------------------------------------------------------
// A whole pre-norm block per call while decoding
// ---------------------------------------------------------------------------
//
// At batch 64 and width 128 a block's ATen composition (two LayerNorms, four
// linears, attention, the GELU, two residual adds: a dozen dispatched ops,
// each allocating its output) costs about as much as its GEMMs. Here the
// block is one pass over raw pointers: the LayerNorms and the GELU are loops,
// each linear is one BLAS call (the residual adds are the GEMMs accumulating
// into x itself), and the intermediates live in a scratch tensor the caller
// keeps between calls.

namespace {

// One linear of a block on raw pointers: w [out,in], or for float32 packed
// as [ceil(out/16), in, 16] (rt_pack_rows16); b [out] or NULL.
template <class F> struct lin_ptrs {
    const F *w, *b;
    int64_t out, in;
    bool packed;
};

// The raw weights of one block (see rt_block_weights); C = width, Fh = MLP width.
template <class F> struct block_ptrs {
    const F *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    lin_ptrs<F> qkv, o, fc, proj;
    F eps1, eps2;
    int64_t C, Fh;
};

// y = (x - mean) / sqrt(var + eps) * w + b for R rows of C: the population
// variance from a second pass over x - mean, sums in 8 lanes.
template <class F>
__attribute__((always_inline)) inline void layer_norm_rows(const F *x, F *__restrict y, const F *w, const F *b,
                                                           int64_t R, int64_t C, F eps) {
    for (int64_t r = 0; r < R; r++) {
        const F *xr = x + r * C;
        F *yr = y + r * C;
        F acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, tail = 0;
        int64_t j = 0;
        for (; j + 8 <= C; j += 8)
            for (int l = 0; l < 8; l++) acc[l] += xr[j + l];
        for (; j < C; j++) tail += xr[j];
        const F mean = (((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail) / F(C);
        F sq[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        tail = 0;
        for (j = 0; j + 8 <= C; j += 8)
            for (int l = 0; l < 8; l++) {
                const F d = xr[j + l] - mean;
                sq[l] += d * d;
            }
        for (; j < C; j++) tail += (xr[j] - mean) * (xr[j] - mean);
        const F var = (((sq[0] + sq[1]) + (sq[2] + sq[3])) + ((sq[4] + sq[5]) + (sq[6] + sq[7])) + tail) / F(C);
        const F rstd = F(1) / std::sqrt(var + eps);
        for (j = 0; j < C; j++) yr[j] = (xr[j] - mean) * rstd * w[j] + b[j];
    }
}

template <class F>
__attribute__((target("avx2,fma"))) void layer_norm_rows_avx2(const F *x, F *__restrict y, const F *w, const F *b,
                                                              int64_t R, int64_t C, F eps) {
    layer_norm_rows(x, y, w, b, R, C, eps);
}

// float32 rows whose width is a multiple of 8 (GCC leaves the loops above
// scalar): the same two passes with 8-lane sums reduced in hsum256's order.
__attribute__((target("avx2,fma"))) void layer_norm_f32x8(const float *x, float *__restrict y, const float *w,
                                                         const float *b, int64_t R, int64_t C, float eps) {
    const float inv_c = 1.0f / static_cast<float>(C);
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        __m256 acc = _mm256_setzero_ps();
        for (int64_t j = 0; j < C; j += 8) acc = _mm256_add_ps(acc, _mm256_loadu_ps(xr + j));
        const __m256 mean = _mm256_set1_ps(hsum256(acc) * inv_c);
        __m256 sq = _mm256_setzero_ps();
        for (int64_t j = 0; j < C; j += 8) {
            const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(xr + j), mean);
            sq = _mm256_fmadd_ps(d, d, sq);
        }
        const __m256 rstd = _mm256_set1_ps(1.0f / std::sqrt(hsum256(sq) * inv_c + eps));
        for (int64_t j = 0; j < C; j += 8) {
            const __m256 d = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + j), mean), rstd);
            _mm256_storeu_ps(yr + j, _mm256_fmadd_ps(d, _mm256_loadu_ps(w + j), _mm256_loadu_ps(b + j)));
        }
    }
}

template <class F> void layer_norm(const F *x, F *__restrict y, const F *w, const F *b, int64_t R, int64_t C, F eps) {
    if constexpr (std::is_same<F, float>::value)
        if (have_avx2() && C % 8 == 0) return layer_norm_f32x8(x, y, w, b, R, C, eps);
    if (have_avx2())
        layer_norm_rows_avx2(x, y, w, b, R, C, eps);
    else
        layer_norm_rows(x, y, w, b, R, C, eps);
}

// y[r,:] = bias (or 0) for R rows of n: where a GEMM with beta = 1 starts.
template <class F> void fill_rows(F *y, const F *bias, int64_t R, int64_t n) {
    for (int64_t r = 0; r < R; r++) {
        if (bias)
            std::memcpy(y + r * n, bias, static_cast<size_t>(n) * sizeof(F));
        else
            std::memset(y + r * n, 0, static_cast<size_t>(n) * sizeof(F));
    }
}

// x[r,:] += bias for R rows of n (nothing for a NULL bias).
template <class F> void add_rows(F *__restrict x, const F *__restrict bias, int64_t R, int64_t n) {
    if (!bias) return;
    for (int64_t r = 0; r < R; r++)
        for (int64_t j = 0; j < n; j++) x[r * n + j] += bias[j];
}

// f = gelu_tanh(f + bias) in place for R rows of n (bias NULL = 0), as
// rt_gelu_tanh_inference computes it.
void gelu_bias_inplace(float *f, const float *bias, int64_t R, int64_t n) {
    const bool avx2 = have_avx2();
    for (int64_t r = 0; r < R; r++) {
        float *x = f + r * n;
        if (bias)
            for (int64_t i = 0; i < n; i++) x[i] += bias[i];
        if (avx2) {
            gelu_tanh_f32_avx2(x, x, n);
            continue;
        }
        for (int64_t i = 0; i < n; i++) {
            const float m2u = -2.0f * 0.7978845608028654f * x[i] * (1.0f + 0.044715f * x[i] * x[i]);
            x[i] = x[i] / (1.0f + std::exp(std::min(m2u, 88.3762626647949f)));
        }
    }
}
void gelu_bias_inplace(double *f, const double *bias, int64_t R, int64_t n) {
    for (int64_t r = 0; r < R; r++) {
        double *x = f + r * n;
        for (int64_t i = 0; i < n; i++) {
            const double v = bias ? x[i] + bias[i] : x[i];
            x[i] = 0.5 * v * (1.0 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
        }
    }
}

// ---- float32 products against pre-packed weights (decoding) ----
//
// Through BLAS every decoding step packs each weight matrix again (OpenBLAS
// copies the whole [out,in] operand into its panel layout per call): at 64
// rows that copy is an eighth of the product's time, and the weights stream
// from L3 three times instead of once. rt_pack_rows16 lays a weight out once
// per sequence as panels of 16 output features, [ceil(out/16), in, 16], and
// this kernel multiplies straight from them: 6 rows x 16 outputs in 12 AVX2
// accumulators, one pass over `in` (each output is one FMA chain in k order,
// so any split over threads gives the same bits). The epilogue adds the bias
// and, as asked, applies the GELU or accumulates into the destination (the
// residual add), so the results never make a second pass.

enum class epi { store, gelu, residual };

constexpr int kPanel = 16;

// Rows r0..r0+ROWS-1 of x [.,K] (row stride ldx) times one panel wp [K,16];
// n <= 16 live outputs go to y (row stride ldy) at columns j0..j0+n-1.
template <int ROWS>
__attribute__((target("avx2,fma"))) void panel_rows(const float *x, int64_t ldx, const float *wp, int64_t K,
                                                    const float *bias, float *y, int64_t ldy, int n, epi e) {
    __m256 acc[ROWS][2];
#pragma GCC unroll 6
    for (int r = 0; r < ROWS; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        const __m256 b0 = _mm256_loadu_ps(wp + k * kPanel), b1 = _mm256_loadu_ps(wp + k * kPanel + 8);
#pragma GCC unroll 6
        for (int r = 0; r < ROWS; r++) {
            const __m256 a = _mm256_broadcast_ss(x + r * ldx + k);
            acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);
        }
    }
    if (n == kPanel) { // a whole panel: the epilogue in registers
        const __m256 bb0 = bias ? _mm256_loadu_ps(bias) : _mm256_setzero_ps();
        const __m256 bb1 = bias ? _mm256_loadu_ps(bias + 8) : _mm256_setzero_ps();
#pragma GCC unroll 6
        for (int r = 0; r < ROWS; r++) {
            __m256 v0 = _mm256_add_ps(acc[r][0], bb0), v1 = _mm256_add_ps(acc[r][1], bb1);
            float *yr = y + r * ldy;
            if (e == epi::gelu) v0 = gelu256(v0), v1 = gelu256(v1);
            if (e == epi::residual)
                v0 = _mm256_add_ps(_mm256_loadu_ps(yr), v0), v1 = _mm256_add_ps(_mm256_loadu_ps(yr + 8), v1);
            _mm256_storeu_ps(yr, v0);
            _mm256_storeu_ps(yr + 8, v1);
        }
        return;
    }
    // the last, partial panel through a spilled copy
    alignas(32) float res[ROWS][kPanel];
#pragma GCC unroll 6
    for (int r = 0; r < ROWS; r++) {
        _mm256_store_ps(res[r], acc[r][0]);
        _mm256_store_ps(res[r] + 8, acc[r][1]);
    }
    for (int r = 0; r < ROWS; r++) {
        float *out = res[r], *yr = y + r * ldy;
        if (bias)
            for (int j = 0; j < n; j++) out[j] += bias[j];
        if (e == epi::gelu) gelu_tanh_f32_avx2(out, out, kPanel);
        if (e == epi::residual)
            for (int j = 0; j < n; j++) yr[j] += out[j];
        else
            std::memcpy(yr, out, static_cast<size_t>(n) * sizeof(float));
    }
}

// The same for CPUs without AVX2: plain loops, the same k order per output.
void panel_rows_generic(const float *x, int64_t ldx, const float *wp, int64_t K, const float *bias, float *y,
                        int64_t ldy, int rows, int n, epi e) {
    for (int r = 0; r < rows; r++) {
        float out[kPanel] = {0};
        for (int64_t k = 0; k < K; k++)
            for (int j = 0; j < kPanel; j++) out[j] += x[r * ldx + k] * wp[k * kPanel + j];
        float *yr = y + r * ldy;
        for (int j = 0; j < n; j++) {
            float v = out[j] + (bias ? bias[j] : 0.0f);
            if (e == epi::gelu) {
                const float m2u = -2.0f * 0.7978845608028654f * v * (1.0f + 0.044715f * v * v);
                v = v / (1.0f + std::exp(std::min(m2u, 88.3762626647949f)));
            }
            yr[j] = e == epi::residual ? yr[j] + v : v;
        }
    }
}

// y[R,N] (row stride ldy) = epilogue(x[R,K] W^T + bias) with W packed as
// [ceil(N/16), K, 16]; panels are split over intra-op threads.
void packed_gemm(const float *x, int64_t ldx, const float *wp, int64_t N, int64_t K, const float *bias, float *y,
                 int64_t ldy, int64_t R, epi e) {
    const int64_t panels = (N + kPanel - 1) / kPanel;
    const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(R * K, 1));
    const bool avx2 = have_avx2();
    at::parallel_for(0, panels, grain, [&](int64_t begin, int64_t end) {
        for (int64_t p = begin; p < end; p++) {
            const float *wpp = wp + p * K * kPanel;
            const int n = static_cast<int>(std::min<int64_t>(kPanel, N - p * kPanel));
            const float *bp = bias ? bias + p * kPanel : nullptr;
            float *yp = y + p * kPanel;
            int64_t r = 0;
            if (!avx2) {
                for (; r < R; r += 6)
                    panel_rows_generic(x + r * ldx, ldx, wpp, K, bp, yp + r * ldy, ldy,
                                       static_cast<int>(std::min<int64_t>(6, R - r)), n, e);
                continue;
            }
            for (; r + 6 <= R; r += 6) panel_rows<6>(x + r * ldx, ldx, wpp, K, bp, yp + r * ldy, ldy, n, e);
            switch (R - r) {
            case 5: panel_rows<5>(x + r * ldx, ldx, wpp, K, bp, yp + r * ldy, ldy, n, e); break;
            case 4: panel_rows<4>(x + r * ldx, ldx, wpp, K, bp, yp + r * ldy, ldy, n, e); break;
            case 3: panel_rows<3>(x + r * ldx, ldx, wpp, K, bp, yp + r * ldy, ldy, n, e); break;
            case 2: panel_rows<2>(x + r * ldx, ldx, wpp, K, bp, yp + r * ldy, ldy, n, e); break;
            case 1: panel_rows<1>(x + r * ldx, ldx, wpp, K, bp, yp + r * ldy, ldy, n, e); break;
            default: break;
            }
        }
    });
}

// y[R,out] (row stride ldy) = epilogue(x[R,in] w^T + b): store, GELU, or
// added to y (the residual). Packed weights take packed_gemm; plain ones one
// BLAS call, starting from the bias (beta = 1, as addmm) or, for the GELU,
// from nothing with the bias added in the GELU's pass.
template <class F> void linear_rows(const lin_ptrs<F> &L, const F *x, int64_t R, F *y, int64_t ldy, epi e) {
    if constexpr (std::is_same<F, float>::value) {
        if (L.packed) return packed_gemm(x, L.in, L.w, L.out, L.in, L.b, y, ldy, R, e);
    }
    switch (e) {
    case epi::store:
        fill_rows(y, L.b, R, L.out);
        rt::gemm_rm(false, true, R, L.out, L.in, F(1), x, L.in, L.w, L.in, F(1), y, ldy);
        break;
    case epi::gelu:
        rt::gemm_rm(false, true, R, L.out, L.in, F(1), x, L.in, L.w, L.in, F(0), y, ldy);
        gelu_bias_inplace(y, L.b, R, L.out);
        break;
    case epi::residual:
        add_rows(y, L.b, R, L.out);
        rt::gemm_rm(false, true, R, L.out, L.in, F(1), x, L.in, L.w, L.in, F(1), y, ldy);
        break;
    }
}

// One head's key or value (D elements) into the cache: thousands of these
// per decoding step, too short for memcpy's call and dispatch to pay off.
__attribute__((target("avx2,fma"))) void copy_head_f32x8(float *dst, const float *src, int64_t D) {
    for (int64_t d = 0; d < D; d += 8) _mm256_storeu_ps(dst + d, _mm256_loadu_ps(src + d));
}
template <class F> inline void copy_head(F *dst, const F *src, int64_t D) {
    if constexpr (std::is_same<F, float>::value)
        if (D % 8 == 0 && have_avx2()) return copy_head_f32x8(dst, src, D);
    std::memcpy(dst, src, static_cast<size_t>(D) * sizeof(F));
}

// Rows of a chunk: the scratch of a prompt-filling call stays near
// kChunkRows x (5C + F) elements however long the prompts are.
constexpr int64_t kChunkRows = 256;

// Elements of scratch block_decode needs for B rows of T positions.
int64_t block_work_size(int64_t B, int64_t T, int64_t C, int64_t Fh) {
    const int64_t rows = std::min(B, std::max<int64_t>(1, kChunkRows / T)) * T;
    return rows * (5 * C + Fh);
}

// x [B,T,C] (dense) through one block, appending the T new keys and values
// to c. mask: [B, len+T] bools with row stride ms0, or NULL (all real).
// work: block_work_size elements. Every row is independent of the others,
// so the batch goes through in chunks of whole sequences.
template <class F>
void block_decode(rt_attn_cache *c, F *x, int64_t B, int64_t T, const bool *mask, int64_t ms0, const block_ptrs<F> &w,
                  F *work) {
    const at::Tensor &ck = c->k->t, &cv = c->v->t;
    const int64_t H = ck.size(1), ML = ck.size(2), D = ck.size(3), C = w.C, Fh = w.Fh, len = c->len;
    const int64_t bchunk = std::min(B, std::max<int64_t>(1, kChunkRows / T));
    F *kc = ck.data_ptr<F>(), *vc = cv.data_ptr<F>();
    for (int64_t b0 = 0; b0 < B; b0 += bchunk) {
        const int64_t nb = std::min(bchunk, B - b0), R = nb * T;
        F *xs = x + b0 * T * C;     // [R,C]   this chunk's rows of x
        F *h = work;                // [R,C]   a LayerNorm's output
        F *qkv = h + R * C;         // [R,3C]  q | k | v per row
        F *att = qkv + R * 3 * C;   // [R,C]   attention, merged heads
        F *f = att + R * C;         // [R,Fh]  the MLP's hidden layer

        // x + o_proj(attention(ln_1(x)))
        layer_norm(xs, h, w.ln1_w, w.ln1_b, R, C, w.eps1);
        linear_rows(w.qkv, h, R, qkv, 3 * C, epi::store);
        for (int64_t b = 0; b < nb; b++)
            for (int64_t t = 0; t < T; t++) {
                const F *row = qkv + (b * T + t) * 3 * C;
                for (int64_t hd = 0; hd < H; hd++) {
                    const int64_t at_ = (((b0 + b) * H + hd) * ML + len + t) * D;
                    copy_head(kc + at_, row + C + hd * D, D);
                    copy_head(vc + at_, row + 2 * C + hd * D, D);
                }
            }
        attn_args<F> a;
        a.q = qkv, a.out = att;
        a.k = kc + b0 * H * ML * D, a.v = vc + b0 * H * ML * D;
        a.mask = mask ? mask + b0 * ms0 : nullptr, a.ms0 = ms0;
        a.H = H, a.Tq = T, a.Tk = len + T, a.D = D, a.Dv = D;
        a.qs0 = T * 3 * C, a.qs1 = D, a.qs2 = 3 * C;
        a.ks0 = H * ML * D, a.ks1 = ML * D, a.ks2 = D;
        a.vs0 = a.ks0, a.vs1 = a.ks1, a.vs2 = a.ks2;
        a.os0 = T * C, a.os1 = D, a.os2 = C;
        a.scale = static_cast<F>(1.0 / std::sqrt(static_cast<double>(D)));
        attention_run(a, nb * H);
        linear_rows(w.o, att, R, xs, C, epi::residual);

        // x + proj(gelu_tanh(fc(ln_2(x))))
        layer_norm(xs, h, w.ln2_w, w.ln2_b, R, C, w.eps2);
        linear_rows(w.fc, h, R, f, Fh, epi::gelu);
        linear_rows(w.proj, f, R, xs, C, epi::residual);
    }
    c->len = len + T;
}

// Checks one weight of rt_block_decode_: a dense CPU tensor of `dt` and the
// given shape (n1 < 0: 1-D [n0]; a 2-D [n0,n1] matrix may come packed as
// rt_pack_rows16's float32 [ceil(n0/16), n1, 16]); optional ones may be NULL.
bool check_weight(const char *fn, const rt_tensor *t, const char *name, at::ScalarType dt, int64_t n0, int64_t n1,
                  bool optional) {
    char buf[64];
    if (!t) {
        if (optional) return true;
        rt_set_error("%s: weights->%s is NULL", fn, name);
        return false;
    }
    const at::Tensor &x = t->t;
    const bool packed = n1 >= 0 && x.dim() == 3 && dt == at::kFloat && x.size(0) == (n0 + 15) / 16 &&
                        x.size(1) == n1 && x.size(2) == 16;
    const bool shape_ok =
        n1 < 0 ? x.dim() == 1 && x.size(0) == n0 : packed || (x.dim() == 2 && x.size(0) == n0 && x.size(1) == n1);
    if (!shape_ok || x.scalar_type() != dt || !x.is_cpu() || !x.is_contiguous()) {
        if (n1 < 0)
            rt_set_error("%s: weights->%s is %s (%s), expected a dense CPU [%lld] in the cache's dtype", fn, name,
                         rt_shape_str(t, buf, sizeof buf), rt_dtype_name(rt_dtype_of(t)), (long long)n0);
        else
            rt_set_error("%s: weights->%s is %s (%s), expected a dense CPU [%lld, %lld] in the cache's dtype (or "
                         "float32 [%lld, %lld, 16] from rt_pack_rows16)",
                         fn, name, rt_shape_str(t, buf, sizeof buf), rt_dtype_name(rt_dtype_of(t)), (long long)n0,
                         (long long)n1, (long long)((n0 + 15) / 16), (long long)n1);
        return false;
    }
    return true;
}

template <class F> const F *ptr(const rt_tensor *t) { return t ? t->t.data_ptr<F>() : nullptr; }

template <class F> lin_ptrs<F> lin_of(const rt_tensor *w, const rt_tensor *b, int64_t out, int64_t in) {
    return lin_ptrs<F>{ptr<F>(w), ptr<F>(b), out, in, w->t.dim() == 3};
}

// The checked rt_block_weights as raw pointers.
template <class F> block_ptrs<F> block_ptrs_of(const rt_block_weights *w, int64_t C, int64_t Fh) {
    block_ptrs<F> p;
    p.ln1_w = ptr<F>(w->ln_1_weight), p.ln1_b = ptr<F>(w->ln_1_bias);
    p.ln2_w = ptr<F>(w->ln_2_weight), p.ln2_b = ptr<F>(w->ln_2_bias);
    p.qkv = lin_of<F>(w->qkv_weight, w->qkv_bias, 3 * C, C);
    p.o = lin_of<F>(w->o_weight, w->o_bias, C, C);
    p.fc = lin_of<F>(w->fc_weight, w->fc_bias, Fh, C);
    p.proj = lin_of<F>(w->proj_weight, w->proj_bias, C, Fh);
    p.eps1 = static_cast<F>(w->ln_1_eps), p.eps2 = static_cast<F>(w->ln_2_eps);
    p.C = C, p.Fh = Fh;
    return p;
}

} // namespace

extern "C" RT_API int rt_block_decode_(rt_attn_cache *c, rt_tensor *x, const rt_tensor *key_mask,
                                       const rt_block_weights *w, rt_tensor *work) {
    const char *fn = __func__;
    char buf[64];
    if (!alive(fn, x, "x")) return RT_EINVAL;
    if (!c || !w) {
        rt_set_error("%s: %s is NULL", fn, !c ? "cache" : "weights");
        return RT_EINVAL;
    }
    const at::Tensor &xt = x->t, &ck = c->k->t;
    const int64_t B = ck.size(0), H = ck.size(1), D = ck.size(3), C = H * D;
    const at::ScalarType dt = ck.scalar_type();
    if (xt.dim() != 3 || xt.size(0) != B || xt.size(2) != C || xt.size(1) < 1 || xt.scalar_type() != dt ||
        !xt.is_cpu() || !xt.is_contiguous() || xt.requires_grad()) {
        rt_set_error("%s: x %s (%s) must be a dense CPU [%lld, T, %lld] (batch, T >= 1, %lld heads x %lld) in the "
                     "cache's dtype %s that does not require grad (it is updated in place)",
                     fn, rt_shape_str(x, buf, sizeof buf), rt_dtype_name(rt_dtype_of(x)), (long long)B, (long long)C,
                     (long long)H, (long long)D, dt == at::kFloat ? "float32" : "float64");
        return RT_EINVAL;
    }
    const int64_t T = xt.size(1), want = c->len + T;
    if (!cache_has_room(fn, c, T)) return RT_EINVAL;
    if (key_mask) {
        const at::Tensor &m = key_mask->t;
        if (m.dim() != 2 || m.size(0) != B || m.size(1) != want || m.scalar_type() != at::kBool || !m.is_cpu() ||
            m.stride(1) != 1) {
            rt_set_error("%s: key_mask %s (%s) must be a CPU bool [%lld, %lld] (batch, cached %lld + new %lld "
                         "positions) with dense rows",
                         fn, rt_shape_str(key_mask, buf, sizeof buf), rt_dtype_name(rt_dtype_of(key_mask)),
                         (long long)B, (long long)want, (long long)c->len, (long long)T);
            return RT_EINVAL;
        }
    }
    // the MLP width: the projection's input (its dim 1, packed or not)
    const int64_t Fh = w->proj_weight && w->proj_weight->t.dim() >= 2 ? w->proj_weight->t.size(1) : 0;
    if (!check_weight(fn, w->ln_1_weight, "ln_1_weight", dt, C, -1, false) ||
        !check_weight(fn, w->ln_1_bias, "ln_1_bias", dt, C, -1, false) ||
        !check_weight(fn, w->qkv_weight, "qkv_weight", dt, 3 * C, C, false) ||
        !check_weight(fn, w->qkv_bias, "qkv_bias", dt, 3 * C, -1, true) ||
        !check_weight(fn, w->o_weight, "o_weight", dt, C, C, false) ||
        !check_weight(fn, w->o_bias, "o_bias", dt, C, -1, true) ||
        !check_weight(fn, w->ln_2_weight, "ln_2_weight", dt, C, -1, false) ||
        !check_weight(fn, w->ln_2_bias, "ln_2_bias", dt, C, -1, false) ||
        !check_weight(fn, w->fc_weight, "fc_weight", dt, Fh, C, false) ||
        !check_weight(fn, w->fc_bias, "fc_bias", dt, Fh, -1, true) ||
        !check_weight(fn, w->proj_weight, "proj_weight", dt, C, Fh, false) ||
        !check_weight(fn, w->proj_bias, "proj_bias", dt, C, -1, true))
        return RT_EINVAL;
    if (!(w->ln_1_eps > 0.0) || !(w->ln_2_eps > 0.0)) {
        rt_set_error("%s: LayerNorm eps %g / %g must be > 0", fn, w->ln_1_eps, w->ln_2_eps);
        return RT_EINVAL;
    }
    if (work && (work->t.scalar_type() != dt || !work->t.is_cpu() || work->owner)) {
        rt_set_error("%s: work (%s) must be a caller-owned CPU tensor in the cache's dtype", fn,
                     rt_dtype_name(rt_dtype_of(work)));
        return RT_EINVAL;
    }
    const bool *mask = key_mask ? key_mask->t.data_ptr<bool>() : nullptr;
    const int64_t ms0 = key_mask ? key_mask->t.stride(0) : 0;
    return rt::call(fn, [&] {
        const int64_t need = block_work_size(B, T, C, Fh);
        at::Tensor tmp;
        at::Tensor &ws = work ? work->t : tmp;
        if (!ws.defined() || ws.numel() < need || !ws.is_contiguous()) ws = at::empty({need}, xt.options());
        if (dt == at::kFloat) {
            const block_ptrs<float> p = block_ptrs_of<float>(w, C, Fh);
            block_decode(c, xt.data_ptr<float>(), B, T, mask, ms0, p, ws.data_ptr<float>());
        } else {
            const block_ptrs<double> p = block_ptrs_of<double>(w, C, Fh);
            block_decode(c, xt.data_ptr<double>(), B, T, mask, ms0, p, ws.data_ptr<double>());
        }
    });
}

extern "C" RT_API rt_tensor *rt_pack_rows16(rt_scope *S, const rt_tensor *w) {
    if (!alive(__func__, w, "w")) return nullptr;
    const at::Tensor &t = w->t;
    if (t.dim() != 2 || t.scalar_type() != at::kFloat || !t.is_cpu()) {
        char buf[64];
        rt_set_error("%s: w %s (%s) must be a float32 CPU matrix [out, in]", __func__, rt_shape_str(w, buf, sizeof buf),
                     rt_dtype_name(rt_dtype_of(w)));
        return nullptr;
    }
    return op(S, __func__, [&] {
        at::NoGradGuard no_grad;
        const int64_t N = t.size(0), K = t.size(1), P = (N + kPanel - 1) / kPanel;
        at::Tensor src = t.contiguous();
        at::Tensor out = at::zeros({P, K, kPanel}, src.options());
        const float *ps = src.data_ptr<float>();
        float *po = out.data_ptr<float>();
        for (int64_t n = 0; n < N; n++)
            for (int64_t k = 0; k < K; k++) po[((n / kPanel) * K + k) * kPanel + n % kPanel] = ps[n * K + k];
        return out;
    });
}

// ---------------------------------------------------------------------------
// Position ids of left-padded rows
// ---------------------------------------------------------------------------

extern "C" RT_API rt_tensor *rt_mask_positions(rt_scope *S, const rt_tensor *mask, int64_t t) {
    if (!alive(__func__, mask, "mask")) return nullptr;
    const at::Tensor &m = mask->t;
    if (m.dim() != 2 || t < 1 || t > m.size(1)) {
        char buf[64];
        rt_set_error("%s: mask %s must be [B,L] and t = %lld in [1, L]", __func__, rt_shape_str(mask, buf, sizeof buf),
                     (long long)t);
        return nullptr;
    }
    return op(S, __func__, [&] {
        at::NoGradGuard no_grad;
        const int64_t B = m.size(0), L = m.size(1);
        if (!m.is_cpu()) {
            at::Tensor cs = as_bool_mask(m).to(at::kLong).cumsum(1).narrow(1, L - t, t);
            return (cs - 1).clamp_min(0);
        }
        at::Tensor mb = as_bool_mask(m);
        at::Tensor pos = at::empty({B, t}, at::TensorOptions().dtype(at::kLong));
        int64_t *pp = pos.data_ptr<int64_t>();
        const bool *pm = mb.data_ptr<bool>();
        const int64_t s0 = mb.stride(0), s1 = mb.stride(1);
        for (int64_t b = 0; b < B; b++) {
            int64_t count = 0;
            for (int64_t j = 0; j < L; j++) {
                count += pm[b * s0 + j * s1] ? 1 : 0;
                if (j >= L - t) pp[b * t + j - (L - t)] = count > 0 ? count - 1 : 0;
            }
        }
        return pos;
    });
}

// ---------------------------------------------------------------------------
// Sampling
// ---------------------------------------------------------------------------

namespace {

// The sampling-parameter checks shared by rt_filter_logits and rt_sample_logits.
bool check_sampling(const char *fn, double temperature, int64_t top_k, double top_p) {
    if (!(temperature >= 0.0) || !std::isfinite(temperature)) {
        rt_set_error("%s: temperature %g must be finite and >= 0 (0 = greedy)", fn, temperature);
        return false;
    }
    if (top_k < 0) {
        rt_set_error("%s: top_k %lld must be >= 0 (0 = off)", fn, (long long)top_k);
        return false;
    }
    if (!(top_p > 0.0 && top_p <= 1.0)) {
        rt_set_error("%s: top_p %g must be in (0, 1] (1 = off)", fn, top_p);
        return false;
    }
    return true;
}

// logits [..., V] -> z [..., V]: divided by the temperature (when > 0), the
// tokens top-k and top-p drop set to -inf. No grad.
at::Tensor filter_logits(const at::Tensor &x, double temperature, int64_t top_k, double top_p) {
    TORCH_CHECK(x.dim() >= 1, "logits must be [..., V], got a 0-dim tensor");
    TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
                "logits must be float32 or float64, got ", x.scalar_type());
    const int64_t V = x.size(-1);
    TORCH_CHECK(V > 0, "logits have an empty vocabulary: ", x.sizes());
    const double ninf = -std::numeric_limits<double>::infinity();
    at::Tensor z = temperature > 0.0 ? x / temperature : x;
    if (top_k > 0 && top_k < V) {
        // HF TopKLogitsWarper: drop what is below the k-th largest (ties stay).
        at::Tensor kth = std::get<0>(at::topk(z, top_k, -1)).narrow(-1, top_k - 1, 1); // [...,1]
        z = z.masked_fill(z < kth, ninf);
    }
    if (top_p < 1.0) {
        // Nucleus: in descending order keep a token while the mass before it
        // is < top_p (the first always stays); HF TopPLogitsWarper.
        auto sorted = at::sort(z, -1, /*descending=*/true);
        at::Tensor p = at::softmax(std::get<0>(sorted), -1);
        at::Tensor drop_sorted = (at::cumsum(p, -1) - p) >= top_p; // [...,V]
        at::Tensor drop = at::empty_like(drop_sorted).scatter_(-1, std::get<1>(sorted), drop_sorted);
        z = z.masked_fill(drop, ninf);
    }
    return z;
}

// rt_sample_logits for the common decoding case -- CPU, contiguous [N,V],
// temperature > 0, no nucleus -- one pass per row instead of seven ATen ops:
// z = x / T, drop below the k-th largest (ties stay), logsumexp, the
// Gumbel-max draw (first index on ties, like argmax) and its log-prob. The
// same distribution and the same noise as the composition; the log-probs
// agree to rounding (the logsumexp accumulates in double). A NaN logit is
// an error here rather than an arbitrary token.
// The k-th largest of z[0..V) (no NaN; 0 < k < V): the smallest value with
// fewer than k values strictly greater -- the same number as nth_element's,
// by counting, V x V/8 vector compares. For the vocabularies of the text
// tasks (tens of tokens) this is a third of introselect's time, which
// mispredicts a branch at nearly every step.
__attribute__((target("avx2,fma"))) float kth_by_counting(const float *z, int64_t V, int64_t k) {
    float kth = std::numeric_limits<float>::infinity();
    const int64_t V8 = V / 8 * 8;
    for (int64_t i = 0; i < V; i++) {
        const __m256 zi = _mm256_set1_ps(z[i]);
        __m256i cnt = _mm256_setzero_si256();
        for (int64_t j = 0; j < V8; j += 8) // a true compare is all ones: -1
            cnt = _mm256_sub_epi32(cnt, _mm256_castps_si256(_mm256_cmp_ps(_mm256_loadu_ps(z + j), zi, _CMP_GT_OQ)));
        alignas(32) int32_t c[8];
        _mm256_store_si256(reinterpret_cast<__m256i *>(c), cnt);
        int64_t greater = 0;
        for (int l = 0; l < 8; l++) greater += c[l];
        for (int64_t j = V8; j < V; j++) greater += z[j] > z[i];
        if (greater < k && z[i] < kth) kth = z[i];
    }
    return kth;
}

template <class T>
void sample_rows(const at::Tensor &x, const at::Tensor &noise, double temperature, int64_t top_k, at::Tensor &tok,
                 at::Tensor &logp) {
    const int64_t N = x.size(0), V = x.size(1);
    const T *px = x.data_ptr<T>(), *pg = noise.data_ptr<T>();
    int64_t *pt = tok.data_ptr<int64_t>();
    T *pl = logp.data_ptr<T>();
    const T inv_t = static_cast<T>(1.0 / temperature);
    const bool filter = top_k > 0 && top_k < V;
    T (*count_kth)(const T *, int64_t, int64_t) = nullptr;
    if constexpr (std::is_same<T, float>::value)
        if (have_avx2() && V <= 128) count_kth = kth_by_counting;
    at::parallel_for(0, N, 16, [&](int64_t begin, int64_t end) {
        std::vector<T> z(static_cast<size_t>(V)), sorted(filter ? static_cast<size_t>(V) : 0);
        for (int64_t r = begin; r < end; r++) {
            const T *xr = px + r * V, *gr = pg + r * V;
            bool nan = false;
            for (int64_t v = 0; v < V; v++) z[v] = xr[v] * inv_t, nan |= std::isnan(z[v]);
            TORCH_CHECK(!nan, "row ", r, " of the logits holds NaN");
            T kth = -std::numeric_limits<T>::infinity();
            if (filter && count_kth)
                kth = count_kth(z.data(), V, top_k);
            else if (filter) {
                std::copy(z.begin(), z.end(), sorted.begin());
                std::nth_element(sorted.begin(), sorted.begin() + (top_k - 1), sorted.end(), std::greater<T>());
                kth = sorted[static_cast<size_t>(top_k - 1)];
            }
            T mx = -std::numeric_limits<T>::infinity();
            for (int64_t v = 0; v < V; v++)
                if (z[v] >= kth && z[v] > mx) mx = z[v];
            double sum = 0;
            for (int64_t v = 0; v < V; v++)
                if (z[v] >= kth) sum += std::exp(static_cast<double>(z[v] - mx));
            const T lse = mx + static_cast<T>(std::log(sum));
            int64_t best = -1;
            T best_score = 0;
            for (int64_t v = 0; v < V; v++) {
                if (!(z[v] >= kth)) continue; // filtered out (or NaN)
                const T score = (z[v] - lse) + gr[v];
                if (best < 0 || score > best_score) best = v, best_score = score;
            }
            TORCH_CHECK(best >= 0, "row ", r, " of the logits has no finite value to sample");
            pt[r] = best;
            pl[r] = z[best] - lse;
        }
    });
}

} // namespace

extern "C" RT_API rt_tensor *rt_filter_logits(rt_scope *S, const rt_tensor *logits, double temperature,
                                              int64_t top_k, double top_p) {
    if (!alive(__func__, logits, "logits") || !check_sampling(__func__, temperature, top_k, top_p)) return nullptr;
    return op(S, __func__, [&] {
        at::NoGradGuard no_grad;
        return filter_logits(logits->t, temperature, top_k, top_p);
    });
}

extern "C" RT_API rt_tensor *rt_sample_logits(rt_scope *S, const rt_tensor *logits, double temperature, int64_t top_k,
                                              double top_p, rt_gen *g, rt_tensor **logp) {
    if (logp) *logp = nullptr;
    if (!alive(__func__, logits, "logits") || !check_sampling(__func__, temperature, top_k, top_p)) return nullptr;
    if (temperature > 0.0 && !g) {
        rt_set_error("%s: generator is NULL (sampling at temperature %g draws noise)", __func__, temperature);
        return nullptr;
    }
    const at::Tensor &x = logits->t;
    if (x.dim() != 2) {
        char buf[64];
        rt_set_error("%s: logits must be [N,V], got %s", __func__, rt_shape_str(logits, buf, sizeof buf));
        return nullptr;
    }
    rt_tensor *noise = nullptr;
    if (temperature > 0.0 && at::isFloatingType(x.scalar_type())) {
        int64_t shape[2] = {x.size(0), x.size(1)};
        rt_opts o = {x.scalar_type() == at::kDouble ? RT_F64 : RT_F32, RT_CPU, 0};
        if (!x.is_cpu()) o.device = RT_CUDA, o.device_index = x.device().index();
        noise = rt_gumbel(nullptr, shape, 2, g, o); // [N,V] standard Gumbel, finite
        if (!noise) return nullptr;
    }
    rt_tensor *lp = nullptr;
    rt_tensor *ids = rt::guard<rt_tensor *>(__func__, nullptr, [&]() -> rt_tensor * {
        at::NoGradGuard no_grad;
        if (noise && top_p >= 1.0 && x.is_cpu() && x.is_contiguous() && x.size(1) > 0 &&
            (x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble)) {
            at::Tensor tok = at::empty({x.size(0)}, x.options().dtype(at::kLong)); // [N]
            at::Tensor chosen = at::empty({x.size(0)}, x.options());                 // [N]
            if (x.scalar_type() == at::kFloat)
                sample_rows<float>(x, noise->t, temperature, top_k, tok, chosen);
            else
                sample_rows<double>(x, noise->t, temperature, top_k, tok, chosen);
            rt_tensor *h = rt::wrap(S, tok);
            if (logp) {
                try {
                    lp = rt::wrap(S, chosen);
                } catch (...) {
                    rt_free(h);
                    throw;
                }
            }
            return h;
        }
        at::Tensor z = filter_logits(x, temperature, top_k, top_p); // [N,V]
        at::Tensor logprobs = at::log_softmax(z, -1);                // the sampling distribution
        at::Tensor tok = noise ? at::argmax(logprobs + noise->t, -1) // Gumbel-max draw
                               : at::argmax(z, -1);                  // greedy
        at::Tensor chosen = logprobs.gather(1, tok.unsqueeze(1)).squeeze(1); // [N]
        rt_tensor *h = rt::wrap(S, tok);
        if (logp) {
            try {
                lp = rt::wrap(S, chosen);
            } catch (...) {
                rt_free(h);
                throw;
            }
        }
        return h;
    });
    rt_free(noise);
    if (ids && logp) *logp = lp;
    return ids;
}

// ---------------------------------------------------------------------------
// Inference region
// ---------------------------------------------------------------------------

namespace {

// One saved state per open region on this thread (regions nest).
struct inference_state {
    c10::impl::LocalDispatchKeySet keys;
    bool grad;
};
thread_local std::vector<inference_state> inference_stack;

} // namespace

extern "C" RT_API int rt_inference_begin(void) {
    return rt::guard<int>(__func__, -1, [&] {
        inference_stack.push_back({c10::impl::tls_local_dispatch_key_set(), c10::GradMode::is_enabled()});
        c10::GradMode::set_enabled(false);
        // What at::AutoDispatchBelowADInplaceOrView does, left open until
        // rt_inference_end: ops skip the autograd and ADInplaceOrView kernels.
        c10::impl::PODLocalDispatchKeySet raw;
        raw.set_included(inference_stack.back().keys.included_);
        raw.set_excluded(inference_stack.back().keys.excluded_ | c10::autograd_dispatch_keyset_with_ADInplaceOrView);
        c10::impl::_force_tls_local_dispatch_key_set(c10::impl::LocalDispatchKeySet(raw));
        return static_cast<int>(inference_stack.size());
    });
}

extern "C" RT_API int rt_inference_end(int depth) {
    if (depth <= 0 || static_cast<size_t>(depth) != inference_stack.size()) {
        rt_set_error("rt_inference_end: region %d is not the innermost open one (%zu open on this thread)", depth,
                     inference_stack.size());
        return RT_EINVAL;
    }
    inference_state st = inference_stack.back();
    inference_stack.pop_back();
    c10::impl::PODLocalDispatchKeySet raw;
    raw.set_included(st.keys.included_);
    raw.set_excluded(st.keys.excluded_);
    c10::impl::_force_tls_local_dispatch_key_set(c10::impl::LocalDispatchKeySet(raw));
    c10::GradMode::set_enabled(st.grad);
    return RT_OK;
}
