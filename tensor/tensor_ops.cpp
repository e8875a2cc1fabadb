// tensor_ops.cpp -- the C API of tensor.h over ATen: errors, runtime, scopes,
// creation, generators, elementwise math, reductions, shape ops, nn functions,
// the KV cache and autograd. Optimizers live in tensor_optim.cpp (their headers
// alone cost ~8 s of compile time).
//
// Every extern "C" entry point catches every C++ exception (rt::guard) and
// reports it through the thread-local message; no exception reaches C.

#include "tensor_internal.hpp"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <c10/core/GradMode.h>
#include <c10/util/Logging.h>
#include <torch/version.h>

#include <dlfcn.h>
#include <malloc.h>

#include <climits>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

static thread_local std::string rt_error_message;

namespace rt {

void fail(const char *where, const char *what) {
    try {
        rt_error_message = std::string(where) + ": " + (what ? what : "(no message)");
        // ATen messages sometimes end in a newline or carry a second line of
        // context; keep them to one line for C callers.
        for (char &c : rt_error_message)
            if (c == '\n') c = ' ';
        while (!rt_error_message.empty() && rt_error_message.back() == ' ') rt_error_message.pop_back();
    } catch (...) {
        // Out of memory while formatting: leave whatever was there.
    }
}

bool has_error() { return !rt_error_message.empty(); }

rt_tensor *wrap(rt_scope *S, at::Tensor t) {
    rt_tensor *h = new rt_tensor{std::move(t), S, 0};
    if (S) {
        try {
            S->items.push_back(h);
        } catch (...) {
            delete h;
            throw;
        }
        h->slot = S->items.size() - 1;
        S->live++;
    }
    return h;
}

} // namespace rt

using rt::alive;
using rt::op;

extern "C" RT_API const char *rt_last_error(void) { return rt_error_message.c_str(); }

extern "C" RT_API void rt_clear_error(void) { rt_error_message.clear(); }

extern "C" RT_API int rt_set_error(const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt ? fmt : "(null)", ap);
    va_end(ap);
    try {
        rt_error_message = buf;
    } catch (...) {
    }
    return RT_ERR;
}

// ---------------------------------------------------------------------------
// dtype / device mapping
// ---------------------------------------------------------------------------

static at::ScalarType scalar_type(rt_dtype dt) {
    switch (dt) {
    case RT_F32: return at::kFloat;
    case RT_F64: return at::kDouble;
    case RT_I64: return at::kLong;
    case RT_I32: return at::kInt;
    case RT_BOOL: return at::kBool;
    case RT_U8: return at::kByte;
    case RT_BF16: return at::kBFloat16;
    case RT_F16: return at::kHalf;
    }
    TORCH_CHECK(false, "unknown rt_dtype ", static_cast<int>(dt));
}

static rt_dtype from_scalar_type(at::ScalarType st) {
    switch (st) {
    case at::kFloat: return RT_F32;
    case at::kDouble: return RT_F64;
    case at::kLong: return RT_I64;
    case at::kInt: return RT_I32;
    case at::kBool: return RT_BOOL;
    case at::kByte: return RT_U8;
    case at::kBFloat16: return RT_BF16;
    case at::kHalf: return RT_F16;
    default: TORCH_CHECK(false, "tensor has a dtype rlt does not expose: ", st);
    }
}

static at::Device device_of(rt_device_type dev, int index) {
    if (dev == RT_CPU) return at::Device(at::kCPU);
    TORCH_CHECK(dev == RT_CUDA, "unknown rt_device_type ", static_cast<int>(dev));
    TORCH_CHECK(at::hasCUDA(),
                "CUDA was requested but the linked libtorch has no usable CUDA (this build is CPU-only "
                "or no GPU is present); use device cpu");
    TORCH_CHECK(index >= 0, "negative CUDA device index ", index);
    return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
}

static at::TensorOptions topts(rt_opts o) {
    return at::TensorOptions().dtype(scalar_type(o.dtype)).device(device_of(o.device, o.device_index));
}

// Validate a C shape and view it as an IntArrayRef.
static at::IntArrayRef shape_ref(const int64_t *shape, int ndim) {
    TORCH_CHECK(ndim >= 0 && ndim <= RT_MAX_DIMS, "ndim ", ndim, " outside [0, ", RT_MAX_DIMS, "]");
    TORCH_CHECK(ndim == 0 || shape != nullptr, "shape is NULL for ndim ", ndim);
    for (int i = 0; i < ndim; i++)
        TORCH_CHECK(shape[i] >= 0, "negative size ", shape[i], " at dimension ", i);
    return at::IntArrayRef(shape, static_cast<size_t>(ndim));
}

extern "C" RT_API const char *rt_dtype_name(rt_dtype dt) {
    switch (dt) {
    case RT_F32: return "float32";
    case RT_F64: return "float64";
    case RT_I64: return "int64";
    case RT_I32: return "int32";
    case RT_BOOL: return "bool";
    case RT_U8: return "uint8";
    case RT_BF16: return "bfloat16";
    case RT_F16: return "float16";
    }
    return "unknown";
}

extern "C" RT_API size_t rt_dtype_size(rt_dtype dt) {
    switch (dt) {
    case RT_F32: case RT_I32: return 4;
    case RT_F64: case RT_I64: return 8;
    case RT_BOOL: case RT_U8: return 1;
    case RT_BF16: case RT_F16: return 2;
    }
    return 0;
}

// ---------------------------------------------------------------------------
// Runtime
// ---------------------------------------------------------------------------

extern "C" RT_API void rt_tune_malloc(void) {
    // Keep freed tensor memory in the heap instead of trimming/unmapping it:
    // re-faulting pages is slow on this VM (toolchain.md §4). Results unchanged.
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    mallopt(M_TOP_PAD, 256 << 20);
    // No fastbins: when a scope frees many small tensors at once, glibc 2.36's
    // fastbins are reused poorly after posix_memalign and the heap creeps into
    // fresh pages (426 MB RSS holding 64 live 8x8 tensors; bench/). Flat with 0.
    mallopt(M_MXFAST, 0);
}

extern "C" RT_API int rt_set_num_threads(int n) {
    if (n < 1) {
        rt_set_error("rt_set_num_threads: thread count %d must be >= 1", n);
        return RT_EINVAL;
    }
    return rt::call(__func__, [&] { at::set_num_threads(n); });
}

extern "C" RT_API int rt_get_num_threads(void) {
    return rt::guard<int>(__func__, RT_ERR, [] { return at::get_num_threads(); });
}

extern "C" RT_API void rt_after_fork_child(void) {
    rt::guard<int>(__func__, RT_ERR, [] {
        at::set_num_threads(1);
        return RT_OK;
    });
}

extern "C" RT_API int rt_set_deterministic(int on) {
    return rt::call(__func__, [&] { at::globalContext().setDeterministicAlgorithms(on != 0, false); });
}

extern "C" RT_API int rt_get_deterministic(void) {
    return at::globalContext().deterministicAlgorithms() ? 1 : 0;
}

extern "C" RT_API const char *rt_torch_version(void) { return TORCH_VERSION; }

// Which BLAS did the dynamic linker give libtorch? Ask where dgemm_ lives.
static std::string detect_blas() {
    void *sym = dlsym(RTLD_DEFAULT, "dgemm_");
    Dl_info info;
    if (!sym || !dladdr(sym, &info) || !info.dli_fname) return "unknown (dgemm_ not found)";
    char real[4096];
    std::string path = realpath(info.dli_fname, real) ? real : info.dli_fname;
    std::string kind = "unknown";
    if (path.find("openblas-openmp") != std::string::npos)
        kind = "openblas-openmp";
    else if (path.find("openblas-pthread") != std::string::npos)
        kind = "openblas-pthread";
    else if (path.find("openblas") != std::string::npos)
        kind = "openblas";
    else if (path.find("blis") != std::string::npos)
        kind = "blis";
    else if (path.find("mkl") != std::string::npos)
        kind = "mkl";
    else if (path.find("/blas/") != std::string::npos)
        kind = "reference";
    return kind + " (" + path + ")";
}

extern "C" RT_API const char *rt_blas_info(void) {
    // Computed once (thread-safe static init), constant afterwards.
    static const std::string info = detect_blas();
    return info.c_str();
}

extern "C" RT_API int rt_cuda_available(void) {
    return rt::guard<int>(__func__, 0, [] { return at::hasCUDA() ? 1 : 0; });
}

extern "C" RT_API int rt_cuda_device_count(void) {
    return rt::guard<int>(__func__, 0, [] {
        return at::hasCUDA() ? static_cast<int>(at::detail::getCUDAHooks().getNumGPUs()) : 0;
    });
}

// ---------------------------------------------------------------------------
// Scopes and handles
// ---------------------------------------------------------------------------

extern "C" RT_API rt_scope *rt_scope_new(void) {
    return rt::guard<rt_scope *>(__func__, nullptr, [] { return new rt_scope(); });
}

extern "C" RT_API void rt_scope_reset(rt_scope *S) {
    if (!S) return;
    for (rt_tensor *h : S->items) delete h;
    S->items.clear();
    S->live = 0;
}

extern "C" RT_API void rt_scope_free(rt_scope *S) {
    if (!S) return;
    rt_scope_reset(S);
    delete S;
}

extern "C" RT_API size_t rt_scope_count(const rt_scope *S) { return S ? S->live : 0; }

static void detach_from_owner(rt_tensor *t) {
    if (t->owner) {
        t->owner->items[t->slot] = nullptr;
        t->owner->live--;
        t->owner = nullptr;
    }
}

extern "C" RT_API rt_tensor *rt_keep(rt_tensor *t) {
    if (t) detach_from_owner(t);
    return t;
}

extern "C" RT_API rt_tensor *rt_move(rt_tensor *t, rt_scope *dst) {
    if (!t) return nullptr;
    detach_from_owner(t);
    if (!dst) return t;
    return rt::guard<rt_tensor *>(__func__, nullptr, [&] {
        dst->items.push_back(t);
        t->owner = dst;
        t->slot = dst->items.size() - 1;
        dst->live++;
        return t;
    });
}

extern "C" RT_API void rt_free(rt_tensor *t) {
    if (!t) return;
    detach_from_owner(t);
    delete t;
}

extern "C" RT_API rt_tensor *rt_alias(rt_scope *S, const rt_tensor *t) {
    if (!alive(__func__, t)) return nullptr;
    return op(S, __func__, [&] { return t->t; });
}

extern "C" RT_API int rt_assign(rt_tensor *dst, const rt_tensor *src) {
    if (!alive(__func__, dst, "dst") || !alive(__func__, src, "src")) return RT_EINVAL;
    return rt::call(__func__, [&] { dst->t = src->t; });
}

// ---------------------------------------------------------------------------
// Creation
// ---------------------------------------------------------------------------

extern "C" RT_API rt_tensor *rt_from_data(rt_scope *S, const void *data, const int64_t *shape, int ndim,
                                          rt_opts o) {
    return op(S, __func__, [&] {
        at::IntArrayRef sizes = shape_ref(shape, ndim);
        at::TensorOptions cpu = at::TensorOptions().dtype(scalar_type(o.dtype));
        at::Tensor t = at::empty(sizes, cpu);
        if (t.numel() > 0) {
            TORCH_CHECK(data != nullptr, "data is NULL for ", t.numel(), " elements");
            std::memcpy(t.data_ptr(), data, t.numel() * t.element_size());
        }
        return o.device == RT_CPU ? t : t.to(device_of(o.device, o.device_index));
    });
}

extern "C" RT_API int rt_to_data(const rt_tensor *t, rt_dtype dt, void *buf, size_t nbytes) {
    if (!alive(__func__, t)) return RT_EINVAL;
    return rt::call(__func__, [&] {
        at::NoGradGuard no_grad;
        at::Tensor c = t->t.to(at::kCPU, scalar_type(dt)).contiguous();
        size_t need = static_cast<size_t>(c.numel()) * c.element_size();
        TORCH_CHECK(nbytes >= need, "buffer of ", nbytes, " bytes is too small for ", c.numel(), " ",
                    rt_dtype_name(dt), " elements (", need, " bytes)");
        TORCH_CHECK(need == 0 || buf != nullptr, "buffer is NULL");
        if (need) std::memcpy(buf, c.data_ptr(), need);
    });
}

extern "C" RT_API void *rt_data_ptr(const rt_tensor *t) {
    if (!alive(__func__, t)) return nullptr;
    return rt::guard<void *>(__func__, nullptr, [&]() -> void * {
        TORCH_CHECK(t->t.device().is_cpu() && t->t.is_contiguous(),
                    "tensor is not a contiguous CPU tensor (use rt_contiguous / rt_to_device first)");
        return t->t.data_ptr();
    });
}

extern "C" RT_API rt_tensor *rt_empty(rt_scope *S, const int64_t *shape, int ndim, rt_opts o) {
    return op(S, __func__, [&] { return at::empty(shape_ref(shape, ndim), topts(o)); });
}
extern "C" RT_API rt_tensor *rt_zeros(rt_scope *S, const int64_t *shape, int ndim, rt_opts o) {
    return op(S, __func__, [&] { return at::zeros(shape_ref(shape, ndim), topts(o)); });
}
extern "C" RT_API rt_tensor *rt_ones(rt_scope *S, const int64_t *shape, int ndim, rt_opts o) {
    return op(S, __func__, [&] { return at::ones(shape_ref(shape, ndim), topts(o)); });
}
extern "C" RT_API rt_tensor *rt_full(rt_scope *S, const int64_t *shape, int ndim, double value,
                                     rt_opts o) {
    return op(S, __func__, [&] { return at::full(shape_ref(shape, ndim), value, topts(o)); });
}
extern "C" RT_API rt_tensor *rt_scalar(rt_scope *S, double v, rt_opts o) {
    return op(S, __func__, [&] { return at::full({}, v, topts(o)); });
}
extern "C" RT_API rt_tensor *rt_arange(rt_scope *S, double start, double end, double step, rt_opts o) {
    return op(S, __func__, [&] { return at::arange(start, end, step, topts(o)); });
}

#define RT_LIKE(name, expr)                                                                        \
    extern "C" RT_API rt_tensor *name(rt_scope *S, const rt_tensor *a) {                         \
        if (!alive(#name, a)) return nullptr;                                                      \
        return op(S, #name, [&] {                                                                  \
            const at::Tensor &x = a->t;                                                            \
            return expr;                                                                           \
        });                                                                                        \
    }

RT_LIKE(rt_zeros_like, at::zeros_like(x))
RT_LIKE(rt_ones_like, at::ones_like(x))

extern "C" RT_API rt_tensor *rt_full_like(rt_scope *S, const rt_tensor *a, double value) {
    if (!alive(__func__, a)) return nullptr;
    return op(S, __func__, [&] { return at::full_like(a->t, value); });
}
extern "C" RT_API rt_tensor *rt_tril(rt_scope *S, const rt_tensor *a, int64_t k) {
    if (!alive(__func__, a)) return nullptr;
    return op(S, __func__, [&] { return at::tril(a->t, k); });
}
extern "C" RT_API rt_tensor *rt_triu(rt_scope *S, const rt_tensor *a, int64_t k) {
    if (!alive(__func__, a)) return nullptr;
    return op(S, __func__, [&] { return at::triu(a->t, k); });
}

// ---------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------

struct rt_gen {
    at::Generator g;
};

extern "C" RT_API rt_gen *rt_gen_new(uint64_t seed) {
    return rt::guard<rt_gen *>(__func__, nullptr, [&] {
        return new rt_gen{at::make_generator<at::CPUGeneratorImpl>(seed)};
    });
}

extern "C" RT_API void rt_gen_free(rt_gen *g) { delete g; }

// The generator's mutex is held only around seeding and state transfer:
// sampling ops lock it themselves, and a second lock would self-deadlock.
extern "C" RT_API int rt_gen_seed(rt_gen *g, uint64_t seed) {
    if (!alive(__func__, g, "generator")) return RT_EINVAL;
    return rt::call(__func__, [&] {
        std::lock_guard<std::mutex> lock(g->g.mutex());
        g->g.set_current_seed(seed);
    });
}

extern "C" RT_API int rt_gen_get_state(rt_gen *g, uint8_t *buf, size_t cap, size_t *size_out) {
    if (!alive(__func__, g, "generator")) return RT_EINVAL;
    return rt::call(__func__, [&] {
        at::Tensor st;
        {
            std::lock_guard<std::mutex> lock(g->g.mutex());
            st = g->g.get_state();
        }
        size_t n = static_cast<size_t>(st.numel());
        if (size_out) *size_out = n;
        if (!buf) return;
        TORCH_CHECK(cap >= n, "state buffer of ", cap, " bytes is too small (", n, " needed)");
        std::memcpy(buf, st.data_ptr(), n);
    });
}

extern "C" RT_API int rt_gen_set_state(rt_gen *g, const uint8_t *buf, size_t size) {
    if (!alive(__func__, g, "generator") || !alive(__func__, buf, "state buffer")) return RT_EINVAL;
    return rt::call(__func__, [&] {
        at::Tensor st = at::empty({static_cast<int64_t>(size)}, at::kByte);
        std::memcpy(st.data_ptr(), buf, size);
        std::lock_guard<std::mutex> lock(g->g.mutex());
        g->g.set_state(st);
    });
}

#define NEED_GEN(g)                                                                                \
    do {                                                                                           \
        if (!(g)) {                                                                                \
            rt_set_error("%s: generator is NULL (rlt never falls back to a global generator)",    \
                         __func__);                                                                \
            return nullptr;                                                                        \
        }                                                                                          \
    } while (0)

extern "C" RT_API rt_tensor *rt_rand(rt_scope *S, const int64_t *shape, int ndim, rt_gen *g, rt_opts o) {
    NEED_GEN(g);
    return op(S, __func__, [&] { return at::rand(shape_ref(shape, ndim), g->g, topts(o)); });
}
extern "C" RT_API rt_tensor *rt_randn(rt_scope *S, const int64_t *shape, int ndim, rt_gen *g, rt_opts o) {
    NEED_GEN(g);
    return op(S, __func__, [&] { return at::randn(shape_ref(shape, ndim), g->g, topts(o)); });
}
extern "C" RT_API rt_tensor *rt_randint(rt_scope *S, int64_t low, int64_t high, const int64_t *shape,
                                        int ndim, rt_gen *g, rt_opts o) {
    NEED_GEN(g);
    return op(S, __func__, [&] {
        TORCH_CHECK(low < high, "empty range [", low, ", ", high, ")");
        return at::randint(low, high, shape_ref(shape, ndim), g->g, topts(o));
    });
}
extern "C" RT_API rt_tensor *rt_randperm(rt_scope *S, int64_t n, rt_gen *g) {
    NEED_GEN(g);
    return op(S, __func__, [&] { return at::randperm(n, g->g, at::kLong); });
}
extern "C" RT_API rt_tensor *rt_multinomial(rt_scope *S, const rt_tensor *probs, int64_t n,
                                            int replacement, rt_gen *g) {
    if (!alive(__func__, probs)) return nullptr;
    NEED_GEN(g);
    return op(S, __func__, [&] { return at::multinomial(probs->t, n, replacement != 0, g->g); });
}
extern "C" RT_API rt_tensor *rt_gumbel(rt_scope *S, const int64_t *shape, int ndim, rt_gen *g, rt_opts o) {
    NEED_GEN(g);
    return op(S, __func__, [&] {
        at::TensorOptions to = topts(o);
        TORCH_CHECK(at::isFloatingType(to.dtype().toScalarType()), "Gumbel noise needs a floating dtype");
        // U in [tiny, 1): -log(U) > 0, so -log(-log(U)) is finite.
        at::Tensor u = at::rand(shape_ref(shape, ndim), g->g, to);
        double tiny = to.dtype() == at::kDouble ? std::numeric_limits<double>::min()
                                                : static_cast<double>(std::numeric_limits<float>::min());
        return at::log(at::log(u.clamp_min_(tiny)).neg_()).neg_();
    });
}
extern "C" RT_API int rt_uniform_(rt_tensor *t, double lo, double hi, rt_gen *g) {
    if (!alive(__func__, t)) return RT_EINVAL;
    if (!g) return rt_set_error("rt_uniform_: generator is NULL"), RT_EINVAL;
    return rt::call(__func__, [&] {
        at::NoGradGuard no_grad;
        t->t.uniform_(lo, hi, g->g);
    });
}
extern "C" RT_API int rt_normal_(rt_tensor *t, double mean, double std, rt_gen *g) {
    if (!alive(__func__, t)) return RT_EINVAL;
    if (!g) return rt_set_error("rt_normal_: generator is NULL"), RT_EINVAL;
    return rt::call(__func__, [&] {
        at::NoGradGuard no_grad;
        t->t.normal_(mean, std, g->g);
    });
}

// ---------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------

extern "C" RT_API int rt_ndim(const rt_tensor *t) { return t ? static_cast<int>(t->t.dim()) : -1; }

extern "C" RT_API int64_t rt_size(const rt_tensor *t, int dim) {
    if (!alive(__func__, t)) return -1;
    return rt::guard<int64_t>(__func__, -1, [&] { return t->t.size(dim); });
}

extern "C" RT_API int rt_shape(const rt_tensor *t, int64_t *shape, int cap) {
    if (!alive(__func__, t)) return RT_EINVAL;
    int n = static_cast<int>(t->t.dim());
    if (shape) {
        if (cap < n) {
            rt_set_error("rt_shape: room for %d sizes, tensor has %d dimensions", cap, n);
            return RT_EINVAL;
        }
        for (int i = 0; i < n; i++) shape[i] = t->t.size(i);
    }
    return n;
}

extern "C" RT_API int64_t rt_numel(const rt_tensor *t) { return t ? t->t.numel() : -1; }

extern "C" RT_API rt_dtype rt_dtype_of(const rt_tensor *t) {
    if (!alive(__func__, t)) return RT_F32;
    return rt::guard<rt_dtype>(__func__, RT_F32, [&] { return from_scalar_type(t->t.scalar_type()); });
}

extern "C" RT_API rt_device_type rt_device_of(const rt_tensor *t) {
    return (t && t->t.device().is_cuda()) ? RT_CUDA : RT_CPU;
}

extern "C" RT_API const char *rt_shape_str(const rt_tensor *t, char *buf, size_t cap) {
    if (!buf || cap == 0) return buf;
    if (!t) {
        snprintf(buf, cap, "(null)");
        return buf;
    }
    size_t used = 0;
    used += snprintf(buf, cap, "[");
    for (int64_t i = 0; i < t->t.dim() && used < cap; i++)
        used += snprintf(buf + used, cap - used, "%s%lld", i ? ", " : "",
                         static_cast<long long>(t->t.size(i)));
    if (used < cap) snprintf(buf + used, cap - used, "]");
    return buf;
}

extern "C" RT_API double rt_item(const rt_tensor *t) {
    if (!alive(__func__, t)) return NAN;
    return rt::guard<double>(__func__, NAN, [&] { return t->t.item<double>(); });
}

extern "C" RT_API int64_t rt_item_i64(const rt_tensor *t) {
    if (!alive(__func__, t)) return INT64_MIN;
    return rt::guard<int64_t>(__func__, INT64_MIN, [&] { return t->t.item<int64_t>(); });
}

extern "C" RT_API int rt_equal(const rt_tensor *a, const rt_tensor *b) {
    if (!alive(__func__, a) || !alive(__func__, b)) return 0;
    return rt::guard<int>(__func__, 0, [&] {
        return a->t.sizes() == b->t.sizes() && a->t.scalar_type() == b->t.scalar_type() &&
               at::equal(a->t, b->t);
    });
}

extern "C" RT_API double rt_max_abs_diff(const rt_tensor *a, const rt_tensor *b) {
    if (!alive(__func__, a) || !alive(__func__, b)) return NAN;
    return rt::guard<double>(__func__, NAN, [&] {
        at::NoGradGuard no_grad;
        at::Tensor d = a->t.to(at::kDouble) - b->t.to(at::kDouble);
        return d.numel() ? d.abs().max().item<double>() : 0.0;
    });
}

// ---------------------------------------------------------------------------
// Elementwise
// ---------------------------------------------------------------------------

#define RT_UNARY(name, expr) RT_LIKE(name, expr)

#define RT_BINARY(name, expr)                                                                      \
    extern "C" RT_API rt_tensor *name(rt_scope *S, const rt_tensor *a, const rt_tensor *b) {     \
        if (!alive(#name, a, "first input") || !alive(#name, b, "second input")) return nullptr;   \
        return op(S, #name, [&] {                                                                  \
            const at::Tensor &x = a->t, &y = b->t;                                                 \
            return expr;                                                                           \
        });                                                                                        \
    }

#define RT_WITH_SCALAR(name, expr)                                                                 \
    extern "C" RT_API rt_tensor *name(rt_scope *S, const rt_tensor *a, double v) {               \
        if (!alive(#name, a)) return nullptr;                                                      \
        return op(S, #name, [&] {                                                                  \
            const at::Tensor &x = a->t;                                                            \
            return expr;                                                                           \
        });                                                                                        \
    }

RT_BINARY(rt_add, at::add(x, y))
RT_BINARY(rt_sub, at::sub(x, y))
RT_BINARY(rt_mul, at::mul(x, y))
RT_BINARY(rt_div, at::div(x, y))
RT_BINARY(rt_pow, at::pow(x, y))
RT_BINARY(rt_minimum, at::minimum(x, y))
RT_BINARY(rt_maximum, at::maximum(x, y))
RT_BINARY(rt_logical_and, at::logical_and(x, y))
RT_BINARY(rt_logical_or, at::logical_or(x, y))
RT_BINARY(rt_logical_xor, at::logical_xor(x, y))
RT_BINARY(rt_matmul, at::matmul(x, y))
RT_BINARY(rt_bmm, at::bmm(x, y))

extern "C" RT_API rt_tensor *rt_add_scaled(rt_scope *S, const rt_tensor *a, const rt_tensor *b,
                                           double alpha) {
    if (!alive(__func__, a, "first input") || !alive(__func__, b, "second input")) return nullptr;
    return op(S, __func__, [&] { return at::add(a->t, b->t, alpha); });
}

// Allocation-free ops for hot loops: the result goes into dst, and the call
// runs below the autograd layer (it is never recorded), which is about half
// of what a dispatched out-of-place op costs for small tensors.
template <class F>
static int out_op(const char *where, rt_tensor *dst, const rt_tensor *a, const rt_tensor *b, F &&f) {
    if (!alive(where, dst, "dst") || !alive(where, a, "first input") || !alive(where, b, "second input"))
        return RT_EINVAL;
    return rt::call(where, [&] {
        TORCH_CHECK(!(c10::GradMode::is_enabled() &&
                      (a->t.requires_grad() || b->t.requires_grad() || dst->t.requires_grad())),
                    "an _out op is not recorded by autograd; use the out-of-place op, or no-grad mode, "
                    "for tensors that require grad");
        at::AutoDispatchBelowADInplaceOrView below_autograd;
        f(dst->t, a->t, b->t);
    });
}

static void check_out_shape(const at::Tensor &dst, at::IntArrayRef want) {
    TORCH_CHECK(dst.sizes() == want, "dst has shape ", dst.sizes(), ", the result has ", want);
}

extern "C" RT_API int rt_add_out(rt_tensor *dst, const rt_tensor *a, const rt_tensor *b) {
    return out_op(__func__, dst, a, b, [](at::Tensor &d, const at::Tensor &x, const at::Tensor &y) {
        check_out_shape(d, at::infer_size(x.sizes(), y.sizes()));
        at::add_out(d, x, y);
    });
}

extern "C" RT_API int rt_mul_out(rt_tensor *dst, const rt_tensor *a, const rt_tensor *b) {
    return out_op(__func__, dst, a, b, [](at::Tensor &d, const at::Tensor &x, const at::Tensor &y) {
        check_out_shape(d, at::infer_size(x.sizes(), y.sizes()));
        at::mul_out(d, x, y);
    });
}

extern "C" RT_API int rt_matmul_out(rt_tensor *dst, const rt_tensor *a, const rt_tensor *b) {
    return out_op(__func__, dst, a, b, [](at::Tensor &d, const at::Tensor &x, const at::Tensor &y) {
        TORCH_CHECK(x.dim() == 2 && y.dim() == 2, "rt_matmul_out takes 2-D inputs, got ", x.sizes(), " and ",
                    y.sizes());
        TORCH_CHECK(x.size(1) == y.size(0), "mat1 and mat2 shapes cannot be multiplied (", x.size(0), "x",
                    x.size(1), " and ", y.size(0), "x", y.size(1), ")");
        check_out_shape(d, {x.size(0), y.size(1)});
        at::mm_out(d, x, y);
    });
}

RT_WITH_SCALAR(rt_add_scalar, at::add(x, v))
RT_WITH_SCALAR(rt_mul_scalar, at::mul(x, v))
RT_WITH_SCALAR(rt_div_scalar, at::div(x, v))
RT_WITH_SCALAR(rt_pow_scalar, at::pow(x, v))
RT_WITH_SCALAR(rt_rsub_scalar, at::rsub(x, v))

RT_UNARY(rt_neg, at::neg(x))
RT_UNARY(rt_exp, at::exp(x))
RT_UNARY(rt_expm1, at::expm1(x))
RT_UNARY(rt_log, at::log(x))
RT_UNARY(rt_log1p, at::log1p(x))
RT_UNARY(rt_sqrt, at::sqrt(x))
RT_UNARY(rt_rsqrt, at::rsqrt(x))
RT_UNARY(rt_square, at::square(x))
RT_UNARY(rt_abs, at::abs(x))
RT_UNARY(rt_sign, at::sign(x))
RT_UNARY(rt_sin, at::sin(x))
RT_UNARY(rt_cos, at::cos(x))
RT_UNARY(rt_tanh, at::tanh(x))
RT_UNARY(rt_sigmoid, at::sigmoid(x))
RT_UNARY(rt_logsigmoid, at::log_sigmoid(x))
RT_UNARY(rt_relu, at::relu(x))
RT_UNARY(rt_silu, at::silu(x))
RT_UNARY(rt_floor, at::floor(x))
RT_UNARY(rt_round, at::round(x))
RT_UNARY(rt_logical_not, at::logical_not(x))
RT_UNARY(rt_isfinite, at::isfinite(x))
RT_UNARY(rt_isnan, at::isnan(x))
RT_UNARY(rt_contiguous, x.contiguous())
RT_UNARY(rt_clone, x.clone())
RT_UNARY(rt_detach, x.detach())

extern "C" RT_API rt_tensor *rt_softplus(rt_scope *S, const rt_tensor *a, double beta, double threshold) {
    if (!alive(__func__, a)) return nullptr;
    return op(S, __func__, [&] { return at::softplus(a->t, beta, threshold); });
}

extern "C" RT_API rt_tensor *rt_gelu(rt_scope *S, const rt_tensor *a, int tanh_approx) {
    if (!alive(__func__, a)) return nullptr;
    return op(S, __func__, [&] { return at::gelu(a->t, tanh_approx ? "tanh" : "none"); });
}

extern "C" RT_API rt_tensor *rt_clamp(rt_scope *S, const rt_tensor *a, double lo, double hi) {
    if (!alive(__func__, a)) return nullptr;
    return op(S, __func__, [&] {
        TORCH_CHECK(!std::isnan(lo) && !std::isnan(hi), "clamp bounds must not be NaN");
        TORCH_CHECK(lo <= hi, "clamp bounds out of order: lo ", lo, " > hi ", hi);
        // An infinite bound is "no bound" (also valid for integer tensors).
        c10::optional<at::Scalar> mn = std::isinf(lo) ? c10::nullopt : c10::optional<at::Scalar>(lo);
        c10::optional<at::Scalar> mx = std::isinf(hi) ? c10::nullopt : c10::optional<at::Scalar>(hi);
        if (!mn && !mx) return a->t.clone();
        return at::clamp(a->t, mn, mx);
    });
}

extern "C" RT_API rt_tensor *rt_clamp_t(rt_scope *S, const rt_tensor *a, const rt_tensor *lo,
                                        const rt_tensor *hi) {
    if (!alive(__func__, a) || !alive(__func__, lo, "lo") || !alive(__func__, hi, "hi")) return nullptr;
    return op(S, __func__, [&] {
        return at::clamp(a->t, c10::optional<at::Tensor>(lo->t), c10::optional<at::Tensor>(hi->t));
    });
}

extern "C" RT_API rt_tensor *rt_where(rt_scope *S, const rt_tensor *cond, const rt_tensor *a,
                                      const rt_tensor *b) {
    if (!alive(__func__, cond, "condition") || !alive(__func__, a, "first input") ||
        !alive(__func__, b, "second input"))
        return nullptr;
    return op(S, __func__, [&] { return at::where(cond->t, a->t, b->t); });
}

extern "C" RT_API rt_tensor *rt_where_scalar(rt_scope *S, const rt_tensor *cond, const rt_tensor *a,
                                             double v) {
    if (!alive(__func__, cond, "condition") || !alive(__func__, a)) return nullptr;
    return op(S, __func__, [&] {
        // A 0-dim tensor of a's dtype keeps the result's dtype a's.
        return at::where(cond->t, a->t, at::scalar_tensor(v, a->t.options()));
    });
}

extern "C" RT_API rt_tensor *rt_nan_to_num(rt_scope *S, const rt_tensor *a, double nan, double posinf,
                                           double neginf) {
    if (!alive(__func__, a)) return nullptr;
    return op(S, __func__, [&] { return at::nan_to_num(a->t, nan, posinf, neginf); });
}

extern "C" RT_API rt_tensor *rt_compare(rt_scope *S, const rt_tensor *a, rt_cmp cmp, const rt_tensor *b) {
    if (!alive(__func__, a, "first input") || !alive(__func__, b, "second input")) return nullptr;
    return op(S, __func__, [&] {
        switch (cmp) {
        case RT_EQ: return at::eq(a->t, b->t);
        case RT_NE: return at::ne(a->t, b->t);
        case RT_LT: return at::lt(a->t, b->t);
        case RT_LE: return at::le(a->t, b->t);
        case RT_GT: return at::gt(a->t, b->t);
        case RT_GE: return at::ge(a->t, b->t);
        }
        TORCH_CHECK(false, "unknown comparison ", static_cast<int>(cmp));
    });
}

extern "C" RT_API rt_tensor *rt_compare_scalar(rt_scope *S, const rt_tensor *a, rt_cmp cmp, double v) {
    if (!alive(__func__, a)) return nullptr;
    return op(S, __func__, [&] {
        switch (cmp) {
        case RT_EQ: return at::eq(a->t, v);
        case RT_NE: return at::ne(a->t, v);
        case RT_LT: return at::lt(a->t, v);
        case RT_LE: return at::le(a->t, v);
        case RT_GT: return at::gt(a->t, v);
        case RT_GE: return at::ge(a->t, v);
        }
        TORCH_CHECK(false, "unknown comparison ", static_cast<int>(cmp));
    });
}

// ---------------------------------------------------------------------------
// Reductions
// ---------------------------------------------------------------------------

#define RT_REDUCE(name, all_expr, dim_expr)                                                        \
    extern "C" RT_API rt_tensor *name(rt_scope *S, const rt_tensor *a, int64_t dim, int keepdim) { \
        if (!alive(#name, a)) return nullptr;                                                      \
        return op(S, #name, [&] {                                                                  \
            const at::Tensor &x = a->t;                                                            \
            bool kd = keepdim != 0;                                                                \
            (void)kd;                                                                              \
            return dim == RT_DIM_ALL ? (all_expr) : (dim_expr);                                    \
        });                                                                                        \
    }

RT_REDUCE(rt_sum, at::sum(x), at::sum(x, {dim}, kd))
RT_REDUCE(rt_mean, at::mean(x), at::mean(x, {dim}, kd))
RT_REDUCE(rt_prod, at::prod(x), at::prod(x, dim, kd))
RT_REDUCE(rt_argmax, at::argmax(x), at::argmax(x, dim, kd))
RT_REDUCE(rt_argmin, at::argmin(x), at::argmin(x, dim, kd))
RT_REDUCE(rt_logsumexp, at::logsumexp(x.reshape({-1}), {0}), at::logsumexp(x, {dim}, kd))
RT_REDUCE(rt_norm, at::norm(x), at::norm(x, 2, {dim}, kd))
RT_REDUCE(rt_any, at::any(x), at::any(x, dim, kd))
RT_REDUCE(rt_all, at::all(x), at::all(x, dim, kd))

extern "C" RT_API rt_tensor *rt_sum_dims(rt_scope *S, const rt_tensor *a, const int64_t *dims, int ndims,
                                         int keepdim) {
    if (!alive(__func__, a)) return nullptr;
    return op(S, __func__, [&] { return at::sum(a->t, shape_ref(dims, ndims), keepdim != 0); });
}

extern "C" RT_API rt_tensor *rt_mean_dims(rt_scope *S, const rt_tensor *a, const int64_t *dims,
                                          int ndims, int keepdim) {
    if (!alive(__func__, a)) return nullptr;
    return op(S, __func__, [&] { return at::mean(a->t, shape_ref(dims, ndims), keepdim != 0); });
}

// Values + optional indices (owned by S as well).
template <class F>
static rt_tensor *with_indices(rt_scope *S, const char *where, rt_tensor **indices, F &&f) {
    if (indices) *indices = nullptr;
    return rt::guard<rt_tensor *>(where, nullptr, [&]() -> rt_tensor * {
        std::tuple<at::Tensor, at::Tensor> r = f();
        rt_tensor *values = rt::wrap(S, std::get<0>(r));
        if (indices && std::get<1>(r).defined()) {
            try {
                *indices = rt::wrap(S, std::get<1>(r));
            } catch (...) {
                rt_free(values);
                throw;
            }
        }
        return values;
    });
}

extern "C" RT_API rt_tensor *rt_max(rt_scope *S, const rt_tensor *a, int64_t dim, int keepdim,
                                    rt_tensor **indices) {
    if (indices) *indices = nullptr;
    if (!alive(__func__, a)) return nullptr;
    return with_indices(S, __func__, indices, [&] {
        if (dim == RT_DIM_ALL) return std::make_tuple(at::max(a->t), at::Tensor());
        return at::max(a->t, dim, keepdim != 0);
    });
}

extern "C" RT_API rt_tensor *rt_min(rt_scope *S, const rt_tensor *a, int64_t dim, int keepdim,
                                    rt_tensor **indices) {
    if (indices) *indices = nullptr;
    if (!alive(__func__, a)) return nullptr;
    return with_indices(S, __func__, indices, [&] {
        if (dim == RT_DIM_ALL) return std::make_tuple(at::min(a->t), at::Tensor());
        return at::min(a->t, dim, keepdim != 0);
    });
}

extern "C" RT_API rt_tensor *rt_topk(rt_scope *S, const rt_tensor *a, int64_t k, int64_t dim, int largest,
                                     rt_tensor **indices) {
    if (indices) *indices = nullptr;
    if (!alive(__func__, a)) return nullptr;
    return with_indices(S, __func__, indices, [&] { return at::topk(a->t, k, dim, largest != 0, true); });
}

extern "C" RT_API rt_tensor *rt_sort(rt_scope *S, const rt_tensor *a, int64_t dim, int descending,
                                     rt_tensor **indices) {
    if (indices) *indices = nullptr;
    if (!alive(__func__, a)) return nullptr;
    return with_indices(S, __func__, indices,
                        [&] { return at::sort(a->t, c10::optional<bool>(true), dim, descending != 0); });
}

// var/std: torch's bool `unbiased` overload covers corrections 0 and 1 (and
// exists in 1.13 and 2.x alike); other corrections are composed.
static at::Tensor var_impl(const at::Tensor &x, int64_t dim, int64_t correction, bool keepdim) {
    TORCH_CHECK(correction >= 0, "correction must be >= 0, got ", correction);
    if (correction <= 1) {
        bool unbiased = correction == 1;
        if (dim == RT_DIM_ALL) return at::var(x, unbiased);
        return at::var(x, at::IntArrayRef{dim}, unbiased, keepdim);
    }
    at::Tensor flat = dim == RT_DIM_ALL ? x.reshape({-1}) : x;
    int64_t d = dim == RT_DIM_ALL ? 0 : dim;
    bool kd = dim == RT_DIM_ALL ? false : keepdim;
    int64_t n = flat.size(d);
    at::Tensor centered = flat - flat.mean({d}, true);
    return centered.square().sum({d}, kd) / static_cast<double>(n - correction);
}

extern "C" RT_API rt_tensor *rt_var(rt_scope *S, const rt_tensor *a, int64_t dim, int64_t correction,
                                    int keepdim) {
    if (!alive(__func__, a)) return nullptr;
    return op(S, __func__, [&] { return var_impl(a->t, dim, correction, keepdim != 0); });
}

extern "C" RT_API rt_tensor *rt_std(rt_scope *S, const rt_tensor *a, int64_t dim, int64_t correction,
                                    int keepdim) {
    if (!alive(__func__, a)) return nullptr;
    return op(S, __func__, [&] {
        if (correction <= 1 && correction >= 0) {
            bool unbiased = correction == 1;
            if (dim == RT_DIM_ALL) return at::std(a->t, unbiased);
            return at::std(a->t, at::IntArrayRef{dim}, unbiased, keepdim != 0);
        }
        return at::sqrt(var_impl(a->t, dim, correction, keepdim != 0));
    });
}

extern "C" RT_API rt_tensor *rt_cumsum(rt_scope *S, const rt_tensor *a, int64_t dim) {
    if (!alive(__func__, a)) return nullptr;
    return op(S, __func__, [&] { return at::cumsum(a->t, dim); });
}

// ---------------------------------------------------------------------------
// Shape and indexing
// ---------------------------------------------------------------------------

// Like shape_ref, but -1 is allowed (inferred / kept sizes).
static at::IntArrayRef dims_ref(const int64_t *dims, int ndim) {
    TORCH_CHECK(ndim >= 0 && ndim <= RT_MAX_DIMS, "ndim ", ndim, " outside [0, ", RT_MAX_DIMS, "]");
    TORCH_CHECK(ndim == 0 || dims != nullptr, "shape is NULL for ndim ", ndim);
    return at::IntArrayRef(dims, static_cast<size_t>(ndim));
}

#define RT_SHAPED(name, expr)                                                                      \
    extern "C" RT_API rt_tensor *name(rt_scope *S, const rt_tensor *a, const int64_t *shape,      \
                                      int ndim) {                                                  \
        if (!alive(#name, a)) return nullptr;                                                      \
        return op(S, #name, [&] {                                                                  \
            const at::Tensor &x = a->t;                                                            \
            at::IntArrayRef s = dims_ref(shape, ndim);                                             \
            return expr;                                                                           \
        });                                                                                        \
    }

RT_SHAPED(rt_reshape, x.reshape(s))
RT_SHAPED(rt_view, x.view(s))
RT_SHAPED(rt_permute, x.permute(s))
RT_SHAPED(rt_expand, x.expand(s))
RT_SHAPED(rt_repeat, x.repeat(s))

extern "C" RT_API rt_tensor *rt_flatten(rt_scope *S, const rt_tensor *a, int64_t start_dim, int64_t end_dim) {
    if (!alive(__func__, a)) return nullptr;
    return op(S, __func__, [&] { return a->t.flatten(start_dim, end_dim); });
}
extern "C" RT_API rt_tensor *rt_transpose(rt_scope *S, const rt_tensor *a, int64_t d0, int64_t d1) {
    if (!alive(__func__, a)) return nullptr;
    return op(S, __func__, [&] { return a->t.transpose(d0, d1); });
}
extern "C" RT_API rt_tensor *rt_squeeze(rt_scope *S, const rt_tensor *a, int64_t dim) {
    if (!alive(__func__, a)) return nullptr;
    return op(S, __func__, [&] { return a->t.squeeze(dim); });
}
extern "C" RT_API rt_tensor *rt_unsqueeze(rt_scope *S, const rt_tensor *a, int64_t dim) {
    if (!alive(__func__, a)) return nullptr;
    return op(S, __func__, [&] { return a->t.unsqueeze(dim); });
}

static std::vector<at::Tensor> tensor_list(const char *where, rt_tensor *const *ts, int n, bool *ok) {
    std::vector<at::Tensor> v;
    *ok = false;
    if (n <= 0 || !ts) {
        rt_set_error("%s: needs at least one tensor (got %d)", where, n);
        return v;
    }
    v.reserve(static_cast<size_t>(n));
    for (int i = 0; i < n; i++) {
        if (!alive(where, ts[i], "a tensor in the list")) return v;
        v.push_back(ts[i]->t);
    }
    *ok = true;
    return v;
}

extern "C" RT_API rt_tensor *rt_cat(rt_scope *S, rt_tensor *const *ts, int n, int64_t dim) {
    return rt::guard<rt_tensor *>(__func__, nullptr, [&]() -> rt_tensor * {
        bool ok;
        std::vector<at::Tensor> v = tensor_list(__func__, ts, n, &ok);
        if (!ok) return nullptr;
        return rt::wrap(S, at::cat(v, dim));
    });
}

extern "C" RT_API rt_tensor *rt_stack(rt_scope *S, rt_tensor *const *ts, int n, int64_t dim) {
    return rt::guard<rt_tensor *>(__func__, nullptr, [&]() -> rt_tensor * {
        bool ok;
        std::vector<at::Tensor> v = tensor_list(__func__, ts, n, &ok);
        if (!ok) return nullptr;
        return rt::wrap(S, at::stack(v, dim));
    });
}

extern "C" RT_API rt_tensor *rt_narrow(rt_scope *S, const rt_tensor *a, int64_t dim, int64_t start,
                                       int64_t length) {
    if (!alive(__func__, a)) return nullptr;
    return op(S, __func__, [&] { return a->t.narrow(dim, start, length); });
}
extern "C" RT_API rt_tensor *rt_select(rt_scope *S, const rt_tensor *a, int64_t dim, int64_t index) {
    if (!alive(__func__, a)) return nullptr;
    return op(S, __func__, [&] { return a->t.select(dim, index); });
}
extern "C" RT_API rt_tensor *rt_gather(rt_scope *S, const rt_tensor *a, int64_t dim, const rt_tensor *index) {
    if (!alive(__func__, a) || !alive(__func__, index, "index")) return nullptr;
    return op(S, __func__, [&] { return at::gather(a->t, dim, index->t); });
}
extern "C" RT_API rt_tensor *rt_scatter(rt_scope *S, const rt_tensor *a, int64_t dim, const rt_tensor *index,
                                        const rt_tensor *src) {
    if (!alive(__func__, a) || !alive(__func__, index, "index") || !alive(__func__, src, "src"))
        return nullptr;
    return op(S, __func__, [&] { return at::scatter(a->t, dim, index->t, src->t); });
}
extern "C" RT_API rt_tensor *rt_scatter_add(rt_scope *S, const rt_tensor *a, int64_t dim,
                                            const rt_tensor *index, const rt_tensor *src) {
    if (!alive(__func__, a) || !alive(__func__, index, "index") || !alive(__func__, src, "src"))
        return nullptr;
    return op(S, __func__, [&] { return at::scatter_add(a->t, dim, index->t, src->t); });
}
extern "C" RT_API rt_tensor *rt_index_select(rt_scope *S, const rt_tensor *a, int64_t dim,
                                             const rt_tensor *index) {
    if (!alive(__func__, a) || !alive(__func__, index, "index")) return nullptr;
    return op(S, __func__, [&] { return at::index_select(a->t, dim, index->t); });
}
extern "C" RT_API rt_tensor *rt_masked_fill(rt_scope *S, const rt_tensor *a, const rt_tensor *mask,
                                            double value) {
    if (!alive(__func__, a) || !alive(__func__, mask, "mask")) return nullptr;
    return op(S, __func__, [&] { return at::masked_fill(a->t, mask->t, value); });
}
extern "C" RT_API rt_tensor *rt_one_hot(rt_scope *S, const rt_tensor *ids, int64_t num_classes) {
    if (!alive(__func__, ids, "ids")) return nullptr;
    return op(S, __func__, [&] { return at::one_hot(ids->t, num_classes); });
}
extern "C" RT_API rt_tensor *rt_embedding(rt_scope *S, const rt_tensor *weight, const rt_tensor *ids) {
    if (!alive(__func__, weight, "weight") || !alive(__func__, ids, "ids")) return nullptr;
    return op(S, __func__, [&] {
        TORCH_CHECK(weight->t.dim() == 2, "weight must be [V, D], got ", weight->t.sizes());
        return at::embedding(weight->t, ids->t);
    });
}
extern "C" RT_API rt_tensor *rt_to_dtype(rt_scope *S, const rt_tensor *a, rt_dtype dt) {
    if (!alive(__func__, a)) return nullptr;
    return op(S, __func__, [&] { return a->t.to(scalar_type(dt)); });
}
extern "C" RT_API rt_tensor *rt_to_device(rt_scope *S, const rt_tensor *a, rt_device_type dev, int index) {
    if (!alive(__func__, a)) return nullptr;
    return op(S, __func__, [&] { return a->t.to(device_of(dev, index)); });
}

// ---------------------------------------------------------------------------
// In-place updates: never recorded by autograd
// ---------------------------------------------------------------------------

#define RT_INPLACE(name, params, check, body)                                                      \
    extern "C" RT_API int name params {                                                            \
        if (!alive(#name, t) check) return RT_EINVAL;                                              \
        return rt::call(#name, [&] {                                                               \
            at::NoGradGuard no_grad;                                                               \
            body;                                                                                  \
        });                                                                                        \
    }

extern "C" RT_API int rt_copy_(rt_tensor *dst, const rt_tensor *src) {
    if (!alive(__func__, dst, "dst") || !alive(__func__, src, "src")) return RT_EINVAL;
    return rt::call(__func__, [&] {
        at::NoGradGuard no_grad;
        dst->t.copy_(src->t);
    });
}
RT_INPLACE(rt_fill_, (rt_tensor * t, double v), , t->t.fill_(v))
RT_INPLACE(rt_zero_, (rt_tensor * t), , t->t.zero_())
RT_INPLACE(rt_add_, (rt_tensor * t, const rt_tensor *other, double alpha),
           || !alive("rt_add_", other, "other"), t->t.add_(other->t, alpha))
RT_INPLACE(rt_mul_scalar_, (rt_tensor * t, double v), , t->t.mul_(v))
RT_INPLACE(rt_lerp_, (rt_tensor * t, const rt_tensor *end, double w), || !alive("rt_lerp_", end, "end"),
           t->t.lerp_(end->t, w))

// ---------------------------------------------------------------------------
// Neural-network functions
// ---------------------------------------------------------------------------

extern "C" RT_API rt_tensor *rt_linear(rt_scope *S, const rt_tensor *x, const rt_tensor *w,
                                       const rt_tensor *b) {
    if (!alive(__func__, x) || !alive(__func__, w, "weight")) return nullptr;
    return op(S, __func__, [&] {
        return b ? at::linear(x->t, w->t, b->t) : at::linear(x->t, w->t);
    });
}
extern "C" RT_API rt_tensor *rt_softmax(rt_scope *S, const rt_tensor *a, int64_t dim) {
    if (!alive(__func__, a)) return nullptr;
    return op(S, __func__, [&] { return at::softmax(a->t, dim); });
}
extern "C" RT_API rt_tensor *rt_log_softmax(rt_scope *S, const rt_tensor *a, int64_t dim) {
    if (!alive(__func__, a)) return nullptr;
    return op(S, __func__, [&] { return at::log_softmax(a->t, dim); });
}

extern "C" RT_API rt_tensor *rt_layer_norm(rt_scope *S, const rt_tensor *x, int n_norm_dims,
                                           const rt_tensor *weight, const rt_tensor *bias, double eps) {
    if (!alive(__func__, x)) return nullptr;
    return op(S, __func__, [&] {
        int64_t nd = x->t.dim();
        TORCH_CHECK(n_norm_dims >= 1 && n_norm_dims <= nd, "cannot normalize over the last ", n_norm_dims,
                    " dims of a ", nd, "-d tensor");
        at::IntArrayRef norm_shape = x->t.sizes().slice(static_cast<size_t>(nd - n_norm_dims));
        c10::optional<at::Tensor> w = weight ? c10::optional<at::Tensor>(weight->t) : c10::nullopt;
        c10::optional<at::Tensor> bb = bias ? c10::optional<at::Tensor>(bias->t) : c10::nullopt;
        return at::layer_norm(x->t, norm_shape, w, bb, eps);
    });
}

extern "C" RT_API rt_tensor *rt_rms_norm(rt_scope *S, const rt_tensor *x, const rt_tensor *weight, double eps) {
    if (!alive(__func__, x)) return nullptr;
    return op(S, __func__, [&] {
        at::Tensor y = x->t * at::rsqrt(x->t.square().mean({-1}, true) + eps);
        return weight ? y * weight->t : y;
    });
}

extern "C" RT_API rt_tensor *rt_dropout(rt_scope *S, const rt_tensor *x, double p, int training, rt_gen *g) {
    if (!alive(__func__, x)) return nullptr;
    return op(S, __func__, [&] {
        TORCH_CHECK(p >= 0.0 && p <= 1.0, "dropout probability ", p, " outside [0, 1]");
        if (!training || p == 0.0) return x->t;
        TORCH_CHECK(g != nullptr, "generator is NULL (training-mode dropout draws a mask)");
        if (p == 1.0) return x->t * 0.0;
        at::Tensor keep = at::empty_like(x->t).bernoulli_(1.0 - p, g->g);
        return x->t * keep / (1.0 - p);
    });
}

static at::Tensor causal_attention(const at::Tensor &q, const at::Tensor &k, const at::Tensor &v,
                                   double scale) {
    TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "q, k, v must be [B,H,T,D]; got q ",
                q.sizes(), ", k ", k.sizes(), ", v ", v.sizes());
    int64_t Tq = q.size(2), Tk = k.size(2);
    TORCH_CHECK(q.size(0) == k.size(0) && q.size(1) == k.size(1) && q.size(3) == k.size(3) &&
                    k.size(0) == v.size(0) && k.size(1) == v.size(1) && k.size(2) == v.size(2),
                "incompatible shapes q ", q.sizes(), ", k ", k.sizes(), ", v ", v.sizes());
    TORCH_CHECK(Tk >= Tq, "more queries (", Tq, ") than keys (", Tk, ")");
    if (scale <= 0) scale = 1.0 / std::sqrt(static_cast<double>(q.size(3)));
    at::Tensor att = at::matmul(q, k.transpose(-2, -1)) * scale;                  // [B,H,Tq,Tk]
    // Query i is at absolute position Tk-Tq+i and may see keys 0..Tk-Tq+i.
    at::Tensor allowed = at::ones({Tq, Tk}, q.options().dtype(at::kBool)).tril(Tk - Tq); // [Tq,Tk]
    att = att.masked_fill(allowed.logical_not(), -std::numeric_limits<double>::infinity());
    return at::matmul(at::softmax(att, -1), v); // [B,H,Tq,Dv]
}

extern "C" RT_API rt_tensor *rt_causal_attention(rt_scope *S, const rt_tensor *q, const rt_tensor *k,
                                                 const rt_tensor *v, double scale) {
    if (!alive(__func__, q, "q") || !alive(__func__, k, "k") || !alive(__func__, v, "v")) return nullptr;
    return op(S, __func__, [&] { return causal_attention(q->t, k->t, v->t, scale); });
}

struct rt_kv_cache {
    at::Tensor k, v; // [B,H,max_len,D]
    int64_t len, max_len;
};

extern "C" RT_API rt_kv_cache *rt_kv_cache_new(int64_t batch, int64_t heads, int64_t max_len,
                                               int64_t head_dim, rt_opts o) {
    return rt::guard<rt_kv_cache *>(__func__, nullptr, [&] {
        TORCH_CHECK(batch > 0 && heads > 0 && max_len > 0 && head_dim > 0, "sizes must be positive: batch ",
                    batch, ", heads ", heads, ", max_len ", max_len, ", head_dim ", head_dim);
        at::TensorOptions to = topts(o);
        return new rt_kv_cache{at::zeros({batch, heads, max_len, head_dim}, to),
                               at::zeros({batch, heads, max_len, head_dim}, to), 0, max_len};
    });
}

extern "C" RT_API void rt_kv_cache_free(rt_kv_cache *c) { delete c; }
extern "C" RT_API int64_t rt_kv_cache_len(const rt_kv_cache *c) { return c ? c->len : -1; }
extern "C" RT_API void rt_kv_cache_clear(rt_kv_cache *c) {
    if (c) c->len = 0;
}

extern "C" RT_API int rt_kv_cache_append(rt_kv_cache *c, rt_scope *S, const rt_tensor *k, const rt_tensor *v,
                                         rt_tensor **k_all, rt_tensor **v_all) {
    if (k_all) *k_all = nullptr;
    if (v_all) *v_all = nullptr;
    if (!alive(__func__, c, "cache") || !alive(__func__, k, "k") || !alive(__func__, v, "v")) return RT_EINVAL;
    return rt::call(__func__, [&] {
        const at::Tensor &kn = k->t, &vn = v->t;
        TORCH_CHECK(kn.dim() == 4 && vn.dim() == 4 && kn.sizes() == vn.sizes(), "k and v must be [B,H,T,D] alike; got k ",
                    kn.sizes(), ", v ", vn.sizes());
        TORCH_CHECK(kn.size(0) == c->k.size(0) && kn.size(1) == c->k.size(1) && kn.size(3) == c->k.size(3),
                    "k ", kn.sizes(), " does not fit a cache of [", c->k.size(0), ", ", c->k.size(1), ", ",
                    c->max_len, ", ", c->k.size(3), "]");
        int64_t T = kn.size(2);
        TORCH_CHECK(c->len + T <= c->max_len, "KV cache overflow: ", c->len, " cached + ", T,
                    " new positions exceed max_len ", c->max_len);
        {
            at::NoGradGuard no_grad;
            c->k.narrow(2, c->len, T).copy_(kn);
            c->v.narrow(2, c->len, T).copy_(vn);
        }
        c->len += T;
        rt_tensor *ka = rt::wrap(S, c->k.narrow(2, 0, c->len));
        rt_tensor *va;
        try {
            va = rt::wrap(S, c->v.narrow(2, 0, c->len));
        } catch (...) {
            rt_free(ka);
            throw;
        }
        if (k_all) *k_all = ka; else rt_free(ka);
        if (v_all) *v_all = va; else rt_free(va);
    });
}

extern "C" RT_API rt_tensor *rt_causal_attention_cached(rt_scope *S, rt_kv_cache *c, const rt_tensor *q,
                                                        const rt_tensor *k, const rt_tensor *v, double scale) {
    if (!alive(__func__, q, "q")) return nullptr;
    rt_tensor *k_all = nullptr, *v_all = nullptr;
    if (rt_kv_cache_append(c, nullptr, k, v, &k_all, &v_all) != RT_OK) return nullptr;
    rt_tensor *out = op(S, __func__, [&] { return causal_attention(q->t, k_all->t, v_all->t, scale); });
    rt_free(k_all);
    rt_free(v_all);
    return out;
}

extern "C" RT_API rt_tensor *rt_cross_entropy(rt_scope *S, const rt_tensor *logits, const rt_tensor *targets,
                                              rt_reduction red, int64_t ignore_index, double label_smoothing) {
    if (!alive(__func__, logits, "logits") || !alive(__func__, targets, "targets")) return nullptr;
    return op(S, __func__, [&] {
        int64_t r = red == RT_MEAN ? at::Reduction::Mean : red == RT_SUM ? at::Reduction::Sum : at::Reduction::None;
        return at::cross_entropy_loss(logits->t, targets->t, c10::nullopt, r, ignore_index, label_smoothing);
    });
}

extern "C" RT_API rt_tensor *rt_mse(rt_scope *S, const rt_tensor *a, const rt_tensor *b, rt_reduction red) {
    if (!alive(__func__, a, "first input") || !alive(__func__, b, "second input")) return nullptr;
    return op(S, __func__, [&] {
        int64_t r = red == RT_MEAN ? at::Reduction::Mean : red == RT_SUM ? at::Reduction::Sum : at::Reduction::None;
        TORCH_CHECK(a->t.sizes() == b->t.sizes(), "shapes differ: ", a->t.sizes(), " vs ", b->t.sizes());
        return at::mse_loss(a->t, b->t, r);
    });
}

// ---------------------------------------------------------------------------
// Autograd
// ---------------------------------------------------------------------------

extern "C" RT_API int rt_set_requires_grad(rt_tensor *t, int on) {
    if (!alive(__func__, t)) return RT_EINVAL;
    return rt::call(__func__, [&] { t->t.set_requires_grad(on != 0); });
}

extern "C" RT_API int rt_requires_grad(const rt_tensor *t) {
    if (!alive(__func__, t)) return RT_EINVAL;
    return t->t.requires_grad() ? 1 : 0;
}

extern "C" RT_API int rt_backward(const rt_tensor *loss) {
    if (!alive(__func__, loss, "loss")) return RT_EINVAL;
    return rt::call(__func__, [&] {
        TORCH_CHECK(loss->t.numel() == 1, "loss must have one element, got shape ", loss->t.sizes());
        TORCH_CHECK(loss->t.requires_grad(), "loss does not require grad (no differentiable input reaches it)");
        loss->t.backward();
    });
}

extern "C" RT_API int rt_backward_with(const rt_tensor *t, const rt_tensor *grad) {
    if (!alive(__func__, t) || !alive(__func__, grad, "grad")) return RT_EINVAL;
    return rt::call(__func__, [&] { t->t.backward(grad->t); });
}

extern "C" RT_API int rt_has_grad(const rt_tensor *t) {
    if (!alive(__func__, t)) return 0;
    return (t->t.is_leaf() && t->t.grad().defined()) ? 1 : 0;
}

extern "C" RT_API rt_tensor *rt_grad(rt_scope *S, const rt_tensor *t) {
    if (!alive(__func__, t)) return nullptr;
    if (!t->t.is_leaf()) {
        rt_set_error("rt_grad: tensor is not a leaf; autograd keeps gradients only for leaves");
        return nullptr;
    }
    at::Tensor g = t->t.grad();
    if (!g.defined()) return nullptr;
    return op(S, __func__, [&] { return g; });
}

extern "C" RT_API int rt_zero_grad(rt_tensor *t) {
    if (!alive(__func__, t)) return RT_EINVAL;
    return rt::call(__func__, [&] {
        if (t->t.is_leaf() && t->t.grad().defined()) {
            at::NoGradGuard no_grad;
            t->t.mutable_grad().zero_();
        }
    });
}

extern "C" RT_API int rt_no_grad_begin(void) {
    int prev = c10::GradMode::is_enabled() ? 1 : 0;
    c10::GradMode::set_enabled(false);
    return prev;
}

extern "C" RT_API void rt_grad_mode_restore(int previous) { c10::GradMode::set_enabled(previous != 0); }

extern "C" RT_API int rt_grad_enabled(void) { return c10::GradMode::is_enabled() ? 1 : 0; }

extern "C" RT_API int rt_clip_grad_norm(rt_tensor *const *params, size_t n, double max_norm, double *total_norm) {
    if (total_norm) *total_norm = NAN;
    if (n > 0 && !params) return rt_set_error("rt_clip_grad_norm: params is NULL"), RT_EINVAL;
    return rt::call(__func__, [&] {
        at::NoGradGuard no_grad;
        std::vector<at::Tensor> grads;
        for (size_t i = 0; i < n; i++) {
            TORCH_CHECK(params[i] != nullptr, "parameter ", i, " is NULL");
            if (params[i]->t.grad().defined()) grads.push_back(params[i]->t.grad());
        }
        if (grads.empty()) {
            if (total_norm) *total_norm = 0.0;
            return;
        }
        // Same arithmetic as torch.nn.utils.clip_grad_norm_ (1.13), so clipped
        // gradients match Python's bit for bit.
        std::vector<at::Tensor> norms;
        norms.reserve(grads.size());
        for (const at::Tensor &g : grads) norms.push_back(at::norm(g, 2));
        at::Tensor total = at::norm(at::stack(norms), 2);
        double tn = total.item<double>();
        if (total_norm) *total_norm = tn;
        if (max_norm <= 0 || !std::isfinite(tn)) return;
        at::Tensor coef = at::clamp_max(max_norm / (total + 1e-6), 1.0);
        for (at::Tensor &g : grads) g.mul_(coef.to(g.scalar_type()));
    });
}
