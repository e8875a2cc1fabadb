/*
 * tensor.h -- rlt's C API over libtorch (ATen + autograd). This header is the
 * whole API and its documentation; the implementation is the C++ shim in
 * tensor_ops.cpp (ops, autograd, generators, runtime), tensor_optim.cpp
 * (optimizers) and tensor_fused.cpp (fused kernels with their own backward).
 * No C++ type or exception ever crosses into C.
 *
 * Conventions (read these once, they hold for every function below):
 *
 *   Handles.   rt_tensor, rt_gen, rt_optim and rt_scope are opaque. A tensor
 *              handle holds one reference to a libtorch tensor; two handles may
 *              share storage (views, rt_alias).
 *
 *   Scopes.    Every function that creates a tensor takes a scope S first.
 *              The new handle is owned by S and freed by rt_scope_reset(S) or
 *              rt_scope_free(S). With S == NULL the caller owns the handle and
 *              frees it with rt_free(). rt_keep() takes a handle out of its
 *              scope (the caller then owns it); rt_move() hands it to another
 *              scope. A training loop makes one scope, resets it every step,
 *              and keeps nothing by accident: memory stays flat.
 *
 *   Errors.    Functions returning a handle return NULL on failure; functions
 *              returning int return RT_OK (0) or a negative rt_status. Either
 *              way rt_last_error() holds a one-line message (thread-local, no
 *              C++ backtrace). An op given a NULL tensor returns NULL and keeps
 *              the earlier message, so a block of ops can be checked once at
 *              its end:  y = rt_relu(S, rt_linear(S, x, w, b)); if (!y) ...
 *
 *   Shapes.    Shapes are (const int64_t *shape, int ndim). Dimensions may be
 *              negative (counted from the end) wherever PyTorch allows it.
 *              RT_DIM_ALL as a reduction's dim reduces over every dimension.
 *
 *   RNG.       Every random function takes an explicit generator (rt_gen);
 *              NULL is an error. Nothing here uses a global generator, so a
 *              run's randomness is exactly the state of the generators it owns.
 *
 *   Threads.   Handles are not thread-safe; use one scope per thread. The
 *              error message and grad mode are per thread.
 */
#ifndef RLT_TENSOR_H
#define RLT_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define RT_API __attribute__((visibility("default")))
#else
#define RT_API
#endif

/* ------------------------------------------------------------------------ */
/* Types                                                                     */
/* ------------------------------------------------------------------------ */

typedef struct rt_tensor rt_tensor; /* one tensor reference                  */
typedef struct rt_scope rt_scope;   /* owns the handles created "in" it      */
typedef struct rt_gen rt_gen;       /* a random generator (mt19937 + cache)  */
typedef struct rt_optim rt_optim;   /* SGD / Adam / AdamW over named params  */

/* Status codes returned by int functions. */
typedef enum rt_status {
    RT_OK = 0,
    RT_ERR = -1,    /* libtorch refused (shape, dtype, device, ...) */
    RT_EINVAL = -2, /* bad argument from the caller (NULL, range)    */
    RT_ENOTFOUND = -3 /* a named thing does not exist                */
} rt_status;

/* Element types. RT_F32 is 0, so a zeroed rt_opts means float32 on CPU. */
typedef enum rt_dtype {
    RT_F32 = 0,
    RT_F64 = 1,
    RT_I64 = 2,
    RT_I32 = 3,
    RT_BOOL = 4,
    RT_U8 = 5,
    RT_BF16 = 6, /* storage and conversion; most math wants f32 */
    RT_F16 = 7
} rt_dtype;

typedef enum rt_device_type { RT_CPU = 0, RT_CUDA = 1 } rt_device_type;

/* Where and as what a new tensor is made. {0} = float32 on the CPU. */
typedef struct rt_opts {
    rt_dtype dtype;
    rt_device_type device;
    int device_index; /* cuda:N; ignored for the CPU */
} rt_opts;

typedef enum rt_reduction { RT_MEAN = 0, RT_SUM = 1, RT_NONE = 2 } rt_reduction;

#define RT_DIM_ALL INT64_MIN /* reduce over every dimension */
#define RT_MAX_DIMS 8        /* shapes longer than this are refused by queries */

/* Common options, so call sites read well. */
#define RT_OPTS(dt) ((rt_opts){(dt), RT_CPU, 0})

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */
/* ------------------------------------------------------------------------ */

/* The last failure's message on this thread ("" if none since the last clear). */
RT_API const char *rt_last_error(void);
RT_API void rt_clear_error(void);
/* Lets C modules report through the same channel (printf-style). Returns RT_ERR. */
RT_API int rt_set_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
/* Name of a dtype ("float32", ...) and its element size in bytes. */
RT_API const char *rt_dtype_name(rt_dtype dt);
RT_API size_t rt_dtype_size(rt_dtype dt);

/* ------------------------------------------------------------------------ */
/* Runtime: threads, determinism, versions, devices                          */
/* ------------------------------------------------------------------------ */

/* Tune glibc malloc so freed tensor memory is reused instead of being handed
 * back to the OS and faulted in again (1.6x on this VM, results unchanged).
 * Call once at the top of main(), before any tensor exists. */
RT_API void rt_tune_malloc(void);
/* Intra-op threads. libtorch defaults to 1 here; set it from the config.
 * Results are bit-exact run to run at a fixed thread count. */
RT_API int rt_set_num_threads(int n);
RT_API int rt_get_num_threads(void);
/* Call in a child right after fork(): an OpenMP pool inherited across fork
 * hangs at the next parallel op; one thread avoids it. */
RT_API void rt_after_fork_child(void);
/* Deterministic algorithms on/off (at::globalContext()). */
RT_API int rt_set_deterministic(int on);
RT_API int rt_get_deterministic(void);
/* "1.13.0" etc. (libtorch's own version header). */
RT_API const char *rt_torch_version(void);
/* The BLAS the process actually resolved, e.g. "openblas-openmp
 * (/usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3)" or "reference
 * (...)". Recorded in every run and checkpoint: it changes the bits. */
RT_API const char *rt_blas_info(void);
/* 1 when the linked libtorch was built with CUDA and a device is present. */
RT_API int rt_cuda_available(void);
RT_API int rt_cuda_device_count(void);

/* ------------------------------------------------------------------------ */
/* Scopes and handle lifetime                                                */
/* ------------------------------------------------------------------------ */

RT_API rt_scope *rt_scope_new(void);
/* Free every handle the scope owns, and the scope. NULL-safe. */
RT_API void rt_scope_free(rt_scope *S);
/* Free every handle the scope owns; the scope stays usable (keeps capacity). */
RT_API void rt_scope_reset(rt_scope *S);
/* Number of live handles owned by S. */
RT_API size_t rt_scope_count(const rt_scope *S);
/* Take t out of its scope: the caller owns it now (rt_free). Returns t. */
RT_API rt_tensor *rt_keep(rt_tensor *t);
/* Hand t to scope dst (NULL = caller-owned). Returns t. */
RT_API rt_tensor *rt_move(rt_tensor *t, rt_scope *dst);
/* Free one handle (removing it from its scope). NULL-safe. */
RT_API void rt_free(rt_tensor *t);
/* A second handle on the same tensor (same storage, same autograd node). */
RT_API rt_tensor *rt_alias(rt_scope *S, const rt_tensor *t);
/* Point dst at src's tensor (dst's old reference is dropped). Used to keep a
 * long-lived handle (e.g. a KV cache) while replacing what it refers to. */
RT_API int rt_assign(rt_tensor *dst, const rt_tensor *src);

/* ------------------------------------------------------------------------ */
/* Creation                                                                  */
/* ------------------------------------------------------------------------ */

/* Copy a C buffer (row-major, element type o.dtype) into a new tensor. */
RT_API rt_tensor *rt_from_data(rt_scope *S, const void *data, const int64_t *shape, int ndim,
                               rt_opts o);
/* Copy a tensor's elements, converted to dtype dt, into buf (row-major).
 * nbytes must be at least numel * rt_dtype_size(dt). */
RT_API int rt_to_data(const rt_tensor *t, rt_dtype dt, void *buf, size_t nbytes);
/* Pointer to the first element of a contiguous CPU tensor (NULL otherwise).
 * Valid while the handle lives; for zero-copy hand-off (I/O, MPI). */
RT_API void *rt_data_ptr(const rt_tensor *t);
RT_API rt_tensor *rt_empty(rt_scope *S, const int64_t *shape, int ndim, rt_opts o);
RT_API rt_tensor *rt_zeros(rt_scope *S, const int64_t *shape, int ndim, rt_opts o);
RT_API rt_tensor *rt_ones(rt_scope *S, const int64_t *shape, int ndim, rt_opts o);
RT_API rt_tensor *rt_full(rt_scope *S, const int64_t *shape, int ndim, double value, rt_opts o);
/* A 0-dim tensor holding v. */
RT_API rt_tensor *rt_scalar(rt_scope *S, double v, rt_opts o);
/* [start, end) in steps of step, like torch.arange. */
RT_API rt_tensor *rt_arange(rt_scope *S, double start, double end, double step, rt_opts o);
RT_API rt_tensor *rt_zeros_like(rt_scope *S, const rt_tensor *t);
RT_API rt_tensor *rt_ones_like(rt_scope *S, const rt_tensor *t);
RT_API rt_tensor *rt_full_like(rt_scope *S, const rt_tensor *t, double value);
/* Lower-triangular (diagonal k and below) mask/values of a 2-D tensor. */
RT_API rt_tensor *rt_tril(rt_scope *S, const rt_tensor *t, int64_t k);
RT_API rt_tensor *rt_triu(rt_scope *S, const rt_tensor *t, int64_t k);

/* ------------------------------------------------------------------------ */
/* Generators and random tensors                                             */
/* ------------------------------------------------------------------------ */

/* A CPU generator seeded like torch.Generator().manual_seed(seed). */
RT_API rt_gen *rt_gen_new(uint64_t seed);
RT_API void rt_gen_free(rt_gen *g);
RT_API int rt_gen_seed(rt_gen *g, uint64_t seed);
/* Full state as bytes (5056 on libtorch 1.13 CPU; same bytes as Python's
 * torch.Generator.get_state()). size_out receives the length. Call with
 * buf == NULL to ask the size. */
RT_API int rt_gen_get_state(rt_gen *g, uint8_t *buf, size_t cap, size_t *size_out);
RT_API int rt_gen_set_state(rt_gen *g, const uint8_t *buf, size_t size);

/* U[0,1). */
RT_API rt_tensor *rt_rand(rt_scope *S, const int64_t *shape, int ndim, rt_gen *g, rt_opts o);
/* N(0,1). */
RT_API rt_tensor *rt_randn(rt_scope *S, const int64_t *shape, int ndim, rt_gen *g, rt_opts o);
/* Integers in [low, high). */
RT_API rt_tensor *rt_randint(rt_scope *S, int64_t low, int64_t high, const int64_t *shape, int ndim,
                             rt_gen *g, rt_opts o);
/* A random permutation of 0..n-1 (int64). */
RT_API rt_tensor *rt_randperm(rt_scope *S, int64_t n, rt_gen *g);
/* Row-wise draws from the (unnormalized, non-negative) weights `probs`
 * [.., C] -> int64 [.., n]. */
RT_API rt_tensor *rt_multinomial(rt_scope *S, const rt_tensor *probs, int64_t n, int replacement,
                                 rt_gen *g);
/* Standard Gumbel(0,1) noise -log(-log U), U drawn in (0,1) so it is finite. */
RT_API rt_tensor *rt_gumbel(rt_scope *S, const int64_t *shape, int ndim, rt_gen *g, rt_opts o);
/* In place: t ~ U[lo, hi) / N(mean, std). For parameter initialisation. */
RT_API int rt_uniform_(rt_tensor *t, double lo, double hi, rt_gen *g);
RT_API int rt_normal_(rt_tensor *t, double mean, double std, rt_gen *g);

/* ------------------------------------------------------------------------ */
/* Queries                                                                   */
/* ------------------------------------------------------------------------ */

RT_API int rt_ndim(const rt_tensor *t);             /* -1 on NULL */
RT_API int64_t rt_size(const rt_tensor *t, int dim); /* negative dim ok; -1 on error */
/* Writes up to cap sizes into shape; returns ndim (or a negative status). */
RT_API int rt_shape(const rt_tensor *t, int64_t *shape, int cap);
RT_API int64_t rt_numel(const rt_tensor *t);
RT_API rt_dtype rt_dtype_of(const rt_tensor *t);
RT_API rt_device_type rt_device_of(const rt_tensor *t);
/* "[2, 3]" into buf; returns buf. For error messages. */
RT_API const char *rt_shape_str(const rt_tensor *t, char *buf, size_t cap);
/* The value of a one-element tensor. Check rt_last_error() if NaN is plausible:
 * on failure rt_item returns NaN and sets the error. */
RT_API double rt_item(const rt_tensor *t);
RT_API int64_t rt_item_i64(const rt_tensor *t);
/* 1 when every element of a and b is bitwise/numerically equal (same shape). */
RT_API int rt_equal(const rt_tensor *a, const rt_tensor *b);
/* max |a - b| over all elements (as float64); NaN on error. */
RT_API double rt_max_abs_diff(const rt_tensor *a, const rt_tensor *b);

/* ------------------------------------------------------------------------ */
/* Elementwise math (broadcasting like PyTorch)                              */
/* ------------------------------------------------------------------------ */

RT_API rt_tensor *rt_add(rt_scope *S, const rt_tensor *a, const rt_tensor *b);
RT_API rt_tensor *rt_sub(rt_scope *S, const rt_tensor *a, const rt_tensor *b);
RT_API rt_tensor *rt_mul(rt_scope *S, const rt_tensor *a, const rt_tensor *b);
RT_API rt_tensor *rt_div(rt_scope *S, const rt_tensor *a, const rt_tensor *b);
RT_API rt_tensor *rt_pow(rt_scope *S, const rt_tensor *a, const rt_tensor *b);
RT_API rt_tensor *rt_minimum(rt_scope *S, const rt_tensor *a, const rt_tensor *b);
RT_API rt_tensor *rt_maximum(rt_scope *S, const rt_tensor *a, const rt_tensor *b);
/* a + alpha*b in one op. */
RT_API rt_tensor *rt_add_scaled(rt_scope *S, const rt_tensor *a, const rt_tensor *b, double alpha);

/* Allocation-free forms for hot loops: the result (shape and dtype of the
 * out-of-place op; dst may be a view) is written into dst, nothing is
 * allocated, and the call runs below the autograd layer. They are never
 * recorded by autograd: with grad mode on, no tensor involved may require
 * grad. rt_matmul_out takes 2-D inputs. */
RT_API int rt_add_out(rt_tensor *dst, const rt_tensor *a, const rt_tensor *b);
RT_API int rt_mul_out(rt_tensor *dst, const rt_tensor *a, const rt_tensor *b);
RT_API int rt_matmul_out(rt_tensor *dst, const rt_tensor *a, const rt_tensor *b);

RT_API rt_tensor *rt_add_scalar(rt_scope *S, const rt_tensor *a, double v);
RT_API rt_tensor *rt_mul_scalar(rt_scope *S, const rt_tensor *a, double v);
RT_API rt_tensor *rt_div_scalar(rt_scope *S, const rt_tensor *a, double v);
RT_API rt_tensor *rt_pow_scalar(rt_scope *S, const rt_tensor *a, double exponent);
/* v - a  (e.g. 1 - p). */
RT_API rt_tensor *rt_rsub_scalar(rt_scope *S, const rt_tensor *a, double v);

RT_API rt_tensor *rt_neg(rt_scope *S, const rt_tensor *a);
RT_API rt_tensor *rt_exp(rt_scope *S, const rt_tensor *a);
RT_API rt_tensor *rt_expm1(rt_scope *S, const rt_tensor *a);
RT_API rt_tensor *rt_log(rt_scope *S, const rt_tensor *a);
RT_API rt_tensor *rt_log1p(rt_scope *S, const rt_tensor *a);
RT_API rt_tensor *rt_sqrt(rt_scope *S, const rt_tensor *a);
RT_API rt_tensor *rt_rsqrt(rt_scope *S, const rt_tensor *a);
RT_API rt_tensor *rt_square(rt_scope *S, const rt_tensor *a);
RT_API rt_tensor *rt_abs(rt_scope *S, const rt_tensor *a);
RT_API rt_tensor *rt_sign(rt_scope *S, const rt_tensor *a);
RT_API rt_tensor *rt_sin(rt_scope *S, const rt_tensor *a);
RT_API rt_tensor *rt_cos(rt_scope *S, const rt_tensor *a);
RT_API rt_tensor *rt_tanh(rt_scope *S, const rt_tensor *a);
RT_API rt_tensor *rt_sigmoid(rt_scope *S, const rt_tensor *a);
/* log(sigmoid(a)), computed stably. */
RT_API rt_tensor *rt_logsigmoid(rt_scope *S, const rt_tensor *a);
/* log(1+exp(beta*a))/beta, linear above threshold (torch defaults 1, 20). */
RT_API rt_tensor *rt_softplus(rt_scope *S, const rt_tensor *a, double beta, double threshold);
RT_API rt_tensor *rt_relu(rt_scope *S, const rt_tensor *a);
/* tanh_approx = 0: exact erf GELU; 1: the tanh approximation (GPT-2). */
RT_API rt_tensor *rt_gelu(rt_scope *S, const rt_tensor *a, int tanh_approx);
RT_API rt_tensor *rt_silu(rt_scope *S, const rt_tensor *a);
RT_API rt_tensor *rt_floor(rt_scope *S, const rt_tensor *a);
RT_API rt_tensor *rt_round(rt_scope *S, const rt_tensor *a);
/* Clamp into [lo, hi]; pass -INFINITY / INFINITY for a one-sided clamp. */
RT_API rt_tensor *rt_clamp(rt_scope *S, const rt_tensor *a, double lo, double hi);
/* Elementwise clamp between tensors (broadcast). */
RT_API rt_tensor *rt_clamp_t(rt_scope *S, const rt_tensor *a, const rt_tensor *lo,
                             const rt_tensor *hi);
/* cond ? a : b (cond bool; broadcast). Gradients flow only through the
 * selected side, so NaN in the unselected side cannot leak into them. */
RT_API rt_tensor *rt_where(rt_scope *S, const rt_tensor *cond, const rt_tensor *a,
                           const rt_tensor *b);
/* cond ? a : v. */
RT_API rt_tensor *rt_where_scalar(rt_scope *S, const rt_tensor *cond, const rt_tensor *a, double v);
/* NaN -> nan, +inf -> posinf, -inf -> neginf. */
RT_API rt_tensor *rt_nan_to_num(rt_scope *S, const rt_tensor *a, double nan, double posinf,
                                double neginf);

/* Comparisons and logic: results are bool tensors. */
typedef enum rt_cmp { RT_EQ, RT_NE, RT_LT, RT_LE, RT_GT, RT_GE } rt_cmp;
RT_API rt_tensor *rt_compare(rt_scope *S, const rt_tensor *a, rt_cmp op, const rt_tensor *b);
RT_API rt_tensor *rt_compare_scalar(rt_scope *S, const rt_tensor *a, rt_cmp op, double v);
RT_API rt_tensor *rt_logical_and(rt_scope *S, const rt_tensor *a, const rt_tensor *b);
RT_API rt_tensor *rt_logical_or(rt_scope *S, const rt_tensor *a, const rt_tensor *b);
RT_API rt_tensor *rt_logical_xor(rt_scope *S, const rt_tensor *a, const rt_tensor *b);
RT_API rt_tensor *rt_logical_not(rt_scope *S, const rt_tensor *a);
RT_API rt_tensor *rt_isfinite(rt_scope *S, const rt_tensor *a);
RT_API rt_tensor *rt_isnan(rt_scope *S, const rt_tensor *a);

/* ------------------------------------------------------------------------ */
/* Reductions. dim may be RT_DIM_ALL (then keepdim is ignored: 0-dim result) */
/* ------------------------------------------------------------------------ */

RT_API rt_tensor *rt_sum(rt_scope *S, const rt_tensor *a, int64_t dim, int keepdim);
RT_API rt_tensor *rt_mean(rt_scope *S, const rt_tensor *a, int64_t dim, int keepdim);
/* Sum / mean over several dims at once. */
RT_API rt_tensor *rt_sum_dims(rt_scope *S, const rt_tensor *a, const int64_t *dims, int ndims,
                              int keepdim);
RT_API rt_tensor *rt_mean_dims(rt_scope *S, const rt_tensor *a, const int64_t *dims, int ndims,
                               int keepdim);
RT_API rt_tensor *rt_prod(rt_scope *S, const rt_tensor *a, int64_t dim, int keepdim);
/* Max/min values along dim; *indices (int64, may be NULL) receives argmax/argmin,
 * owned by S. With RT_DIM_ALL no indices are produced. */
RT_API rt_tensor *rt_max(rt_scope *S, const rt_tensor *a, int64_t dim, int keepdim,
                         rt_tensor **indices);
RT_API rt_tensor *rt_min(rt_scope *S, const rt_tensor *a, int64_t dim, int keepdim,
                         rt_tensor **indices);
RT_API rt_tensor *rt_argmax(rt_scope *S, const rt_tensor *a, int64_t dim, int keepdim);
RT_API rt_tensor *rt_argmin(rt_scope *S, const rt_tensor *a, int64_t dim, int keepdim);
RT_API rt_tensor *rt_logsumexp(rt_scope *S, const rt_tensor *a, int64_t dim, int keepdim);
/* Variance / std with Bessel-style correction (1 = unbiased, torch's
 * default; 0 = population). */
RT_API rt_tensor *rt_var(rt_scope *S, const rt_tensor *a, int64_t dim, int64_t correction,
                         int keepdim);
RT_API rt_tensor *rt_std(rt_scope *S, const rt_tensor *a, int64_t dim, int64_t correction,
                         int keepdim);
/* L2 norm. */
RT_API rt_tensor *rt_norm(rt_scope *S, const rt_tensor *a, int64_t dim, int keepdim);
/* k largest (largest=1) or smallest values along dim; *indices as in rt_max. */
RT_API rt_tensor *rt_topk(rt_scope *S, const rt_tensor *a, int64_t k, int64_t dim, int largest,
                          rt_tensor **indices);
/* Sorted values along dim (stable); *indices as in rt_max. */
RT_API rt_tensor *rt_sort(rt_scope *S, const rt_tensor *a, int64_t dim, int descending,
                          rt_tensor **indices);
RT_API rt_tensor *rt_cumsum(rt_scope *S, const rt_tensor *a, int64_t dim);
/* Boolean any/all along dim (RT_DIM_ALL: over everything). */
RT_API rt_tensor *rt_any(rt_scope *S, const rt_tensor *a, int64_t dim, int keepdim);
RT_API rt_tensor *rt_all(rt_scope *S, const rt_tensor *a, int64_t dim, int keepdim);

/* ------------------------------------------------------------------------ */
/* Shape and indexing                                                        */
/* ------------------------------------------------------------------------ */

/* One size may be -1 (inferred). reshape copies only when it must; view never
 * copies and fails on incompatible strides. */
RT_API rt_tensor *rt_reshape(rt_scope *S, const rt_tensor *a, const int64_t *shape, int ndim);
RT_API rt_tensor *rt_view(rt_scope *S, const rt_tensor *a, const int64_t *shape, int ndim);
RT_API rt_tensor *rt_flatten(rt_scope *S, const rt_tensor *a, int64_t start_dim, int64_t end_dim);
RT_API rt_tensor *rt_transpose(rt_scope *S, const rt_tensor *a, int64_t d0, int64_t d1);
RT_API rt_tensor *rt_permute(rt_scope *S, const rt_tensor *a, const int64_t *dims, int ndim);
RT_API rt_tensor *rt_squeeze(rt_scope *S, const rt_tensor *a, int64_t dim);
RT_API rt_tensor *rt_unsqueeze(rt_scope *S, const rt_tensor *a, int64_t dim);
/* Broadcast to shape (-1 keeps a size); a view, no copy. */
RT_API rt_tensor *rt_expand(rt_scope *S, const rt_tensor *a, const int64_t *shape, int ndim);
RT_API rt_tensor *rt_repeat(rt_scope *S, const rt_tensor *a, const int64_t *repeats, int ndim);
RT_API rt_tensor *rt_contiguous(rt_scope *S, const rt_tensor *a);
RT_API rt_tensor *rt_cat(rt_scope *S, rt_tensor *const *ts, int n, int64_t dim);
RT_API rt_tensor *rt_stack(rt_scope *S, rt_tensor *const *ts, int n, int64_t dim);
/* Elements [start, start+length) of dim (a view). */
RT_API rt_tensor *rt_narrow(rt_scope *S, const rt_tensor *a, int64_t dim, int64_t start,
                            int64_t length);
/* Index `index` of dim, removing dim (a view). */
RT_API rt_tensor *rt_select(rt_scope *S, const rt_tensor *a, int64_t dim, int64_t index);
/* out[i][j] = a[i][index[i][j]] along dim (index int64, same ndim). */
RT_API rt_tensor *rt_gather(rt_scope *S, const rt_tensor *a, int64_t dim, const rt_tensor *index);
/* Out-of-place scatter: a copy of a with src written at index along dim. */
RT_API rt_tensor *rt_scatter(rt_scope *S, const rt_tensor *a, int64_t dim, const rt_tensor *index,
                             const rt_tensor *src);
/* Out-of-place scatter that adds src into a at index along dim. */
RT_API rt_tensor *rt_scatter_add(rt_scope *S, const rt_tensor *a, int64_t dim,
                                 const rt_tensor *index, const rt_tensor *src);
RT_API rt_tensor *rt_index_select(rt_scope *S, const rt_tensor *a, int64_t dim,
                                  const rt_tensor *index);
/* a where !mask, value where mask (mask bool, broadcast). */
RT_API rt_tensor *rt_masked_fill(rt_scope *S, const rt_tensor *a, const rt_tensor *mask,
                                 double value);
/* int64 [..] -> int64 [.., num_classes]. */
RT_API rt_tensor *rt_one_hot(rt_scope *S, const rt_tensor *ids, int64_t num_classes);
/* weight [V, D], ids int64 [...] -> [..., D]. */
RT_API rt_tensor *rt_embedding(rt_scope *S, const rt_tensor *weight, const rt_tensor *ids);
RT_API rt_tensor *rt_to_dtype(rt_scope *S, const rt_tensor *a, rt_dtype dt);
RT_API rt_tensor *rt_to_device(rt_scope *S, const rt_tensor *a, rt_device_type dev, int index);
/* A copy with its own storage (stays in the autograd graph). */
RT_API rt_tensor *rt_clone(rt_scope *S, const rt_tensor *a);

/* ------------------------------------------------------------------------ */
/* In-place updates (parameters, buffers, caches). Not for autograd leaves   */
/* that require grad unless inside a no-grad region.                         */
/* ------------------------------------------------------------------------ */

/* dst <- src (broadcast; dtype converted). dst may be a view (rt_narrow). */
RT_API int rt_copy_(rt_tensor *dst, const rt_tensor *src);
RT_API int rt_fill_(rt_tensor *t, double v);
RT_API int rt_zero_(rt_tensor *t);
/* t <- t + alpha * other. */
RT_API int rt_add_(rt_tensor *t, const rt_tensor *other, double alpha);
RT_API int rt_mul_scalar_(rt_tensor *t, double v);
/* t <- t + w * (end - t)  (Polyak / EMA: w = tau). */
RT_API int rt_lerp_(rt_tensor *t, const rt_tensor *end, double w);

/* ------------------------------------------------------------------------ */
/* Linear algebra and neural-network functions                               */
/* ------------------------------------------------------------------------ */

RT_API rt_tensor *rt_matmul(rt_scope *S, const rt_tensor *a, const rt_tensor *b);
/* [B,n,m] x [B,m,p] -> [B,n,p]. */
RT_API rt_tensor *rt_bmm(rt_scope *S, const rt_tensor *a, const rt_tensor *b);
/* x [.., in] . w[out, in]^T + b[out]; b may be NULL (no bias -- the only NULL
 * that is not an error). */
RT_API rt_tensor *rt_linear(rt_scope *S, const rt_tensor *x, const rt_tensor *w, const rt_tensor *b);
RT_API rt_tensor *rt_softmax(rt_scope *S, const rt_tensor *a, int64_t dim);
RT_API rt_tensor *rt_log_softmax(rt_scope *S, const rt_tensor *a, int64_t dim);
/* LayerNorm over the last n_norm_dims dims; weight/bias may be NULL. */
RT_API rt_tensor *rt_layer_norm(rt_scope *S, const rt_tensor *x, int n_norm_dims,
                                const rt_tensor *weight, const rt_tensor *bias, double eps);
/* RMSNorm over the last dim: x / sqrt(mean(x^2) + eps) * weight (weight may be NULL). */
RT_API rt_tensor *rt_rms_norm(rt_scope *S, const rt_tensor *x, const rt_tensor *weight, double eps);
/* Inverted dropout with an explicit generator: training ? x * mask / (1-p) : x. */
RT_API rt_tensor *rt_dropout(rt_scope *S, const rt_tensor *x, double p, int training, rt_gen *g);
/* Causal scaled-dot-product attention, composed from matmul + masked softmax
 * (libtorch 1.13 has no fused SDPA).
 *   q [B,H,Tq,D], k [B,H,Tk,D], v [B,H,Tk,Dv]  ->  [B,H,Tq,Dv], Tk >= Tq.
 * Query i sits at absolute position Tk-Tq+i and sees keys 0..Tk-Tq+i, so the
 * same call serves the full forward (Tk == Tq) and cached decoding (k, v hold
 * the cache plus the new positions). scale <= 0 means 1/sqrt(D). */
RT_API rt_tensor *rt_causal_attention(rt_scope *S, const rt_tensor *q, const rt_tensor *k,
                                      const rt_tensor *v, double scale);

/* Key/value cache for incremental decoding: preallocated [B,H,max_len,D]
 * buffers filled front to back, so appending copies only the new positions. */
typedef struct rt_kv_cache rt_kv_cache;
RT_API rt_kv_cache *rt_kv_cache_new(int64_t batch, int64_t heads, int64_t max_len, int64_t head_dim,
                                    rt_opts o);
RT_API void rt_kv_cache_free(rt_kv_cache *c);
RT_API int64_t rt_kv_cache_len(const rt_kv_cache *c);
RT_API void rt_kv_cache_clear(rt_kv_cache *c);
/* Append k, v [B,H,T,D] and return views of everything cached so far
 * ([B,H,len,D], owned by S) in *k_all and *v_all. Fails cleanly when the cache
 * would overflow max_len. */
RT_API int rt_kv_cache_append(rt_kv_cache *c, rt_scope *S, const rt_tensor *k, const rt_tensor *v,
                              rt_tensor **k_all, rt_tensor **v_all);
/* Attention through the cache: append (k, v) then attend q over the cache. */
RT_API rt_tensor *rt_causal_attention_cached(rt_scope *S, rt_kv_cache *c, const rt_tensor *q,
                                             const rt_tensor *k, const rt_tensor *v, double scale);

/* Cross-entropy of logits [N,C] (or [N,C,d..]) against int64 targets [N]
 * ([N,d..]); targets equal to ignore_index contribute nothing (mean is over
 * the others). label_smoothing as torch (0 = none). */
RT_API rt_tensor *rt_cross_entropy(rt_scope *S, const rt_tensor *logits, const rt_tensor *targets,
                                   rt_reduction red, int64_t ignore_index, double label_smoothing);
RT_API rt_tensor *rt_mse(rt_scope *S, const rt_tensor *a, const rt_tensor *b, rt_reduction red);

/* ------------------------------------------------------------------------ */
/* Autograd                                                                  */
/* ------------------------------------------------------------------------ */

RT_API int rt_set_requires_grad(rt_tensor *t, int on);
RT_API int rt_requires_grad(const rt_tensor *t); /* 0/1; negative on NULL */
/* Backpropagate from a one-element tensor (gradient 1). */
RT_API int rt_backward(const rt_tensor *loss);
/* Backpropagate from any tensor with an explicit upstream gradient. */
RT_API int rt_backward_with(const rt_tensor *t, const rt_tensor *grad);
/* The accumulated gradient of a leaf (a new handle on it, in S), or NULL when
 * none exists yet; rt_has_grad() tells the two NULLs apart. */
RT_API rt_tensor *rt_grad(rt_scope *S, const rt_tensor *t);
RT_API int rt_has_grad(const rt_tensor *t);
/* Zero the gradient in place (no-op when it does not exist). */
RT_API int rt_zero_grad(rt_tensor *t);
/* Same data, cut from the graph. */
RT_API rt_tensor *rt_detach(rt_scope *S, const rt_tensor *a);
/* Grad mode (per thread). rt_no_grad_begin() turns it off and returns the
 * previous mode, which rt_grad_mode_restore() puts back:
 *     int g = rt_no_grad_begin(); ...; rt_grad_mode_restore(g);   */
RT_API int rt_no_grad_begin(void);
RT_API void rt_grad_mode_restore(int previous);
RT_API int rt_grad_enabled(void);
/* Global L2 norm of the gradients of params[0..n) written to *total_norm; when
 * it is finite and above max_norm, the gradients are scaled by
 * max_norm/(total_norm+1e-6) (torch.nn.utils.clip_grad_norm_). A non-finite
 * norm leaves the gradients untouched, so the caller can skip the step.
 * max_norm <= 0 only measures. */
RT_API int rt_clip_grad_norm(rt_tensor *const *params, size_t n, double max_norm,
                             double *total_norm);

/* ------------------------------------------------------------------------ */
/* Optimizers: SGD, Adam, AdamW over named parameters                        */
/* ------------------------------------------------------------------------ */

typedef enum rt_optim_kind { RT_SGD = 0, RT_ADAM = 1, RT_ADAMW = 2 } rt_optim_kind;

/* Hyper-parameters (torch names). rt_optim_defaults() gives torch's defaults. */
typedef struct rt_optim_opts {
    double lr;
    double beta1, beta2, eps; /* Adam/AdamW */
    double weight_decay;      /* L2 for SGD/Adam, decoupled for AdamW */
    int amsgrad;              /* Adam/AdamW */
    double momentum, dampening; /* SGD */
    int nesterov;               /* SGD */
} rt_optim_opts;

RT_API rt_optim_opts rt_optim_defaults(rt_optim_kind kind);
RT_API const char *rt_optim_kind_name(rt_optim_kind kind); /* "sgd", "adam", "adamw" */

/* An optimizer over n parameters. names[i] names params[i] (state_dict key;
 * unique). The optimizer references the tensors; it does not own the handles,
 * which must outlive it. Restore parameters in place (rt_copy_ under no-grad),
 * never by swapping tensors, or their optimizer state is orphaned. */
RT_API rt_optim *rt_optim_new(rt_optim_kind kind, rt_tensor *const *params,
                              const char *const *names, size_t n, const rt_optim_opts *opts);
RT_API void rt_optim_free(rt_optim *o);
RT_API rt_optim_kind rt_optim_kind_of(const rt_optim *o);
RT_API rt_optim_opts rt_optim_get_opts(const rt_optim *o);
RT_API int rt_optim_step(rt_optim *o);
/* Zero every parameter's gradient in place (torch 1.13 semantics). */
RT_API int rt_optim_zero_grad(rt_optim *o);
RT_API int rt_optim_set_lr(rt_optim *o, double lr);
RT_API double rt_optim_get_lr(const rt_optim *o);
RT_API size_t rt_optim_param_count(const rt_optim *o);
RT_API const char *rt_optim_param_name(const rt_optim *o, size_t i);
RT_API rt_tensor *rt_optim_param(const rt_optim *o, size_t i); /* borrowed */

/* Per-parameter state, exported and imported by parameter name. Tensors the
 * kind does not use are NULL: Adam/AdamW use exp_avg, exp_avg_sq and (amsgrad)
 * max_exp_avg_sq; SGD uses momentum_buffer (NULL when momentum is 0). has_state
 * is 0 before the parameter's first step. */
typedef struct rt_optim_state {
    int has_state;
    int64_t step;
    rt_tensor *exp_avg, *exp_avg_sq, *max_exp_avg_sq, *momentum_buffer;
} rt_optim_state;

/* Copies of the state of parameter `name` (tensors owned by S). */
RT_API int rt_optim_state_get(const rt_optim *o, const char *name, rt_scope *S,
                              rt_optim_state *out);
/* Replace the state of parameter `name` (tensors are copied; shapes must
 * match the parameter). has_state == 0 clears it. */
RT_API int rt_optim_state_set(rt_optim *o, const char *name, const rt_optim_state *in);

/* ------------------------------------------------------------------------ */
/* Sequence models: masked attention, sampling (tensor_seq.cpp)              */
/* ------------------------------------------------------------------------ */

/* Padding convention (HF/TRL): prompts are LEFT-padded, a mask [B,T] marks the
 * real tokens (any dtype; nonzero = real), position ids are
 * max(cumsum(mask) - 1, 0), and attention never looks at a masked key.
 *
 * Causal attention with a key mask: as rt_causal_attention (query i at
 * absolute position Tk-Tq+i sees keys 0..Tk-Tq+i), and key j is visible only
 * where key_mask[b, j] is set.
 *   q [B,H,Tq,D], k [B,H,Tk,D], v [B,H,Tk,Dv], key_mask [B,Tk] -> [B,H,Tq,Dv]
 * A query that sees no key at all (a pad query at the left edge, or a row
 * with no real token) gets an output row of zeros and a zero gradient, never
 * NaN. key_mask is required (NULL -> NULL, like any input); use
 * rt_causal_attention when there is no padding. scale <= 0 means 1/sqrt(D).
 * With nothing to differentiate (no-grad, an inference region, or no input
 * requiring grad) on the CPU in float32/float64 and Tq <= 32 (decoding, short
 * prefills), a direct kernel runs instead of the matmul composition: one pass
 * over K and V per (b, h) row, AVX2+FMA where the CPU has it, rows spread over
 * the intra-op threads, the same bits at any thread count. It agrees with the
 * composition to rounding (~1e-7 relative in float32). */
RT_API rt_tensor *rt_causal_attention_masked(rt_scope *S, const rt_tensor *q, const rt_tensor *k,
                                             const rt_tensor *v, const rt_tensor *key_mask, double scale);
/* Through the cache: append (k, v) [B,H,T,D], then attend q [B,H,T,D] over
 * everything cached. key_mask [B, len+T] covers the cached positions and the
 * new ones (len = rt_kv_cache_len before the call). A key_mask of the wrong
 * shape is refused before anything is appended. */
RT_API rt_tensor *rt_causal_attention_cached_masked(rt_scope *S, rt_kv_cache *c, const rt_tensor *q,
                                                    const rt_tensor *k, const rt_tensor *v,
                                                    const rt_tensor *key_mask, double scale);

/* Decoding with packed projections (a model's sampling path; no autograd).
 * rt_attn_cache holds keys and values [batch, heads, max_len, head_dim] in
 * float32/float64, allocated uninitialised: positions at or past its length
 * are never read, so a new cache costs no fill. Free with rt_attn_cache_free
 * (NULL-safe); rt_attn_cache_clear forgets the positions and keeps the
 * buffers. */
typedef struct rt_attn_cache rt_attn_cache;
RT_API rt_attn_cache *rt_attn_cache_new(int64_t batch, int64_t heads, int64_t max_len,
                                        int64_t head_dim, rt_opts o);
RT_API void rt_attn_cache_free(rt_attn_cache *c);
RT_API int64_t rt_attn_cache_len(const rt_attn_cache *c); /* -1 for NULL */
RT_API void rt_attn_cache_clear(rt_attn_cache *c);
/* qkv [B,T,3*H*D]: the q, k and v projections of the next T positions side
 * by side (x @ cat(Wq, Wk, Wv)^T, each part heads-major as [H,D]), in the
 * cache's dtype. Appends the k and v parts, then attends the q part over
 * everything cached exactly as rt_causal_attention_cached_masked does
 * (key_mask [B, len+T], len = rt_attn_cache_len before the call; scale <= 0
 * means 1/sqrt(D)), and returns the heads merged: [B,T,H*D], ready for the
 * output projection. Shape errors (and overflow past max_len) are refused
 * before anything is appended. */
RT_API rt_tensor *rt_attention_qkv_cached(rt_scope *S, rt_attn_cache *c, const rt_tensor *qkv,
                                          const rt_tensor *key_mask, double scale);
/* GELU with the tanh approximation for inference (no grad), computed as
 * x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3) -- the same function
 * as rt_gelu(x, 1). float32 on a CPU with AVX2 uses a vectorised exp: within
 * ~4 ulp of the exact value (torch's 0.5 x (1 + tanh u) loses relative
 * accuracy for negative x instead); other inputs take rt_gelu's kernel. */
RT_API rt_tensor *rt_gelu_tanh_inference(rt_scope *S, const rt_tensor *x);

/* Position ids of left-padded rows: mask [B,L] (nonzero = real token, any
 * dtype) -> int64 [B,t], max(cumsum(mask != 0, 1) - 1, 0) over the last t
 * columns (1 <= t <= L) -- the HF/TRL convention, in one pass on a CPU. */
RT_API rt_tensor *rt_mask_positions(rt_scope *S, const rt_tensor *mask, int64_t t);

/* A float32 weight [out, in] laid out for rt_block_decode_'s own product:
 * [ceil(out/16), in, 16], panels of 16 output features, zero-padded. BLAS
 * re-packs a weight on every call; at decoding's 64-odd rows that costs an
 * eighth of the product, so a decoder packs once per sequence instead. */
RT_API rt_tensor *rt_pack_rows16(rt_scope *S, const rt_tensor *w);

/* The weights of one pre-norm GPT-2 block for rt_block_decode_ (borrowed,
 * dense, CPU, in the cache's dtype; C = heads x head_dim of the cache, F the
 * MLP width; a NULL bias is zero). With float32, each of the four matrices
 * may instead be given as rt_pack_rows16 made it, the fast form. */
typedef struct rt_block_weights {
    const rt_tensor *ln_1_weight, *ln_1_bias; /* [C], [C]                            */
    const rt_tensor *qkv_weight, *qkv_bias;   /* [3C,C], [3C]: cat(Wq, Wk, Wv), heads-major */
    const rt_tensor *o_weight, *o_bias;       /* [C,C], [C]                          */
    const rt_tensor *ln_2_weight, *ln_2_bias; /* [C], [C]                            */
    const rt_tensor *fc_weight, *fc_bias;     /* [F,C], [F]                          */
    const rt_tensor *proj_weight, *proj_bias; /* [C,F], [C]                          */
    double ln_1_eps, ln_2_eps;                /* > 0 (torch's default 1e-5)           */
} rt_block_weights;
/* One pre-norm block with a tanh-GELU MLP for the next T positions of a
 * decode, in place on x [B,T,C] (dense, not requiring grad):
 *   x += o(attn(qkv(ln_1(x))))      attention through c as rt_attention_qkv_cached
 *   x += proj(gelu_tanh(fc(ln_2(x))))
 * -- the composition nn_layer_norm_forward, rt_linear, rt_attention_qkv_cached,
 * nn_linear_forward, rt_gelu_tanh_inference and rt_add compute, in one call:
 * each linear is one BLAS call on raw pointers (or, for packed weights, an
 * AVX2 kernel that adds the bias, applies the GELU or accumulates the
 * residual as it stores), and the residual adds accumulate into x. key_mask: CPU bool [B, len+T] with dense rows
 * (a narrowed view is fine), or NULL when every position is real. work: a
 * caller-owned tensor (S = NULL) of the cache's dtype that holds the
 * intermediates and is replaced by a larger one when too small -- keep one
 * across calls and layers (an rt_empty of 0 elements to start) and nothing
 * is allocated after the first call; NULL = a temporary per call. Results
 * equal the composition to float rounding (the LayerNorm sums in another
 * order). Every argument is checked before the cache is touched; RT_OK or
 * RT_EINVAL with a message naming it. No autograd: decoding only. */
RT_API int rt_block_decode_(rt_attn_cache *c, rt_tensor *x, const rt_tensor *key_mask,
                            const rt_block_weights *w, rt_tensor *work);

/* One token per row from logits [N,V] (float32/float64), filtered as
 * HF generate's warpers do, in this order:
 *   temperature  z = logits / temperature; 0 = greedy (argmax of the logits)
 *   top_k        keep the k largest (ties with the k-th stay); 0 = off
 *   top_p        nucleus: in descending order keep a token while the mass
 *                before it is < top_p (the first always stays); 1 = off
 * and drawn with the Gumbel-max trick (argmax of log p + Gumbel noise from g,
 * one [N,V] draw per call, so the same generator state gives the same tokens
 * at any thread count). Returns int64 [N]; *logp (may be NULL) receives [N],
 * the log-probability of each token under the filtered distribution
 * (log_softmax of the filtered z; at temperature 0, of the filtered raw
 * logits). Runs without grad. g may be NULL only for greedy decoding. */
RT_API rt_tensor *rt_sample_logits(rt_scope *S, const rt_tensor *logits, double temperature,
                                   int64_t top_k, double top_p, rt_gen *g, rt_tensor **logp);
/* The filtered logits alone: logits [..., V] -> [..., V] divided by the
 * temperature (when > 0), with the tokens top-k and top-p drop set to -inf,
 * so log_softmax of the result is rt_sample_logits' sampling distribution.
 * Runs without grad (for recomputing sampling log-probs, not for training). */
RT_API rt_tensor *rt_filter_logits(rt_scope *S, const rt_tensor *logits, double temperature,
                                   int64_t top_k, double top_p);

/* Inference region (per thread) for decoding loops: grad mode off, and ops
 * dispatch below the autograd layer (as rt_*_out do), which saves a few
 * microseconds per op. Results never carry autograd history, even from
 * inputs that require grad; do not train inside a region. Regions nest:
 *     int r = rt_inference_begin(); ...; rt_inference_end(r);
 * rt_inference_end restores exactly the state rt_inference_begin saw; it
 * refuses (RT_EINVAL) a region that is not the innermost open one. */
RT_API int rt_inference_begin(void);
RT_API int rt_inference_end(int region);

/* ------------------------------------------------------------------------ */
/* Fused kernels (tensor_fused.cpp)                                          */
/* ------------------------------------------------------------------------ */

/* Per-token log-probabilities of the sampled ids under tempered logits, and
 * the entropy of each tempered distribution, in one pass over the logits:
 *
 *   logits [B,T,V] float32|float64, ids [B,T] int64 in [0, V)
 *   -> logps [B,T]    = log_softmax(logits / temperature, -1)[ids]
 *      *entropy [B,T] = -sum_v p log p of softmax(logits / temperature)
 *
 * (Any leading shape works: logits [..., V] with ids [...].) This is TRL's
 * selective_log_softmax + entropy_from_logits without their [B,T,V]
 * temporaries: the forward keeps only the per-row logsumexp and entropy, and
 * the backward recomputes softmax row by row into the gradient, so a forward
 * allocates O(B*T) and a backward exactly one [B,T,V] (the gradient itself).
 * Rows are spread over the intra-op threads (rt_set_num_threads); float32
 * uses AVX2+FMA where the CPU has it. Results agree with
 * rt_log_softmax + rt_gather to ~1e-6 relative in float32 and ~1e-12 in
 * float64 (not bit for bit).
 *
 * Both outputs are differentiable with respect to logits (logits may require
 * grad; the result then requires grad). TRL computes the entropy under
 * no_grad unless an entropy bonus is on: detach *entropy (rt_detach) where
 * the reference does. Double backward is not supported: the gradient itself
 * carries no graph. entropy may be NULL (not wanted); on failure *entropy is
 * NULL too. -inf logits (a masked vocabulary) get probability 0, gradient 0
 * and no NaN in the entropy; a row whose every logit is -inf, or that holds a
 * +inf or NaN, gives NaN as torch does.
 * Errors (NULL, message names the shapes / the bad id): temperature not
 * finite or <= 0; logits not float32/float64; ids not int64; shapes that do
 * not match; an empty vocabulary; an id outside [0, V) (the message gives
 * its position); a non-CPU tensor. */
RT_API rt_tensor *rt_token_logps(rt_scope *S, const rt_tensor *logits, const rt_tensor *ids,
                                 double temperature, rt_tensor **entropy);

/* ------------------------------------------------------------------------ */
/* Fast paths for small-network training (SAC): fused Adam, Polyak, an      */
/* ensemble MLP, multi-view splits and the squashed Gaussian                */
/* (tensor_optim.cpp, tensor_fused.cpp). Each replaces a chain of small     */
/* dispatched ops whose per-op cost dominates at hidden sizes like 64.      */
/* ------------------------------------------------------------------------ */

/* Adam / AdamW (kind RT_ADAM or RT_ADAMW; amsgrad and weight decay as
 * rt_optim_new) stepped by one pass over each parameter's elements instead
 * of ~10 dispatched ops per parameter. Same math as torch.optim.Adam(W)
 * (torch 1.13's order of operations; results agree to rounding, not bit for
 * bit). Everything else of rt_optim works on it unchanged: names, lr, state
 * get/set (so checkpoints are the same), rt_optim_param.
 * Two differences:
 *   - a parameter may be a VIEW of a leaf (e.g. one member of an ensemble's
 *     stacked weights, rt_select(NULL, stacked, 0, k)): its gradient is the
 *     same part of the leaf's gradient, and its step writes into the leaf.
 *     Views and leaves must be contiguous and must not overlap. Make such
 *     views with grad mode on, after the leaf requires grad: torch refuses
 *     to use a view made under no-grad once its storage changed in place;
 *   - rt_optim_zero_grad releases the gradients (torch's set_to_none=True)
 *     instead of writing zeros: the next backward stores its gradient
 *     without an add, and rt_has_grad() is 0 until then.
 * Parameters without a gradient are skipped, as torch does. float32 and
 * float64 CPU parameters. RT_SGD is refused (RT_EINVAL). */
RT_API rt_optim *rt_optim_new_fused(rt_optim_kind kind, rt_tensor *const *params,
                                    const char *const *names, size_t n, const rt_optim_opts *opts);

/* For i < n, under no-grad: dst[i] <- dst[i] + w * (src[i] - dst[i]) (Polyak
 * averaging of target networks; w = tau), one pass per pair. Shapes and
 * dtypes must match pair by pair; contiguous float32/float64 CPU pairs take
 * the loop, anything else rt_lerp_'s path. */
RT_API int rt_lerp_many_(rt_tensor *const *dst, rt_tensor *const *src, size_t n, double w);

/* An ensemble of E ReLU MLPs of the same widths, or one MLP, as ONE autograd
 * node with a hand-written backward:
 *   h_0 = x,  h_{l+1} = act_l(h_l W_l^T + b_l),  act = ReLU between layers,
 *   and ReLU after the last layer too when relu_out (else identity).
 * Ensemble: weights[l] [E, out_l, in_l] (PyTorch Linear layout per member),
 *   biases[l] [E, out_l]; x [B, in_0] (every member reads it) or
 *   [E, B, in_0]; result [E, B, out_last]. One member: weights[l]
 *   [out_l, in_l], biases[l] [out_l], x [B, in_0]; result [B, out_last].
 * The backward computes only what is needed: no weight gradient for weights
 * that do not require grad (pass rt_detach'ed weights to differentiate
 * through a network without touching its parameters), no input gradient
 * for an x that does not. ReLU'(0) = 0, as torch. Under no-grad nothing is
 * saved. float32/float64 CPU, one dtype; 1 <= n_layers <= 16.
 * Errors: NULL with the layer, the expected and the given shapes. */
RT_API rt_tensor *rt_mlp(rt_scope *S, const rt_tensor *x, rt_tensor *const *weights,
                         rt_tensor *const *biases, int n_layers, int relu_out);

/* The n slices of a along dim as views (torch.unbind): out[i] = a[..., i, ...]
 * without dim, owned by S; n must equal rt_size(a, dim) (at most RT_MAX_UNBIND).
 * One op and, when a requires grad, one autograd node whose backward stacks
 * the slices' gradients -- n rt_select calls cost n nodes that each write a
 * zero-filled copy of a. Returns RT_OK or a negative status (out all NULL). */
#define RT_MAX_UNBIND 64
RT_API int rt_unbind(rt_scope *S, const rt_tensor *a, int64_t dim, int64_t n, rt_tensor **out);
/* a split into n equal views along dim (torch.chunk with a size that n
 * divides), owned by S; one op, one autograd node (its backward
 * concatenates). Returns RT_OK or a negative status (out all NULL). */
RT_API int rt_chunk(rt_scope *S, const rt_tensor *a, int64_t n, int64_t dim, rt_tensor **out);

/* How rt_squashed_gaussian turns the raw log-std head into log_std. */
typedef enum rt_log_std_mode {
    RT_LOG_STD_CLAMP = 0, /* clamp(raw, min, max); gradient 0 outside       */
    RT_LOG_STD_TANH = 1,  /* min + (max - min) (tanh(raw) + 1) / 2           */
    RT_LOG_STD_NONE = 2   /* raw                                             */
} rt_log_std_mode;

typedef struct rt_squash_opts {
    rt_log_std_mode log_std_mode;
    double log_std_min, log_std_max; /* the bounds of CLAMP and TANH          */
    int epsilon_correction; /* 0: log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)),
                               exact; 1: log(scale (1 - y^2) + epsilon)     */
    double epsilon;
} rt_squash_opts;

/* The tanh-squashed diagonal Gaussian of SAC, sampled by reparameterization
 * and scored, in one autograd node (rsample + log_prob with the tanh
 * correction, summed over the last dimension):
 *   log_std = the head's raw output through o->log_std_mode      [B,A]
 *   u = mean + exp(log_std) * eps,  y = tanh(u)                    -> result [B,A]
 *   *logp = sum_j [ -eps_j^2/2 - log_std_j - log(2 pi)/2 - corr_j ] -> [B]
 *   corr_j = log(1 - y_j^2) (+ log scale_j when scale is given), or with
 *            epsilon_correction log(s_j (1 - y_j^2) + epsilon), s_j = scale_j or 1.
 * eps [B,A] is the noise (draw it with rt_randn; no gradient flows to it);
 * scale [A] (may be NULL) the action scale of the density in env units.
 * Both outputs are differentiable with respect to mean and log_std_raw.
 * float32/float64 CPU, one dtype. logp must not be NULL. */
RT_API rt_tensor *rt_squashed_gaussian(rt_scope *S, const rt_tensor *mean, const rt_tensor *log_std_raw,
                                       const rt_tensor *eps, const rt_tensor *scale,
                                       const rt_squash_opts *o, rt_tensor **logp);

/* (end of the fast paths for small-network training) */

#ifdef __cplusplus
}
#endif
#endif /* RLT_TENSOR_H */
