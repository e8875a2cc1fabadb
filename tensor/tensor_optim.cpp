// tensor_optim.cpp -- SGD, Adam and AdamW from libtorch's C++ optimizers,
// over parameters that have names, with per-parameter state exported and
// imported by name (what bit-exact resume needs and tch-rs lacks); the fused
// Adam/AdamW (rt_optim_new_fused: one loop per parameter, parameters may be
// views of stacked leaves); rt_lerp_many_ (Polyak averaging in one call).
//
// libtorch keys optimizer state by the address of the parameter's TensorImpl,
// so the optimizer keeps its own references to the parameter tensors and the
// caller must restore parameters in place (rt_copy_) rather than replace them.

#include "tensor_internal.hpp"

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <ATen/Parallel.h>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>

// The state of one parameter of a fused optimizer. The gradient of a view is
// found in its leaf's gradient at the view's element offset.
struct fused_param {
    at::Tensor leaf;    // the tensor autograd accumulates into (the param itself, or its base)
    int64_t offset = 0; // elements from the leaf's first element to the param's
    bool has_state = false;
    int64_t step = 0;
    at::Tensor exp_avg, exp_avg_sq, max_exp_avg_sq;
};

struct rt_optim {
    rt_optim_kind kind;
    rt_optim_opts opts;
    std::unique_ptr<torch::optim::Optimizer> impl; // NULL when fused
    std::vector<fused_param> fused;                // one per parameter when fused
    std::vector<at::Tensor> leaves;                // fused: the distinct leaves (zero_grad)
    std::vector<at::Tensor> params;
    std::vector<std::string> names;
    std::vector<rt_tensor *> handles; // caller-visible aliases, owned here
    std::unordered_map<std::string, size_t> index;

    ~rt_optim() {
        for (rt_tensor *h : handles) rt_free(h);
    }
};

extern "C" RT_API rt_optim_opts rt_optim_defaults(rt_optim_kind kind) {
    rt_optim_opts o{};
    o.lr = 1e-3;
    o.beta1 = 0.9;
    o.beta2 = 0.999;
    o.eps = 1e-8;
    o.weight_decay = kind == RT_ADAMW ? 1e-2 : 0.0;
    o.amsgrad = 0;
    o.momentum = 0.0;
    o.dampening = 0.0;
    o.nesterov = 0;
    return o;
}

extern "C" RT_API const char *rt_optim_kind_name(rt_optim_kind kind) {
    switch (kind) {
    case RT_SGD: return "sgd";
    case RT_ADAM: return "adam";
    case RT_ADAMW: return "adamw";
    }
    return "unknown";
}

static std::string state_key(const at::Tensor &p) { return c10::guts::to_string(p.unsafeGetTensorImpl()); }

static void check_opts(rt_optim_kind kind, const rt_optim_opts &o) {
    TORCH_CHECK(o.lr >= 0, "learning rate ", o.lr, " must be >= 0");
    TORCH_CHECK(o.weight_decay >= 0, "weight_decay ", o.weight_decay, " must be >= 0");
    if (kind == RT_SGD) {
        TORCH_CHECK(o.momentum >= 0, "momentum ", o.momentum, " must be >= 0");
        TORCH_CHECK(!o.nesterov || (o.momentum > 0 && o.dampening == 0),
                    "nesterov needs momentum > 0 and dampening 0");
    } else {
        TORCH_CHECK(o.beta1 >= 0 && o.beta1 < 1, "beta1 ", o.beta1, " outside [0, 1)");
        TORCH_CHECK(o.beta2 >= 0 && o.beta2 < 1, "beta2 ", o.beta2, " outside [0, 1)");
        TORCH_CHECK(o.eps >= 0, "eps ", o.eps, " must be >= 0");
    }
}

static std::unique_ptr<torch::optim::Optimizer> make_impl(rt_optim_kind kind, const rt_optim_opts &o,
                                                         const std::vector<at::Tensor> &params) {
    switch (kind) {
    case RT_SGD:
        return std::make_unique<torch::optim::SGD>(params, torch::optim::SGDOptions(o.lr)
                                                               .momentum(o.momentum)
                                                               .dampening(o.dampening)
                                                               .weight_decay(o.weight_decay)
                                                               .nesterov(o.nesterov != 0));
    case RT_ADAM:
        return std::make_unique<torch::optim::Adam>(params, torch::optim::AdamOptions(o.lr)
                                                                .betas(std::make_tuple(o.beta1, o.beta2))
                                                                .eps(o.eps)
                                                                .weight_decay(o.weight_decay)
                                                                .amsgrad(o.amsgrad != 0));
    case RT_ADAMW:
        return std::make_unique<torch::optim::AdamW>(params, torch::optim::AdamWOptions(o.lr)
                                                                 .betas(std::make_tuple(o.beta1, o.beta2))
                                                                 .eps(o.eps)
                                                                 .weight_decay(o.weight_decay)
                                                                 .amsgrad(o.amsgrad != 0));
    }
    TORCH_CHECK(false, "unknown optimizer kind ", static_cast<int>(kind));
}

extern "C" RT_API rt_optim *rt_optim_new(rt_optim_kind kind, rt_tensor *const *params,
                                         const char *const *names, size_t n, const rt_optim_opts *opts) {
    if (n == 0 || !params || !names) {
        rt_set_error("rt_optim_new: needs at least one parameter with a name (n = %zu)", n);
        return nullptr;
    }
    return rt::guard<rt_optim *>(__func__, nullptr, [&]() -> rt_optim * {
        auto o = std::make_unique<rt_optim>();
        o->kind = kind;
        o->opts = opts ? *opts : rt_optim_defaults(kind);
        check_opts(kind, o->opts);
        for (size_t i = 0; i < n; i++) {
            TORCH_CHECK(params[i] != nullptr, "parameter ", i, " is NULL");
            TORCH_CHECK(names[i] != nullptr && names[i][0] != '\0', "parameter ", i, " has no name");
            TORCH_CHECK(params[i]->t.is_leaf(), "parameter '", names[i], "' is not a leaf tensor");
            TORCH_CHECK(at::isFloatingType(params[i]->t.scalar_type()), "parameter '", names[i],
                        "' is not floating point (", params[i]->t.scalar_type(), ")");
            TORCH_CHECK(o->index.emplace(names[i], i).second, "duplicate parameter name '", names[i], "'");
            o->params.push_back(params[i]->t);
            o->names.emplace_back(names[i]);
        }
        for (size_t i = 0; i < n; i++) o->handles.push_back(rt::wrap(nullptr, o->params[i]));
        o->impl = make_impl(kind, o->opts, o->params);
        return o.release();
    });
}

extern "C" RT_API void rt_optim_free(rt_optim *o) { delete o; }

extern "C" RT_API rt_optim_kind rt_optim_kind_of(const rt_optim *o) { return o ? o->kind : RT_SGD; }

extern "C" RT_API rt_optim_opts rt_optim_get_opts(const rt_optim *o) {
    return o ? o->opts : rt_optim_defaults(RT_SGD);
}

static void fused_step(rt_optim *o);

extern "C" RT_API int rt_optim_step(rt_optim *o) {
    if (!rt::alive(__func__, o, "optimizer")) return RT_EINVAL;
    return rt::call(__func__, [&] {
        if (o->impl) o->impl->step();
        else fused_step(o);
    });
}

extern "C" RT_API int rt_optim_zero_grad(rt_optim *o) {
    if (!rt::alive(__func__, o, "optimizer")) return RT_EINVAL;
    return rt::call(__func__, [&] {
        if (o->impl) o->impl->zero_grad();
        else
            for (at::Tensor &leaf : o->leaves) leaf.mutable_grad().reset();
    });
}

extern "C" RT_API int rt_optim_set_lr(rt_optim *o, double lr) {
    if (!rt::alive(__func__, o, "optimizer")) return RT_EINVAL;
    if (!(lr >= 0)) return rt_set_error("rt_optim_set_lr: learning rate %g must be >= 0", lr), RT_EINVAL;
    return rt::call(__func__, [&] {
        if (o->impl)
            for (auto &group : o->impl->param_groups()) group.options().set_lr(lr);
        o->opts.lr = lr;
    });
}

extern "C" RT_API double rt_optim_get_lr(const rt_optim *o) { return o ? o->opts.lr : NAN; }

extern "C" RT_API size_t rt_optim_param_count(const rt_optim *o) { return o ? o->params.size() : 0; }

extern "C" RT_API const char *rt_optim_param_name(const rt_optim *o, size_t i) {
    return (o && i < o->names.size()) ? o->names[i].c_str() : nullptr;
}

extern "C" RT_API rt_tensor *rt_optim_param(const rt_optim *o, size_t i) {
    return (o && i < o->handles.size()) ? o->handles[i] : nullptr;
}

// Look up a parameter by name; sets the error when absent.
static const at::Tensor *find_param(const rt_optim *o, const char *where, const char *name) {
    auto it = name ? o->index.find(name) : o->index.end();
    if (it == o->index.end()) {
        rt_set_error("%s: no parameter named '%s' in this optimizer", where, name ? name : "(null)");
        return nullptr;
    }
    return &o->params[it->second];
}

extern "C" RT_API int rt_optim_state_get(const rt_optim *o, const char *name, rt_scope *S,
                                         rt_optim_state *out) {
    if (!rt::alive(__func__, o, "optimizer") || !rt::alive(__func__, out, "output state")) return RT_EINVAL;
    *out = rt_optim_state{};
    const at::Tensor *p = find_param(o, __func__, name);
    if (!p) return RT_ENOTFOUND;
    return rt::call(__func__, [&] {
        at::NoGradGuard no_grad;
        auto copy = [&](const at::Tensor &t) { return t.defined() ? rt::wrap(S, t.clone()) : nullptr; };
        if (!o->impl) {
            const fused_param &f = o->fused[static_cast<size_t>(p - o->params.data())];
            if (!f.has_state) return;
            rt_optim_state r{};
            r.has_state = 1;
            r.step = f.step;
            try {
                r.exp_avg = copy(f.exp_avg);
                r.exp_avg_sq = copy(f.exp_avg_sq);
                r.max_exp_avg_sq = copy(f.max_exp_avg_sq);
            } catch (...) {
                rt_free(r.exp_avg);
                rt_free(r.exp_avg_sq);
                rt_free(r.max_exp_avg_sq);
                throw;
            }
            *out = r;
            return;
        }
        auto &states = o->impl->state();
        auto it = states.find(state_key(*p));
        if (it == states.end()) return;
        rt_optim_state r{};
        r.has_state = 1;
        try {
            if (o->kind == RT_SGD) {
                auto &s = static_cast<torch::optim::SGDParamState &>(*it->second);
                r.momentum_buffer = copy(s.momentum_buffer());
            } else if (o->kind == RT_ADAM) {
                auto &s = static_cast<torch::optim::AdamParamState &>(*it->second);
                r.step = s.step();
                r.exp_avg = copy(s.exp_avg());
                r.exp_avg_sq = copy(s.exp_avg_sq());
                r.max_exp_avg_sq = copy(s.max_exp_avg_sq());
            } else {
                auto &s = static_cast<torch::optim::AdamWParamState &>(*it->second);
                r.step = s.step();
                r.exp_avg = copy(s.exp_avg());
                r.exp_avg_sq = copy(s.exp_avg_sq());
                r.max_exp_avg_sq = copy(s.max_exp_avg_sq());
            }
        } catch (...) {
            rt_free(r.exp_avg);
            rt_free(r.exp_avg_sq);
            rt_free(r.max_exp_avg_sq);
            rt_free(r.momentum_buffer);
            throw;
        }
        *out = r;
    });
}

// A state tensor, checked against its parameter and copied.
static at::Tensor state_copy(const at::Tensor &param, const rt_tensor *t, const char *what, const char *name) {
    TORCH_CHECK(t != nullptr, "state '", what, "' of parameter '", name, "' is missing");
    TORCH_CHECK(t->t.sizes() == param.sizes(), "state '", what, "' of parameter '", name, "' has shape ",
                t->t.sizes(), ", the parameter has ", param.sizes());
    return t->t.detach().to(param.options()).clone();
}

extern "C" RT_API int rt_optim_state_set(rt_optim *o, const char *name, const rt_optim_state *in) {
    if (!rt::alive(__func__, o, "optimizer") || !rt::alive(__func__, in, "state")) return RT_EINVAL;
    const at::Tensor *p = find_param(o, __func__, name);
    if (!p) return RT_ENOTFOUND;
    return rt::call(__func__, [&] {
        if (!o->impl) {
            fused_param &f = o->fused[static_cast<size_t>(p - o->params.data())];
            if (!in->has_state) {
                f.has_state = false;
                f.step = 0;
                f.exp_avg = f.exp_avg_sq = f.max_exp_avg_sq = at::Tensor();
                return;
            }
            at::NoGradGuard no_grad;
            TORCH_CHECK(in->step >= 0, "negative step ", in->step, " for parameter '", name, "'");
            // every copy first, so a refused state leaves the old one
            at::Tensor m = state_copy(*p, in->exp_avg, "exp_avg", name).contiguous();
            at::Tensor v = state_copy(*p, in->exp_avg_sq, "exp_avg_sq", name).contiguous();
            at::Tensor vmax;
            if (o->opts.amsgrad) vmax = state_copy(*p, in->max_exp_avg_sq, "max_exp_avg_sq", name).contiguous();
            f.has_state = true;
            f.step = in->step;
            f.exp_avg = m;
            f.exp_avg_sq = v;
            f.max_exp_avg_sq = vmax;
            return;
        }
        auto &states = o->impl->state();
        std::string key = state_key(*p);
        if (!in->has_state) {
            states.erase(key);
            return;
        }
        at::NoGradGuard no_grad;
        TORCH_CHECK(in->step >= 0, "negative step ", in->step, " for parameter '", name, "'");
        if (o->kind == RT_SGD) {
            auto s = std::make_unique<torch::optim::SGDParamState>();
            if (o->opts.momentum != 0) s->momentum_buffer(state_copy(*p, in->momentum_buffer, "momentum_buffer", name));
            states[key] = std::move(s);
        } else if (o->kind == RT_ADAM) {
            auto s = std::make_unique<torch::optim::AdamParamState>();
            s->step(in->step);
            s->exp_avg(state_copy(*p, in->exp_avg, "exp_avg", name));
            s->exp_avg_sq(state_copy(*p, in->exp_avg_sq, "exp_avg_sq", name));
            if (o->opts.amsgrad) s->max_exp_avg_sq(state_copy(*p, in->max_exp_avg_sq, "max_exp_avg_sq", name));
            states[key] = std::move(s);
        } else {
            auto s = std::make_unique<torch::optim::AdamWParamState>();
            s->step(in->step);
            s->exp_avg(state_copy(*p, in->exp_avg, "exp_avg", name));
            s->exp_avg_sq(state_copy(*p, in->exp_avg_sq, "exp_avg_sq", name));
            if (o->opts.amsgrad) s->max_exp_avg_sq(state_copy(*p, in->max_exp_avg_sq, "max_exp_avg_sq", name));
            states[key] = std::move(s);
        }
    });
}

// ---------------------------------------------------------------------------
// Fused Adam / AdamW
// ---------------------------------------------------------------------------

extern "C" RT_API rt_optim *rt_optim_new_fused(rt_optim_kind kind, rt_tensor *const *params,
                                               const char *const *names, size_t n, const rt_optim_opts *opts) {
    if (n == 0 || !params || !names) {
        rt_set_error("rt_optim_new_fused: needs at least one parameter with a name (n = %zu)", n);
        return nullptr;
    }
    if (kind != RT_ADAM && kind != RT_ADAMW) {
        rt_set_error("rt_optim_new_fused: only adam and adamw are fused (got %s)", rt_optim_kind_name(kind));
        return nullptr;
    }
    return rt::guard<rt_optim *>(__func__, nullptr, [&]() -> rt_optim * {
        auto o = std::make_unique<rt_optim>();
        o->kind = kind;
        o->opts = opts ? *opts : rt_optim_defaults(kind);
        check_opts(kind, o->opts);
        // element ranges already taken, per leaf, to refuse overlapping views
        std::unordered_map<const void *, std::vector<std::pair<int64_t, int64_t>>> taken;
        for (size_t i = 0; i < n; i++) {
            TORCH_CHECK(params[i] != nullptr, "parameter ", i, " is NULL");
            TORCH_CHECK(names[i] != nullptr && names[i][0] != '\0', "parameter ", i, " has no name");
            const at::Tensor &p = params[i]->t;
            TORCH_CHECK(p.device().is_cpu() && (p.scalar_type() == at::kFloat || p.scalar_type() == at::kDouble),
                        "parameter '", names[i], "' is ", p.scalar_type(), " on ", p.device(),
                        "; the fused optimizer takes float32/float64 CPU parameters");
            TORCH_CHECK(p.is_contiguous(), "parameter '", names[i], "' is not contiguous");
            fused_param f;
            // A view of a leaf that requires grad (made under no-grad it is a
            // "leaf" itself, without a grad_fn, so ask for the view first):
            // gradients accumulate in its base.
            if (p.is_view() && p._base().requires_grad()) {
                f.leaf = p._base();
                TORCH_CHECK(f.leaf.is_leaf(), "parameter '", names[i], "' is a view of a non-leaf tensor");
                TORCH_CHECK(f.leaf.is_contiguous(), "parameter '", names[i], "' is a view of a non-contiguous leaf");
                f.offset = p.storage_offset() - f.leaf.storage_offset();
                TORCH_CHECK(f.offset >= 0 && f.offset + p.numel() <= f.leaf.numel(), "parameter '", names[i],
                            "' lies outside its leaf");
            } else {
                TORCH_CHECK(p.is_leaf(), "parameter '", names[i], "' is neither a leaf nor a view of one");
                f.leaf = p;
            }
            TORCH_CHECK(f.leaf.requires_grad(), "parameter '", names[i], "' does not require grad");
            auto &ranges = taken[f.leaf.unsafeGetTensorImpl()];
            for (auto &r : ranges)
                TORCH_CHECK(f.offset + p.numel() <= r.first || r.second <= f.offset, "parameter '", names[i],
                            "' overlaps another parameter of the same leaf");
            if (ranges.empty()) o->leaves.push_back(f.leaf);
            ranges.emplace_back(f.offset, f.offset + p.numel());
            TORCH_CHECK(o->index.emplace(names[i], i).second, "duplicate parameter name '", names[i], "'");
            o->params.push_back(p);
            o->names.emplace_back(names[i]);
            o->fused.push_back(std::move(f));
        }
        for (size_t i = 0; i < n; i++) o->handles.push_back(rt::wrap(nullptr, o->params[i]));
        return o.release();
    });
}

namespace {

// The scalars of one step, as torch 1.13's Adam computes them (in double,
// then used in the parameter's dtype).
struct adam_step {
    double beta1, beta2, one_minus_beta1, one_minus_beta2, eps, wd, sqrt_bc2, step_size, decay;
    bool adamw, amsgrad;
};

// One parameter: torch's
//   [AdamW] p *= 1 - lr wd        [Adam] g = g + wd p
//   m = m beta1 + (1 - beta1) g;  v = v beta2 + (1 - beta2) g g
//   [amsgrad] vmax = max(vmax, v);  denom = sqrt(v or vmax) / sqrt(bc2) + eps
//   p = p - (lr / bc1) (m / denom)
// 16-byte vectors of T (SSE2 on x86-64) and their square root; the scalar
// loop below is the reference and does the tail.
#if defined(__SSE2__)
typedef float adam_v4f __attribute__((vector_size(16)));
typedef double adam_v2d __attribute__((vector_size(16)));
inline adam_v4f vec_sqrt(adam_v4f x) { return reinterpret_cast<adam_v4f>(_mm_sqrt_ps(reinterpret_cast<__m128>(x))); }
inline adam_v2d vec_sqrt(adam_v2d x) { return reinterpret_cast<adam_v2d>(_mm_sqrt_pd(reinterpret_cast<__m128d>(x))); }
template <class T> struct adam_vec;
template <> struct adam_vec<float> { typedef adam_v4f type; };
template <> struct adam_vec<double> { typedef adam_v2d type; };
#endif

template <class T, bool AdamW, bool L2, bool Ams>
void adam_elements(T *p, const T *g, T *m, T *v, T *vmax, int64_t n, const adam_step &a) {
    const T beta1 = T(a.beta1), beta2 = T(a.beta2), omb1 = T(a.one_minus_beta1), omb2 = T(a.one_minus_beta2);
    const T eps = T(a.eps), wd = T(a.wd), sqrt_bc2 = T(a.sqrt_bc2), step_size = T(a.step_size), decay = T(a.decay);
    at::parallel_for(0, n, 32768, [&](int64_t i0, int64_t i1) {
        int64_t i = i0;
#if defined(__SSE2__)
        // the same operations in the same order, four floats / two doubles at a time
        typedef typename adam_vec<T>::type V;
        constexpr int64_t W = 16 / sizeof(T);
        for (; i + W <= i1; i += W) {
            V pv, gv, mv, vv;
            std::memcpy(&pv, p + i, sizeof pv);
            std::memcpy(&gv, g + i, sizeof gv);
            std::memcpy(&mv, m + i, sizeof mv);
            std::memcpy(&vv, v + i, sizeof vv);
            if (AdamW) pv = pv * decay;
            if (L2) gv = gv + wd * pv;
            mv = mv * beta1 + omb1 * gv;
            vv = vv * beta2 + omb2 * gv * gv;
            V use = vv;
            if (Ams) {
                V xv;
                std::memcpy(&xv, vmax + i, sizeof xv);
                xv = xv < vv ? vv : xv;
                std::memcpy(vmax + i, &xv, sizeof xv);
                use = xv;
            }
            V denom = vec_sqrt(use) / sqrt_bc2 + eps;
            pv = pv - step_size * (mv / denom);
            std::memcpy(p + i, &pv, sizeof pv);
            std::memcpy(m + i, &mv, sizeof mv);
            std::memcpy(v + i, &vv, sizeof vv);
        }
#endif
        for (; i < i1; i++) {
            T gi = g[i];
            if (AdamW) p[i] = p[i] * decay;
            if (L2) gi = gi + wd * p[i];
            m[i] = m[i] * beta1 + omb1 * gi;
            v[i] = v[i] * beta2 + omb2 * gi * gi;
            T vv = v[i];
            if (Ams) vv = vmax[i] = std::max(vmax[i], vv);
            T denom = std::sqrt(vv) / sqrt_bc2 + eps;
            p[i] = p[i] - step_size * (m[i] / denom);
        }
    });
}

// The loop specialised for this step's flags (no branch per element).
template <class T> void adam_dispatch(T *p, const T *g, T *m, T *v, T *vmax, int64_t n, const adam_step &a) {
    const bool decay = a.adamw && a.wd != 0, l2 = !a.adamw && a.wd != 0;
    if (a.amsgrad) {
        if (decay) adam_elements<T, true, false, true>(p, g, m, v, vmax, n, a);
        else if (l2) adam_elements<T, false, true, true>(p, g, m, v, vmax, n, a);
        else adam_elements<T, false, false, true>(p, g, m, v, vmax, n, a);
    } else {
        if (decay) adam_elements<T, true, false, false>(p, g, m, v, vmax, n, a);
        else if (l2) adam_elements<T, false, true, false>(p, g, m, v, vmax, n, a);
        else adam_elements<T, false, false, false>(p, g, m, v, vmax, n, a);
    }
}

} // namespace

static void fused_step(rt_optim *o) {
    at::NoGradGuard no_grad;
    const rt_optim_opts &op = o->opts;
    for (size_t i = 0; i < o->params.size(); i++) {
        at::Tensor &p = o->params[i];
        fused_param &f = o->fused[i];
        const at::Tensor &leaf_grad = f.leaf.grad();
        if (!leaf_grad.defined()) continue;
        TORCH_CHECK(!leaf_grad.is_sparse(), "parameter '", o->names[i], "' has a sparse gradient");
        TORCH_CHECK(leaf_grad.scalar_type() == p.scalar_type() && leaf_grad.sizes() == f.leaf.sizes(),
                    "the gradient of parameter '", o->names[i], "' does not match it");
        at::Tensor g = leaf_grad.is_contiguous() ? leaf_grad : leaf_grad.contiguous();
        if (!f.has_state) {
            f.exp_avg = at::zeros_like(p, at::MemoryFormat::Contiguous);
            f.exp_avg_sq = at::zeros_like(p, at::MemoryFormat::Contiguous);
            if (op.amsgrad) f.max_exp_avg_sq = at::zeros_like(p, at::MemoryFormat::Contiguous);
            f.step = 0;
            f.has_state = true;
        }
        f.step += 1;
        adam_step a;
        a.beta1 = op.beta1;
        a.beta2 = op.beta2;
        a.one_minus_beta1 = 1 - op.beta1;
        a.one_minus_beta2 = 1 - op.beta2;
        a.eps = op.eps;
        a.wd = op.weight_decay;
        a.adamw = o->kind == RT_ADAMW;
        a.amsgrad = op.amsgrad != 0;
        a.decay = 1 - op.lr * op.weight_decay;
        double bc1 = 1 - std::pow(op.beta1, static_cast<double>(f.step));
        double bc2 = 1 - std::pow(op.beta2, static_cast<double>(f.step));
        a.sqrt_bc2 = std::sqrt(bc2);
        a.step_size = op.lr / bc1;
        const int64_t n = p.numel();
        if (p.scalar_type() == at::kFloat)
            adam_dispatch<float>(p.data_ptr<float>(), g.data_ptr<float>() + f.offset, f.exp_avg.data_ptr<float>(),
                                 f.exp_avg_sq.data_ptr<float>(),
                                 a.amsgrad ? f.max_exp_avg_sq.data_ptr<float>() : nullptr, n, a);
        else
            adam_dispatch<double>(p.data_ptr<double>(), g.data_ptr<double>() + f.offset, f.exp_avg.data_ptr<double>(),
                                  f.exp_avg_sq.data_ptr<double>(),
                                  a.amsgrad ? f.max_exp_avg_sq.data_ptr<double>() : nullptr, n, a);
        p.unsafeGetTensorImpl()->bump_version(); // written in place behind autograd's back
    }
}

// ---------------------------------------------------------------------------
// Polyak averaging over lists
// ---------------------------------------------------------------------------

// torch's lerp: the form that keeps the small side exact.
template <class T> static void lerp_elements(T *d, const T *s, int64_t n, T w) {
    const bool small = std::abs(w) < T(0.5);
    const T one_minus_w = T(1) - w;
    at::parallel_for(0, n, 32768, [&](int64_t i0, int64_t i1) {
        if (small)
            for (int64_t i = i0; i < i1; i++) d[i] = d[i] + w * (s[i] - d[i]);
        else
            for (int64_t i = i0; i < i1; i++) d[i] = s[i] - (s[i] - d[i]) * one_minus_w;
    });
}

extern "C" RT_API int rt_lerp_many_(rt_tensor *const *dst, rt_tensor *const *src, size_t n, double w) {
    if (n && (!dst || !src)) return rt_set_error("rt_lerp_many_: NULL list"), RT_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!dst[i] || !src[i]) return rt_set_error("rt_lerp_many_: pair %zu has a NULL tensor", i), RT_EINVAL;
    return rt::call(__func__, [&] {
        at::NoGradGuard no_grad;
        for (size_t i = 0; i < n; i++) {
            at::Tensor &d = dst[i]->t;
            const at::Tensor &s = src[i]->t;
            TORCH_CHECK(d.sizes() == s.sizes() && d.scalar_type() == s.scalar_type(), "pair ", i, ": dst ", d.sizes(),
                        " ", d.scalar_type(), " and src ", s.sizes(), " ", s.scalar_type(), " differ");
            bool loop = d.device().is_cpu() && s.device().is_cpu() && d.is_contiguous() && s.is_contiguous() &&
                        (d.scalar_type() == at::kFloat || d.scalar_type() == at::kDouble);
            if (!loop) {
                d.lerp_(s, w);
                continue;
            }
            if (d.scalar_type() == at::kFloat)
                lerp_elements<float>(d.data_ptr<float>(), s.data_ptr<float>(), d.numel(), static_cast<float>(w));
            else
                lerp_elements<double>(d.data_ptr<double>(), s.data_ptr<double>(), d.numel(), w);
            d.unsafeGetTensorImpl()->bump_version();
        }
    });
}
