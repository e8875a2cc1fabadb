// tensor_fused.cpp -- fused kernels behind tensor.h's "Fused kernels" section:
// rt_token_logps, the per-token log-probability (and entropy) of the sampled
// ids under tempered logits, with its own backward.
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
#include <torch/csrc/autograd/custom_function.h>

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
