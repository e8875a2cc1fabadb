// tensor_optim.cpp -- SGD, Adam and AdamW from libtorch's C++ optimizers,
// over parameters that have names, with per-parameter state exported and
// imported by name (what bit-exact resume needs and tch-rs lacks).
//
// libtorch keys optimizer state by the address of the parameter's TensorImpl,
// so the optimizer keeps its own references to the parameter tensors and the
// caller must restore parameters in place (rt_copy_) rather than replace them.

#include "tensor_internal.hpp"

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <memory>
#include <string>
#include <unordered_map>

struct rt_optim {
    rt_optim_kind kind;
    rt_optim_opts opts;
    std::unique_ptr<torch::optim::Optimizer> impl;
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

extern "C" RT_API int rt_optim_step(rt_optim *o) {
    if (!rt::alive(__func__, o, "optimizer")) return RT_EINVAL;
    return rt::call(__func__, [&] { o->impl->step(); });
}

extern "C" RT_API int rt_optim_zero_grad(rt_optim *o) {
    if (!rt::alive(__func__, o, "optimizer")) return RT_EINVAL;
    return rt::call(__func__, [&] { o->impl->zero_grad(); });
}

extern "C" RT_API int rt_optim_set_lr(rt_optim *o, double lr) {
    if (!rt::alive(__func__, o, "optimizer")) return RT_EINVAL;
    if (!(lr >= 0)) return rt_set_error("rt_optim_set_lr: learning rate %g must be >= 0", lr), RT_EINVAL;
    return rt::call(__func__, [&] {
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
        auto &states = o->impl->state();
        auto it = states.find(state_key(*p));
        if (it == states.end()) return;
        at::NoGradGuard no_grad;
        auto copy = [&](const at::Tensor &t) { return t.defined() ? rt::wrap(S, t.clone()) : nullptr; };
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
