// tensor_fused.cpp -- fused kernels behind tensor.h's "Fused kernels" section:
// rt_token_logps, the per-token log-probability (and entropy) of the sampled
// ids under tempered logits, with its own backward; and behind the "Fast
// paths for small-network training" section: rt_mlp (an ensemble ReLU MLP as
// one autograd node) and rt_squashed_gaussian (SAC's tanh-squashed Gaussian
// sample and log-prob as one node). Those two are at the end of the file.
//
// Why a kernel of its own: every sequence loss starts from log pi(id | logits/T)
// over a [B,T,V] vocabulary. Composed from ATen ops (log_softmax + gather, as
// TRL writes it) the forward materializes a [B,T,V] log_softmax (and the
// division by T another [B,T,V]) and autograd keeps them for backward. Here the
// forward reads the logits once per row and keeps only the per-row logsumexp
// and entropy ([B,T]); the backward recomputes softmax row by row straight
// into the gradient buffer, the one [B,T,V] allocation it cannot avoid.
//
// Per row (z = x / T, lse = logsumexp z, p = softmax z):
//   logp    = z[id] - lse
//   H       = lse - sum p z = log s - sum e d / s    (d = z - max z, e = exp d, s = sum e)
//   dx_j    = ( g * (onehot(id)_j - p_j) - gH * p_j * (log p_j + H) ) / T
// Rows are split over the intra-op threads (at::parallel_for). float32 rows
// run through an AVX2+FMA path (8 lanes, a Cephes-style expf with 1-2 ulp
// error) when the CPU has it; float64 rows (and float32 rows on CPUs without
// AVX2, rows with a non-finite maximum and vector tails) use std::exp.
// exp(d) for d below the underflow point is taken as exactly 0, so -inf
// logits (masked vocabulary) give p = 0, a zero gradient and a finite entropy.
//
// Every extern "C" entry point catches every C++ exception (rt::guard).

#include "tensor_internal.hpp"

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/zeros.h>
#include <torch/csrc/autograd/custom_function.h>

#include <dlfcn.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Below this d = z - max, exp(d) is taken as 0 (float: exp(-87) ~ 1.6e-38,
// the smallest normal range; double: exp(-708) ~ 3e-308).
template <class T> struct underflow;
template <> struct underflow<float> { static constexpr float value = -87.0f; };
template <> struct underflow<double> { static constexpr double value = -708.0; };

// Rows per parallel_for task: at least ~32K elements so small vocabularies do
// not pay one task per row.
int64_t row_grain(int64_t V) {
    int64_t g = 32768 / (V > 0 ? V : 1);
    return g < 1 ? 1 : g;
}

// ---------------------------------------------------------------------------
// Scalar rows (float64; float32 fallback, non-finite rows, vector tails)
// ---------------------------------------------------------------------------

// Forward over one row: returns lse and writes the entropy to *H.
template <class T> void row_forward_scalar(const T *x, int64_t V, T inv_t, T *lse_out, T *H_out) {
    const T lo = underflow<T>::value;
    T m = -std::numeric_limits<T>::infinity();
    for (int64_t j = 0; j < V; j++)
        if (x[j] > m) m = x[j]; // NaN never wins: it shows up in the sum below
    const T mz = m * inv_t;
    T s = 0, sd = 0;
    for (int64_t j = 0; j < V; j++) {
        T d = x[j] * inv_t - mz;          // NaN when m is +-inf and x[j] is too: as torch
        T dc = d < lo ? lo : d;           // keeps NaN
        T e = d < lo ? T(0) : std::exp(dc);
        s += e;
        sd += e * dc;
    }
    T ls = std::log(s);
    *lse_out = mz + ls;
    *H_out = ls - sd / s;
}

// Backward over one row: out_j = -p_j * (g + gh * (log p_j + H)), then
// out[id] += g (g, gh already divided by T).
template <class T>
void row_backward_scalar(const T *x, T *out, int64_t V, T inv_t, T lse, T H, T g, T gh) {
    const T lo = underflow<T>::value;
    for (int64_t j = 0; j < V; j++) {
        T d = x[j] * inv_t - lse;
        T dc = d < lo ? lo : d;
        T p = d < lo ? T(0) : std::exp(dc);
        out[j] = -p * (g + gh * (dc + H));
    }
}

// ---------------------------------------------------------------------------
// AVX2 + FMA rows (float32)
// ---------------------------------------------------------------------------

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define RT_FUSED_AVX2 1
#define RT_TARGET_AVX2 __attribute__((target("avx2,fma")))

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

RT_TARGET_AVX2 inline v8f v8f_load(const float *p) {
    v8f v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
RT_TARGET_AVX2 inline void v8f_store(float *p, v8f v) { std::memcpy(p, &v, sizeof v); }
RT_TARGET_AVX2 inline v8f v8f_splat(float a) { return v8f{a, a, a, a, a, a, a, a}; }
RT_TARGET_AVX2 inline float v8f_hsum(v8f v) {
    return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}
RT_TARGET_AVX2 inline float v8f_hmax(v8f v) {
    float m = v[0];
    for (int k = 1; k < 8; k++)
        if (v[k] > m) m = v[k];
    return m;
}

// exp(x) for x in [-87, 88] (callers clamp): 2^n * P(r), n = round(x/ln2),
// r = x - n ln2 in two pieces, P the Cephes expf polynomial. NaN stays NaN.
RT_TARGET_AVX2 inline v8f v8f_exp(v8f x) {
    const v8f magic = v8f_splat(12582912.0f); // 1.5 * 2^23: adding it rounds to an integer
    v8f t = x * 1.44269504088896341f + magic;
    v8f n = t - magic;
    v8f r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    v8f p = v8f_splat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    v8i ti;
    std::memcpy(&ti, &t, sizeof ti);
    v8i bits = (ti - 0x4B400000 + 127) << 23; // the low bits of t hold n
    v8f scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

// Same contract as row_forward_scalar. Falls back to it for a row whose
// maximum is not finite (all -inf, or a +inf), so those rows follow torch.
RT_TARGET_AVX2 void row_forward_avx2(const float *x, int64_t V, float inv_t, float *lse_out, float *H_out) {
    const int64_t V8 = V & ~int64_t(7);
    v8f m8 = v8f_splat(-std::numeric_limits<float>::infinity());
    for (int64_t j = 0; j < V8; j += 8) {
        v8f v = v8f_load(x + j);
        m8 = v > m8 ? v : m8;
    }
    float m = v8f_hmax(m8);
    for (int64_t j = V8; j < V; j++)
        if (x[j] > m) m = x[j];
    if (!std::isfinite(m)) {
        row_forward_scalar<float>(x, V, inv_t, lse_out, H_out);
        return;
    }
    const float mz = m * inv_t;
    const v8f lo = v8f_splat(underflow<float>::value), zero = v8f_splat(0.0f);
    v8f s0 = zero, s1 = zero, d0 = zero, d1 = zero; // two chains of each for ILP
    int64_t j = 0;
    for (; j + 16 <= V8; j += 16) {
        v8f da = v8f_load(x + j) * inv_t - mz;
        v8f db = v8f_load(x + j + 8) * inv_t - mz;
        v8f ca = da < lo ? lo : da, cb = db < lo ? lo : db;
        v8f ea = v8f_exp(ca), eb = v8f_exp(cb);
        ea = da < lo ? zero : ea;
        eb = db < lo ? zero : eb;
        s0 += ea;
        s1 += eb;
        d0 += ea * ca;
        d1 += eb * cb;
    }
    for (; j < V8; j += 8) {
        v8f da = v8f_load(x + j) * inv_t - mz;
        v8f ca = da < lo ? lo : da;
        v8f ea = v8f_exp(ca);
        ea = da < lo ? zero : ea;
        s0 += ea;
        d0 += ea * ca;
    }
    float s = v8f_hsum(s0 + s1), sd = v8f_hsum(d0 + d1);
    for (; j < V; j++) {
        float d = x[j] * inv_t - mz;
        float dc = d < underflow<float>::value ? underflow<float>::value : d;
        float e = d < underflow<float>::value ? 0.0f : std::exp(dc);
        s += e;
        sd += e * dc;
    }
    float ls = std::log(s);
    *lse_out = mz + ls;
    *H_out = ls - sd / s;
}

RT_TARGET_AVX2 void row_backward_avx2(const float *x, float *out, int64_t V, float inv_t, float lse, float H,
                                      float g, float gh) {
    const int64_t V8 = V & ~int64_t(7);
    const v8f lo = v8f_splat(underflow<float>::value), zero = v8f_splat(0.0f);
    const v8f g8 = v8f_splat(g), gh8 = v8f_splat(gh), H8 = v8f_splat(H);
    for (int64_t j = 0; j < V8; j += 8) {
        v8f d = v8f_load(x + j) * inv_t - lse;
        v8f dc = d < lo ? lo : d;
        v8f p = v8f_exp(dc);
        p = d < lo ? zero : p;
        v8f_store(out + j, -p * (g8 + gh8 * (dc + H8)));
    }
    if (V8 < V) row_backward_scalar<float>(x + V8, out + V8, V - V8, inv_t, lse, H, g, gh);
}

bool cpu_has_avx2_fma() {
    static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return yes;
}
#endif

// ---------------------------------------------------------------------------
// Whole-tensor forward and backward
// ---------------------------------------------------------------------------

// x [N,V] contiguous, ids [N]; writes logp, lse, H [N]. Returns the first flat
// row whose id is out of [0, V), or -1.
template <class T>
int64_t forward_rows(const T *x, const int64_t *ids, int64_t N, int64_t V, T inv_t, T *logp, T *lse, T *H) {
    std::atomic<int64_t> bad{std::numeric_limits<int64_t>::max()};
    at::parallel_for(0, N, row_grain(V), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; r++) {
            const T *row = x + r * V;
#if RT_FUSED_AVX2
            if constexpr (std::is_same<T, float>::value) {
                if (cpu_has_avx2_fma()) row_forward_avx2(row, V, inv_t, &lse[r], &H[r]);
                else row_forward_scalar<T>(row, V, inv_t, &lse[r], &H[r]);
            } else
#endif
            {
                row_forward_scalar<T>(row, V, inv_t, &lse[r], &H[r]);
            }
            int64_t id = ids[r];
            if (id < 0 || id >= V) {
                int64_t cur = bad.load();
                while (r < cur && !bad.compare_exchange_weak(cur, r)) {
                }
                logp[r] = std::numeric_limits<T>::quiet_NaN();
                continue;
            }
            logp[r] = row[id] * inv_t - lse[r];
        }
    });
    int64_t b = bad.load();
    return b == std::numeric_limits<int64_t>::max() ? -1 : b;
}

// grad [N,V] = d loss / d x for upstream g (logp) and gh (entropy); either may
// be NULL (no gradient through that output).
template <class T>
void backward_rows(const T *x, const int64_t *ids, int64_t N, int64_t V, T inv_t, const T *lse, const T *H,
                   const T *g, const T *gh, T *grad) {
    at::parallel_for(0, N, row_grain(V), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; r++) {
            T gr = g ? g[r] * inv_t : T(0);
            T ghr = gh ? gh[r] * inv_t : T(0);
            const T *row = x + r * V;
            T *out = grad + r * V;
#if RT_FUSED_AVX2
            if constexpr (std::is_same<T, float>::value) {
                if (cpu_has_avx2_fma()) row_backward_avx2(row, out, V, inv_t, lse[r], H[r], gr, ghr);
                else row_backward_scalar<T>(row, out, V, inv_t, lse[r], H[r], gr, ghr);
            } else
#endif
            {
                row_backward_scalar<T>(row, out, V, inv_t, lse[r], H[r], gr, ghr);
            }
            out[ids[r]] += gr; // ids were range-checked by the forward
        }
    });
}

std::string shape_str(const at::Tensor &t) {
    std::string s = "[";
    for (int64_t i = 0; i < t.dim(); i++) s += (i ? ", " : "") + std::to_string(t.size(i));
    return s + "]";
}

// The autograd Function: inputs (logits, ids, temperature), outputs (logp, H).
// Saves logits (the input itself, no copy), ids, lse and H.
struct TokenLogps : public torch::autograd::Function<TokenLogps> {
    static variable_list forward(AutogradContext *ctx, const at::Tensor &logits, const at::Tensor &ids,
                                 double temperature) {
        at::Tensor x = logits.contiguous(), id = ids.contiguous();
        const int64_t V = x.size(-1), N = V ? x.numel() / V : 0;
        at::Tensor logp = at::empty(ids.sizes(), x.options());
        at::Tensor lse = at::empty(ids.sizes(), x.options());
        at::Tensor H = at::empty(ids.sizes(), x.options());
        int64_t bad = -1;
        if (x.scalar_type() == at::kFloat)
            bad = forward_rows<float>(x.data_ptr<float>(), id.data_ptr<int64_t>(), N, V, float(1.0 / temperature),
                                      logp.data_ptr<float>(), lse.data_ptr<float>(), H.data_ptr<float>());
        else
            bad = forward_rows<double>(x.data_ptr<double>(), id.data_ptr<int64_t>(), N, V, 1.0 / temperature,
                                       logp.data_ptr<double>(), lse.data_ptr<double>(), H.data_ptr<double>());
        if (bad >= 0) {
            std::string where;
            for (int64_t k = id.dim() - 1, rest = bad; k >= 0; k--) {
                where = std::to_string(rest % id.size(k)) + (where.empty() ? "" : ", ") + where;
                rest /= id.size(k);
            }
            TORCH_CHECK(false, "ids[", where, "] = ", id.data_ptr<int64_t>()[bad], " is outside the vocabulary [0, ",
                        V, ")");
        }
        ctx->save_for_backward({logits, ids, lse, H});
        ctx->saved_data["inv_t"] = 1.0 / temperature;
        return {logp, H};
    }

    static variable_list backward(AutogradContext *ctx, variable_list grads) {
        variable_list saved = ctx->get_saved_variables();
        at::Tensor x = saved[0].contiguous(), id = saved[1].contiguous(), lse = saved[2], H = saved[3];
        const double inv_t = ctx->saved_data["inv_t"].toDouble();
        at::Tensor g = grads[0].defined() ? grads[0].to(x.scalar_type()).contiguous() : at::Tensor();
        at::Tensor gh = grads[1].defined() ? grads[1].to(x.scalar_type()).contiguous() : at::Tensor();
        if (!g.defined() && !gh.defined()) return {at::Tensor(), at::Tensor(), at::Tensor()};
        at::Tensor grad = at::empty(x.sizes(), x.options());
        const int64_t V = x.size(-1), N = V ? x.numel() / V : 0;
        if (x.scalar_type() == at::kFloat)
            backward_rows<float>(x.data_ptr<float>(), id.data_ptr<int64_t>(), N, V, float(inv_t),
                                 lse.data_ptr<float>(), H.data_ptr<float>(), g.defined() ? g.data_ptr<float>() : nullptr,
                                 gh.defined() ? gh.data_ptr<float>() : nullptr, grad.data_ptr<float>());
        else
            backward_rows<double>(x.data_ptr<double>(), id.data_ptr<int64_t>(), N, V, inv_t, lse.data_ptr<double>(),
                                  H.data_ptr<double>(), g.defined() ? g.data_ptr<double>() : nullptr,
                                  gh.defined() ? gh.data_ptr<double>() : nullptr, grad.data_ptr<double>());
        return {grad, at::Tensor(), at::Tensor()};
    }
};

} // namespace

extern "C" RT_API rt_tensor *rt_token_logps(rt_scope *S, const rt_tensor *logits, const rt_tensor *ids,
                                            double temperature, rt_tensor **entropy) {
    if (entropy) *entropy = nullptr;
    if (!rt::alive(__func__, logits, "logits") || !rt::alive(__func__, ids, "ids")) return nullptr;
    return rt::guard<rt_tensor *>(__func__, nullptr, [&]() -> rt_tensor * {
        const at::Tensor &x = logits->t, &id = ids->t;
        TORCH_CHECK(temperature > 0 && std::isfinite(temperature), "temperature ", temperature,
                    " must be finite and > 0");
        TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, "logits are ",
                    x.scalar_type(), ", expected float32 or float64");
        TORCH_CHECK(id.scalar_type() == at::kLong, "ids are ", id.scalar_type(), ", expected int64");
        TORCH_CHECK(x.device().is_cpu() && id.device().is_cpu(),
                    "CPU tensors only (compose rt_log_softmax + rt_gather on other devices)");
        TORCH_CHECK(x.dim() >= 1 && id.dim() == x.dim() - 1 && x.sizes().slice(0, id.dim()) == id.sizes(),
                    "logits ", shape_str(x), " and ids ", shape_str(id),
                    " do not match: expected logits [..., V] and ids [...] with the same leading shape");
        TORCH_CHECK(x.size(-1) >= 1, "logits ", shape_str(x), " have an empty vocabulary");
        variable_list outs = TokenLogps::apply(x, id, temperature);
        rt_tensor *logp = rt::wrap(S, outs[0]);
        if (entropy) {
            try {
                *entropy = rt::wrap(S, outs[1]);
            } catch (...) {
                rt_free(logp);
                throw;
            }
        }
        return logp;
    });
}

// ===========================================================================
// rt_mlp: an ensemble of E ReLU MLPs as one autograd node
// ===========================================================================
//
// Forward, per layer l and member e (row-major [B,*] blocks of [E,B,*] buffers):
//   Z_l[e] = b_l[e] (broadcast) + H_l[e] W_l[e]^T   (one GEMM with beta = 1, as addmm)
//   H_{l+1} = relu(Z_l) in place (NaN stays NaN, as torch's relu)
// Backward, from the last layer down (dH = the incoming gradient):
//   dZ = dH where H_{l+1} > 0, else 0   (ReLU layers; torch's threshold_backward)
//   dW_l[e] = dZ[e]^T H_l[e],  db_l[e] = sum_B dZ[e],  dH_l[e] = dZ[e] W_l[e]
// each only when needed: a weight that does not require grad gets no dW, and
// the input gradient of layer 0 is made only when x requires grad (summed
// over members when they share x). Saved: x, the weights, H_1..H_{L-1} and
// the output when it went through a ReLU.
//
// The GEMMs call the process's BLAS (sgemm_/dgemm_, the ones libtorch calls,
// found with dlsym) on raw pointers: at a width of 64 the dispatcher, the
// views and the bias copy of an addmm cost more than its arithmetic. Without
// those symbols the same products run through at::addmm_.

namespace {

constexpr int kMlpMaxLayers = 16;

using sgemm_fn = void (*)(const char *, const char *, const int *, const int *, const int *, const float *,
                          const float *, const int *, const float *, const int *, const float *, float *, const int *);
using dgemm_fn = void (*)(const char *, const char *, const int *, const int *, const int *, const double *,
                          const double *, const int *, const double *, const int *, const double *, double *,
                          const int *);

struct blas_gemm {
    sgemm_fn s = nullptr;
    dgemm_fn d = nullptr;
};

const blas_gemm &blas() {
    static const blas_gemm g = [] {
        blas_gemm r;
        r.s = reinterpret_cast<sgemm_fn>(dlsym(RTLD_DEFAULT, "sgemm_"));
        r.d = reinterpret_cast<dgemm_fn>(dlsym(RTLD_DEFAULT, "dgemm_"));
        return r;
    }();
    return g;
}

// Row-major C[M,N] = alpha op(A) op(B) + beta C, op = transpose when ta / tb;
// A is [M,K] (ta: [K,M]) with row stride lda, B [K,N] (tb: [N,K]) with ldb.
// As column-major BLAS sees the same memory transposed: C^T = op(B)^T op(A)^T.
template <class T>
void gemm_rm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T *A, int64_t lda, const T *B,
             int64_t ldb, T beta, T *C, int64_t ldc) {
    const int64_t lim = std::numeric_limits<int>::max();
    const bool fits = M <= lim && N <= lim && K <= lim && lda <= lim && ldb <= lim && ldc <= lim;
    const char cta = ta ? 'T' : 'N', ctb = tb ? 'T' : 'N';
    const int m = static_cast<int>(M), n = static_cast<int>(N), k = static_cast<int>(K), la = static_cast<int>(lda),
              lb = static_cast<int>(ldb), lc = static_cast<int>(ldc);
    if constexpr (std::is_same<T, float>::value) {
        if (fits && blas().s) return blas().s(&ctb, &cta, &n, &m, &k, &alpha, B, &lb, A, &la, &beta, C, &lc);
    } else {
        if (fits && blas().d) return blas().d(&ctb, &cta, &n, &m, &k, &alpha, B, &lb, A, &la, &beta, C, &lc);
    }
    const auto opt = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
    at::Tensor a = at::from_blob(const_cast<T *>(A), {ta ? K : M, ta ? M : K}, {lda, 1}, opt);
    at::Tensor b = at::from_blob(const_cast<T *>(B), {tb ? N : K, tb ? K : N}, {ldb, 1}, opt);
    at::Tensor c = at::from_blob(C, {M, N}, {ldc, 1}, opt);
    c.addmm_(ta ? a.t() : a, tb ? b.t() : b, beta, alpha);
}

// z[r,:] += bias, then (relu) z = z < 0 ? 0 : z, for B rows of n: one pass,
// vector selects and never a branch per element -- half the signs are random,
// and a mispredicted branch per element costs more than the GEMMs (GCC keeps
// the scalar `v < 0 ? 0 : v` as a branch). NaN stays NaN, as torch's relu.
template <class T> void bias_relu(T *z, const T *bias, int64_t B, int64_t n, bool relu) {
    typedef T vec __attribute__((vector_size(16)));
    constexpr int64_t W = 16 / sizeof(T);
    const vec zero = {};
    for (int64_t r = 0; r < B; r++) {
        T *row = z + r * n;
        int64_t j = 0;
        for (; j + W <= n; j += W) {
            vec v, b;
            std::memcpy(&v, row + j, sizeof v);
            std::memcpy(&b, bias + j, sizeof b);
            v = v + b;
            if (relu) v = v < zero ? zero : v;
            std::memcpy(row + j, &v, sizeof v);
        }
        for (; j < n; j++) {
            const T v = row[j] + bias[j];
            row[j] = (relu && v < T(0)) ? T(0) : v;
        }
    }
}

// acc[j] += sum_r rows[r, j] for B rows of n (a bias gradient).
template <class T> void add_rows(T *acc, const T *rows, int64_t B, int64_t n) {
    typedef T vec __attribute__((vector_size(16)));
    constexpr int64_t W = 16 / sizeof(T);
    for (int64_t r = 0; r < B; r++) {
        const T *row = rows + r * n;
        int64_t j = 0;
        for (; j + W <= n; j += W) {
            vec a, v;
            std::memcpy(&a, acc + j, sizeof a);
            std::memcpy(&v, row + j, sizeof v);
            a = a + v;
            std::memcpy(acc + j, &a, sizeof a);
        }
        for (; j < n; j++) acc[j] += row[j];
    }
}

// One layer of one member forward: Z[B,out] = H W^T + bias, then the ReLU.
template <class T>
void layer_forward(const T *h, int64_t ldh, const T *w, const T *bias, T *z, int64_t B, int64_t in, int64_t out,
                   bool relu) {
    gemm_rm<T>(false, true, B, out, in, T(1), h, ldh, w, in, T(0), z, out);
    bias_relu<T>(z, bias, B, out, relu);
}

// dz = g where h > 0 else 0 (torch's threshold_backward(g, h, 0)), n
// elements; dz may be g. Vector selects, as bias_relu.
template <class T> void relu_mask(const T *g, const T *h, T *dz, int64_t n) {
    typedef T vec __attribute__((vector_size(16)));
    constexpr int64_t W = 16 / sizeof(T);
    const vec zero = {};
    int64_t i = 0;
    for (; i + W <= n; i += W) {
        vec gv, hv;
        std::memcpy(&gv, g + i, sizeof gv);
        std::memcpy(&hv, h + i, sizeof hv);
        gv = hv <= zero ? zero : gv;
        std::memcpy(dz + i, &gv, sizeof gv);
    }
    for (; i < n; i++) dz[i] = h[i] <= T(0) ? T(0) : g[i];
}

// Everything the kernels need about x: a row-major [B,in] block per member
// with row stride ld (shared: one block for all members).
struct mlp_input {
    at::Tensor t; // x, or a contiguous copy of it
    int64_t ld;
    bool shared;
};

mlp_input input_of(const at::Tensor &x) {
    mlp_input r;
    r.shared = x.dim() == 2;
    r.t = (r.shared && x.stride(1) == 1 && x.stride(0) >= x.size(1)) ? x : x.contiguous();
    r.ld = r.shared ? r.t.stride(0) : r.t.size(2);
    return r;
}

template <class T>
at::Tensor mlp_forward_t(const mlp_input &x, at::TensorList params, int64_t M, bool relu_out,
                         std::vector<at::Tensor> &hidden) {
    const int64_t L = static_cast<int64_t>(params.size()) / 2, E = params[0].dim() == 3 ? M : 0;
    const int64_t B = x.t.size(-2);
    const T *h = x.t.data_ptr<T>();
    int64_t ldh = x.ld, in = x.t.size(-1), h_member = x.shared ? 0 : B * ldh;
    at::Tensor z;
    for (int64_t l = 0; l < L; l++) {
        at::Tensor w = params[static_cast<size_t>(2 * l)].contiguous(), b = params[static_cast<size_t>(2 * l + 1)].contiguous();
        const int64_t out = w.size(-2);
        z = E ? at::empty({E, B, out}, x.t.options()) : at::empty({B, out}, x.t.options());
        const bool relu = l + 1 < L || relu_out;
        for (int64_t e = 0; e < M; e++)
            layer_forward<T>(h + e * h_member, ldh, w.data_ptr<T>() + e * out * in, b.data_ptr<T>() + e * out,
                             z.data_ptr<T>() + e * B * out, B, in, out, relu);
        hidden.push_back(z);
        h = z.data_ptr<T>();
        ldh = out;
        h_member = B * out;
        in = out;
    }
    return z;
}

// Gradients: out[0] = dx, out[1 + 2l] = dW_l, out[2 + 2l] = db_l (undefined
// where not needed). saved = x, W_0..W_{L-1}, H_1..H_{L-1}[, output].
template <class T>
void mlp_backward_t(AutogradContext *ctx, const variable_list &saved, int64_t L, bool relu_out, const at::Tensor &grad,
                    variable_list &grads_out) {
    const mlp_input x = input_of(saved[0]);
    const int64_t E = saved[1].dim() == 3 ? saved[1].size(0) : 0, M = E ? E : 1, B = x.t.size(-2);
    at::Tensor dz = grad.contiguous(); // read only; the lower layers' dz are buffers of our own
    if (relu_out) {
        at::Tensor masked = at::empty(dz.sizes(), dz.options());
        relu_mask<T>(dz.data_ptr<T>(), saved.back().contiguous().data_ptr<T>(), masked.data_ptr<T>(), dz.numel());
        dz = masked;
    }
    for (int64_t l = L - 1; l >= 0; l--) {
        at::Tensor w = saved[static_cast<size_t>(1 + l)].contiguous();
        const int64_t out = w.size(-2), in = w.size(-1);
        const at::Tensor &h_in = l == 0 ? x.t : saved[static_cast<size_t>(L + l)]; // H_l
        const T *hin = h_in.data_ptr<T>();
        const int64_t ldh = l == 0 ? x.ld : in, h_member = (l == 0 && x.shared) ? 0 : B * ldh;
        const T *dzp = dz.data_ptr<T>();
        if (ctx->needs_input_grad(static_cast<size_t>(1 + 2 * l))) {
            at::Tensor dw = at::empty(w.sizes(), w.options());
            for (int64_t e = 0; e < M; e++)
                gemm_rm<T>(true, false, out, in, B, T(1), dzp + e * B * out, out, hin + e * h_member, ldh, T(0),
                           dw.data_ptr<T>() + e * out * in, in);
            grads_out[static_cast<size_t>(1 + 2 * l)] = dw;
        }
        if (ctx->needs_input_grad(static_cast<size_t>(2 + 2 * l))) {
            at::Tensor db = E ? at::zeros({E, out}, w.options()) : at::zeros({out}, w.options());
            for (int64_t e = 0; e < M; e++) add_rows<T>(db.data_ptr<T>() + e * out, dzp + e * B * out, B, out);
            grads_out[static_cast<size_t>(2 + 2 * l)] = db;
        }
        if (l == 0 && !ctx->needs_input_grad(0)) break;
        if (l == 0) { // dx: summed over the members when they share x
            at::Tensor dx = at::empty(x.shared ? at::IntArrayRef{B, in} : at::IntArrayRef{E, B, in}, dz.options());
            for (int64_t e = 0; e < M; e++)
                gemm_rm<T>(false, false, B, in, out, T(1), dzp + e * B * out, out, w.data_ptr<T>() + e * out * in, in,
                           (x.shared && e > 0) ? T(1) : T(0), dx.data_ptr<T>() + (x.shared ? 0 : e * B * in), in);
            grads_out[0] = dx;
            break;
        }
        at::Tensor dh = at::empty(E ? at::IntArrayRef{E, B, in} : at::IntArrayRef{B, in}, dz.options());
        for (int64_t e = 0; e < M; e++)
            gemm_rm<T>(false, false, B, in, out, T(1), dzp + e * B * out, out, w.data_ptr<T>() + e * out * in, in, T(0),
                       dh.data_ptr<T>() + e * B * in, in);
        relu_mask<T>(dh.data_ptr<T>(), hin, dh.data_ptr<T>(), dh.numel()); // through the ReLU that made hin
        dz = dh;
    }
}

struct Mlp : public torch::autograd::Function<Mlp> {
    // params = w_0, b_0, w_1, b_1, ...; ensemble: weights [E,out,in], x [B,in]
    // (shared) or [E,B,in]; one member: weights [out,in], x [B,in].
    static variable_list forward(AutogradContext *ctx, const at::Tensor &x, at::TensorList params, bool relu_out) {
        const int64_t L = static_cast<int64_t>(params.size()) / 2;
        const int64_t M = params[0].dim() == 3 ? params[0].size(0) : 1;
        const mlp_input xin = input_of(x);
        std::vector<at::Tensor> hidden;
        at::Tensor y = x.scalar_type() == at::kFloat ? mlp_forward_t<float>(xin, params, M, relu_out, hidden)
                                                     : mlp_forward_t<double>(xin, params, M, relu_out, hidden);
        variable_list save;
        save.reserve(static_cast<size_t>(2 * L + 1));
        save.push_back(x);
        for (int64_t l = 0; l < L; l++) save.push_back(params[static_cast<size_t>(2 * l)]);
        for (int64_t l = 0; l + 1 < L; l++) save.push_back(hidden[static_cast<size_t>(l)]); // H_1 .. H_{L-1}
        if (relu_out) save.push_back(y); // the output (saved as an output: no reference cycle)
        ctx->save_for_backward(save);
        ctx->saved_data["relu_out"] = relu_out;
        return {y};
    }

    static variable_list backward(AutogradContext *ctx, variable_list grads) {
        variable_list saved = ctx->get_saved_variables();
        const bool relu_out = ctx->saved_data["relu_out"].toBool();
        const int64_t L = (static_cast<int64_t>(saved.size()) - (relu_out ? 1 : 0)) / 2;
        variable_list out(static_cast<size_t>(1 + 2 * L + 1));
        if (saved[0].scalar_type() == at::kFloat) mlp_backward_t<float>(ctx, saved, L, relu_out, grads[0], out);
        else mlp_backward_t<double>(ctx, saved, L, relu_out, grads[0], out);
        return out;
    }
};

std::string shapes_of(const at::Tensor &t) { return shape_str(t); }

} // namespace

void rt::gemm_rm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    ::gemm_rm<float>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void rt::gemm_rm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double *A, int64_t lda,
                 const double *B, int64_t ldb, double beta, double *C, int64_t ldc) {
    ::gemm_rm<double>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

extern "C" RT_API rt_tensor *rt_mlp(rt_scope *S, const rt_tensor *x, rt_tensor *const *weights,
                                   rt_tensor *const *biases, int n_layers, int relu_out) {
    if (!rt::alive(__func__, x, "x")) return nullptr;
    if (n_layers < 1 || n_layers > kMlpMaxLayers || !weights || !biases) {
        rt_set_error("rt_mlp: n_layers %d outside [1, %d] or no weight/bias list", n_layers, kMlpMaxLayers);
        return nullptr;
    }
    for (int l = 0; l < n_layers; l++)
        if (!rt::alive(__func__, weights[l], "a weight") || !rt::alive(__func__, biases[l], "a bias")) return nullptr;
    return rt::guard<rt_tensor *>(__func__, nullptr, [&]() -> rt_tensor * {
        const at::Tensor &xt = x->t;
        const bool ensemble = weights[0]->t.dim() == 3;
        TORCH_CHECK(xt.device().is_cpu() && (xt.scalar_type() == at::kFloat || xt.scalar_type() == at::kDouble),
                    "x is ", xt.scalar_type(), " on ", xt.device(), "; float32/float64 CPU tensors only");
        TORCH_CHECK(xt.dim() == 2 || (ensemble && xt.dim() == 3), "x ", shapes_of(xt), " must be [B, in]",
                    ensemble ? " or [E, B, in]" : "");
        std::vector<at::Tensor> params;
        params.reserve(static_cast<size_t>(2 * n_layers));
        const int64_t E = ensemble ? weights[0]->t.size(0) : 0;
        int64_t in = xt.size(-1);
        for (int l = 0; l < n_layers; l++) {
            const at::Tensor &w = weights[l]->t, &b = biases[l]->t;
            TORCH_CHECK(w.scalar_type() == xt.scalar_type() && b.scalar_type() == xt.scalar_type() &&
                            w.device().is_cpu() && b.device().is_cpu(),
                        "layer ", l, ": weight ", w.scalar_type(), " / bias ", b.scalar_type(), ", x ", xt.scalar_type(),
                        "; use one dtype on the CPU");
            if (ensemble) {
                TORCH_CHECK(w.dim() == 3 && b.dim() == 2 && w.size(0) == E && b.size(0) == E && w.size(2) == in &&
                                b.size(1) == w.size(1),
                            "layer ", l, ": weight ", shapes_of(w), " and bias ", shapes_of(b), " do not fit [E = ", E,
                            ", out, ", in, "] / [E, out]");
            } else {
                TORCH_CHECK(w.dim() == 2 && b.dim() == 1 && w.size(1) == in && b.size(0) == w.size(0), "layer ", l,
                            ": weight ", shapes_of(w), " and bias ", shapes_of(b), " do not fit [out, ", in,
                            "] / [out]");
            }
            in = w.size(-2);
            params.push_back(w);
            params.push_back(b);
        }
        TORCH_CHECK(xt.dim() == 2 || xt.size(0) == E, "x ", shapes_of(xt), " has ", xt.size(0), " members, the weights ",
                    E);
        TORCH_CHECK(xt.size(-2) >= 1, "x ", shapes_of(xt), " has no rows");
        variable_list outs = Mlp::apply(xt, at::TensorList(params), relu_out != 0);
        return rt::wrap(S, outs[0]);
    });
}

// ===========================================================================
// rt_squashed_gaussian: SAC's tanh-squashed Gaussian, rsample + log_prob
// ===========================================================================
//
// Per element (mode the log_std mapping, s the scale or 1):
//   ls = clamp(r, lo, hi) | lo + (hi - lo)(tanh r + 1)/2 | r,  se = exp(ls) eps
//   u = m + se,  y = tanh u
//   logp_b = sum_j -eps^2/2 - ls - log(2 pi)/2 - corr
//   corr = 2 (log 2 - u - softplus(-2u)) [+ log s]   or   log(s (1 - y^2) + epsilon)
// Backward (gy = dL/dy, gl = dL/dlogp_b):
//   gu = gy (1 - y^2) - gl dcorr/du,  dcorr/du = -2y  or  -2 s y (1 - y^2) / (s (1 - y^2) + epsilon)
//   dmean = gu,  dlog_std_raw = (gu se - gl) dls/dr
// with dls/dr = [lo <= r <= hi] (torch's clamp), (hi - lo)(1 - tanh^2 r)/2, or 1.
// The forward keeps y, se and dls/dr ([B,A] each) for the backward.

namespace {

constexpr double kHalfLog2Pi = 0.91893853320467274178;
constexpr double kLog2 = 0.69314718055994530942;

struct squash_params {
    int mode;
    double lo, hi;
    bool eps_corr;
    double epsilon;
};

template <class T> T softplus_stable(T x) { return std::max(x, T(0)) + std::log1p(std::exp(-std::abs(x))); }

template <class T>
void squash_forward(const T *m, const T *r, const T *e, const T *s, int64_t B, int64_t A, const squash_params &p, T *y,
                    T *logp, T *se_out, T *dls_out) {
    const T lo = T(p.lo), hi = T(p.hi), half_range = T(0.5 * (p.hi - p.lo)), eps = T(p.epsilon);
    for (int64_t b = 0; b < B; b++) {
        T acc = 0;
        for (int64_t j = 0; j < A; j++) {
            const int64_t i = b * A + j;
            T ls, dls;
            if (p.mode == RT_LOG_STD_CLAMP) {
                ls = std::min(std::max(r[i], lo), hi);
                dls = (r[i] >= lo && r[i] <= hi) ? T(1) : T(0);
            } else if (p.mode == RT_LOG_STD_TANH) {
                T t = std::tanh(r[i]);
                ls = (t + T(1)) * half_range + lo;
                dls = half_range * (T(1) - t * t);
            } else {
                ls = r[i];
                dls = T(1);
            }
            T se = std::exp(ls) * e[i];
            T u = m[i] + se;
            T yy = std::tanh(u);
            T gauss = -(e[i] * e[i] * T(0.5) + ls) - T(kHalfLog2Pi);
            T corr;
            if (!p.eps_corr) {
                corr = T(2) * (T(kLog2) - u - softplus_stable(T(-2) * u));
                if (s) corr = corr + std::log(s[j]);
            } else {
                T base = T(1) - yy * yy;
                if (s) base = base * s[j];
                corr = std::log(base + eps);
            }
            acc += gauss - corr;
            y[i] = yy;
            se_out[i] = se;
            dls_out[i] = dls;
        }
        logp[b] = acc;
    }
}

template <class T>
void squash_backward(const T *y, const T *se, const T *dls, const T *s, const T *gy, const T *gl, int64_t B, int64_t A,
                     const squash_params &p, T *gm, T *gr) {
    const T eps = T(p.epsilon);
    for (int64_t b = 0; b < B; b++) {
        const T glb = gl ? gl[b] : T(0);
        for (int64_t j = 0; j < A; j++) {
            const int64_t i = b * A + j;
            const T yy = y[i], one_m_y2 = T(1) - yy * yy;
            T dcorr; // d corr / du
            if (!p.eps_corr) {
                dcorr = T(-2) * yy;
            } else {
                const T sj = s ? s[j] : T(1);
                dcorr = T(-2) * sj * yy * one_m_y2 / (sj * one_m_y2 + eps);
            }
            T gu = (gy ? gy[i] * one_m_y2 : T(0)) - glb * dcorr;
            gm[i] = gu;
            gr[i] = (gu * se[i] - glb) * dls[i];
        }
    }
}

struct Squash : public torch::autograd::Function<Squash> {
    static variable_list forward(AutogradContext *ctx, const at::Tensor &mean, const at::Tensor &raw,
                                 const at::Tensor &eps, const c10::optional<at::Tensor> &scale, int64_t mode, double lo,
                                 double hi, bool eps_corr, double epsilon) {
        const squash_params p{static_cast<int>(mode), lo, hi, eps_corr, epsilon};
        at::Tensor m = mean.contiguous(), r = raw.contiguous(), e = eps.contiguous();
        at::Tensor s = scale.has_value() ? scale->contiguous() : at::Tensor();
        const int64_t B = m.size(0), A = m.size(1);
        at::Tensor y = at::empty({B, A}, m.options()), logp = at::empty({B}, m.options());
        at::Tensor se = at::empty({B, A}, m.options()), dls = at::empty({B, A}, m.options());
        if (m.scalar_type() == at::kFloat)
            squash_forward<float>(m.data_ptr<float>(), r.data_ptr<float>(), e.data_ptr<float>(),
                                  s.defined() ? s.data_ptr<float>() : nullptr, B, A, p, y.data_ptr<float>(),
                                  logp.data_ptr<float>(), se.data_ptr<float>(), dls.data_ptr<float>());
        else
            squash_forward<double>(m.data_ptr<double>(), r.data_ptr<double>(), e.data_ptr<double>(),
                                   s.defined() ? s.data_ptr<double>() : nullptr, B, A, p, y.data_ptr<double>(),
                                   logp.data_ptr<double>(), se.data_ptr<double>(), dls.data_ptr<double>());
        ctx->save_for_backward({y}); // an output: saved without a reference cycle
        ctx->saved_data["se"] = se;   // intermediates: plain references
        ctx->saved_data["dls"] = dls;
        if (s.defined()) ctx->saved_data["scale"] = s;
        ctx->saved_data["eps_corr"] = eps_corr;
        ctx->saved_data["epsilon"] = epsilon;
        return {y, logp};
    }

    static variable_list backward(AutogradContext *ctx, variable_list grads) {
        at::Tensor y = ctx->get_saved_variables()[0], se = ctx->saved_data["se"].toTensor();
        at::Tensor dls = ctx->saved_data["dls"].toTensor();
        at::Tensor s = ctx->saved_data.count("scale") ? ctx->saved_data["scale"].toTensor() : at::Tensor();
        squash_params p{0, 0, 0, ctx->saved_data["eps_corr"].toBool(), ctx->saved_data["epsilon"].toDouble()};
        at::Tensor gy = grads[0].defined() ? grads[0].to(y.scalar_type()).contiguous() : at::Tensor();
        at::Tensor gl = grads[1].defined() ? grads[1].to(y.scalar_type()).contiguous() : at::Tensor();
        const int64_t B = y.size(0), A = y.size(1);
        at::Tensor gm = at::empty({B, A}, y.options()), gr = at::empty({B, A}, y.options());
        if (y.scalar_type() == at::kFloat)
            squash_backward<float>(y.data_ptr<float>(), se.data_ptr<float>(), dls.data_ptr<float>(),
                                   s.defined() ? s.data_ptr<float>() : nullptr,
                                   gy.defined() ? gy.data_ptr<float>() : nullptr,
                                   gl.defined() ? gl.data_ptr<float>() : nullptr, B, A, p, gm.data_ptr<float>(),
                                   gr.data_ptr<float>());
        else
            squash_backward<double>(y.data_ptr<double>(), se.data_ptr<double>(), dls.data_ptr<double>(),
                                    s.defined() ? s.data_ptr<double>() : nullptr,
                                    gy.defined() ? gy.data_ptr<double>() : nullptr,
                                    gl.defined() ? gl.data_ptr<double>() : nullptr, B, A, p, gm.data_ptr<double>(),
                                    gr.data_ptr<double>());
        return {gm, gr, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    }
};

} // namespace

extern "C" RT_API rt_tensor *rt_squashed_gaussian(rt_scope *S, const rt_tensor *mean, const rt_tensor *log_std_raw,
                                                  const rt_tensor *eps, const rt_tensor *scale,
                                                  const rt_squash_opts *o, rt_tensor **logp) {
    if (logp) *logp = nullptr;
    if (!rt::alive(__func__, mean, "mean") || !rt::alive(__func__, log_std_raw, "log_std_raw") ||
        !rt::alive(__func__, eps, "eps"))
        return nullptr;
    if (!o || !logp) {
        rt_set_error("rt_squashed_gaussian: %s is NULL", o ? "logp" : "opts");
        return nullptr;
    }
    return rt::guard<rt_tensor *>(__func__, nullptr, [&]() -> rt_tensor * {
        const at::Tensor &m = mean->t, &r = log_std_raw->t, &e = eps->t;
        TORCH_CHECK(m.device().is_cpu() && (m.scalar_type() == at::kFloat || m.scalar_type() == at::kDouble),
                    "mean is ", m.scalar_type(), " on ", m.device(), "; float32/float64 CPU tensors only");
        TORCH_CHECK(m.dim() == 2 && r.sizes() == m.sizes() && e.sizes() == m.sizes(), "mean ", shape_str(m),
                    ", log_std_raw ", shape_str(r), " and eps ", shape_str(e), " must all be [B, A]");
        TORCH_CHECK(r.scalar_type() == m.scalar_type() && e.scalar_type() == m.scalar_type() && r.device().is_cpu() &&
                        e.device().is_cpu(),
                    "mean, log_std_raw and eps must share one dtype on the CPU (", m.scalar_type(), ", ",
                    r.scalar_type(), ", ", e.scalar_type(), ")");
        c10::optional<at::Tensor> s;
        if (scale) {
            TORCH_CHECK(scale->t.dim() == 1 && scale->t.size(0) == m.size(1) && scale->t.scalar_type() == m.scalar_type() &&
                            scale->t.device().is_cpu(),
                        "scale ", shape_str(scale->t), " ", scale->t.scalar_type(), " must be [A = ", m.size(1), "] ",
                        m.scalar_type());
            s = scale->t.detach();
        }
        TORCH_CHECK(o->log_std_mode == RT_LOG_STD_CLAMP || o->log_std_mode == RT_LOG_STD_TANH ||
                        o->log_std_mode == RT_LOG_STD_NONE,
                    "log_std_mode ", static_cast<int>(o->log_std_mode), " is not a valid choice");
        TORCH_CHECK(o->log_std_mode == RT_LOG_STD_NONE || (std::isfinite(o->log_std_min) &&
                                                           std::isfinite(o->log_std_max) &&
                                                           o->log_std_min < o->log_std_max),
                    "log_std bounds [", o->log_std_min, ", ", o->log_std_max, "] must be finite with min < max");
        TORCH_CHECK(!o->epsilon_correction || (std::isfinite(o->epsilon) && o->epsilon >= 0), "epsilon ", o->epsilon,
                    " must be finite and >= 0");
        variable_list outs = Squash::apply(m, r, e.detach(), s, static_cast<int64_t>(o->log_std_mode), o->log_std_min,
                                           o->log_std_max, o->epsilon_correction != 0, o->epsilon);
        rt_tensor *y = rt::wrap(S, outs[0]);
        try {
            *logp = rt::wrap(S, outs[1]);
        } catch (...) {
            rt_free(y);
            throw;
        }
        return y;
    });
}

// ===========================================================================
// rt_unbind, rt_chunk: several views in one op (one autograd node)
// ===========================================================================

namespace {

// Wraps parts into out[0..n) (owned by S); on a failure frees what it made.
void wrap_parts(rt_scope *S, const std::vector<at::Tensor> &parts, rt_tensor **out) {
    size_t made = 0;
    try {
        for (; made < parts.size(); made++) out[made] = rt::wrap(S, parts[made]);
    } catch (...) {
        for (size_t i = 0; i < made; i++) {
            rt_free(out[i]);
            out[i] = nullptr;
        }
        throw;
    }
}

} // namespace

extern "C" RT_API int rt_unbind(rt_scope *S, const rt_tensor *a, int64_t dim, int64_t n, rt_tensor **out) {
    if (!out) return rt_set_error("rt_unbind: out is NULL"), RT_EINVAL;
    for (int64_t i = 0; i < n && i < RT_MAX_UNBIND; i++) out[i] = nullptr;
    if (!rt::alive(__func__, a)) return RT_EINVAL;
    return rt::call(__func__, [&] {
        const at::Tensor &t = a->t;
        TORCH_CHECK(t.dim() >= 1, "a 0-dim tensor has nothing to unbind");
        const int64_t d = c10::maybe_wrap_dim(dim, t.dim());
        TORCH_CHECK(n == t.size(d) && n <= RT_MAX_UNBIND, "n = ", n, " but a ", shape_str(t), " has ", t.size(d),
                    " slices along dim ", dim, " (at most ", RT_MAX_UNBIND, ")");
        wrap_parts(S, t.unbind(d), out);
    });
}

extern "C" RT_API int rt_chunk(rt_scope *S, const rt_tensor *a, int64_t n, int64_t dim, rt_tensor **out) {
    if (!out || n < 1) return rt_set_error("rt_chunk: %s", out ? "n must be positive" : "out is NULL"), RT_EINVAL;
    for (int64_t i = 0; i < n; i++) out[i] = nullptr;
    if (!rt::alive(__func__, a)) return RT_EINVAL;
    return rt::call(__func__, [&] {
        const at::Tensor &t = a->t;
        TORCH_CHECK(t.dim() >= 1, "a 0-dim tensor cannot be chunked");
        const int64_t d = c10::maybe_wrap_dim(dim, t.dim());
        TORCH_CHECK(t.size(d) % n == 0, "a ", shape_str(t), " does not split into ", n, " equal parts along dim ", dim);
        wrap_parts(S, t.chunk(n, d), out);
    });
}
