/*
 * nn.c -- the nn.h building blocks: a parameter registry with PyTorch
 * state_dict names, and modules (Linear, MLP, Embedding, LayerNorm, RMSNorm,
 * causal self-attention, pre-norm transformer block) written as plain C over
 * the tensor.h ops. No C++ and no libtorch type here.
 */
#include "nn.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Errors: prepend context to the message an rt_ op left behind              */
/* ------------------------------------------------------------------------ */

/* Sets rt_last_error() (printf-style) and returns RT_EINVAL: a bad argument. */
static int nn_einval(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
static int nn_einval(const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rt_set_error("%s", msg);
    return RT_EINVAL;
}

/* Sets rt_last_error() to "<context>: <previous message>" and returns RT_ERR.
 * The previous message is copied first: rt_set_error writes the buffer that
 * rt_last_error() points into. */
static int nn_wrap_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
static int nn_wrap_error(const char *fmt, ...) {
    char prev[768], ctx[384];
    va_list ap;
    snprintf(prev, sizeof prev, "%s", rt_last_error());
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    return rt_set_error("%s: %s", ctx, prev[0] ? prev : "unknown error");
}

/* "prefix.leaf", or "leaf" when prefix is NULL or "". */
static int nn_join(char *out, size_t cap, const char *prefix, const char *leaf) {
    int n;
    if (prefix && prefix[0])
        n = snprintf(out, cap, "%s.%s", prefix, leaf);
    else
        n = snprintf(out, cap, "%s", leaf);
    if (n < 0 || (size_t)n >= cap)
        return nn_einval("nn: parameter name \"%s%s%s\" is longer than NN_NAME_MAX-1 (%d)",
                            prefix ? prefix : "", prefix && prefix[0] ? "." : "", leaf,
                            NN_NAME_MAX - 1);
    return RT_OK;
}

/* Copies a module prefix into its name field, for error messages. */
static int nn_set_name(char *dst, const char *prefix) {
    const char *p = prefix ? prefix : "";
    if (strlen(p) >= NN_NAME_MAX)
        return nn_einval("nn: prefix \"%.40s...\" is longer than NN_NAME_MAX-1 (%d)", p,
                            NN_NAME_MAX - 1);
    memcpy(dst, p, strlen(p) + 1);
    return RT_OK;
}

/* ------------------------------------------------------------------------ */
/* Parameter registry                                                        */
/* ------------------------------------------------------------------------ */

struct nn_params {
    size_t count, cap;
    char **names;        /* [count], malloc'd strings          */
    rt_tensor **tensors; /* [count], caller-owned handles (ours) */
};

nn_params *nn_params_new(void) {
    nn_params *P = calloc(1, sizeof *P);
    if (!P)
        rt_set_error("nn_params_new: out of memory");
    return P;
}

/* Frees the parameters registered after the first n (rollback of a failed
 * module init). */
static void nn_params_truncate(nn_params *P, size_t n) {
    while (P->count > n) {
        P->count--;
        rt_free(P->tensors[P->count]);
        free(P->names[P->count]);
        P->tensors[P->count] = NULL;
        P->names[P->count] = NULL;
    }
}

void nn_params_free(nn_params *P) {
    if (!P)
        return;
    nn_params_truncate(P, 0);
    free(P->names);
    free(P->tensors);
    free(P);
}

int64_t nn_params_index(const nn_params *P, const char *name) {
    if (!P || !name)
        return -1;
    for (size_t i = 0; i < P->count; i++)
        if (strcmp(P->names[i], name) == 0)
            return (int64_t)i;
    return -1;
}

int nn_params_add(nn_params *P, const char *name, rt_tensor *t) {
    int rc = RT_EINVAL;
    char *copy = NULL;
    size_t len;
    if (!t) {
        nn_wrap_error("nn_params_add(%s): no tensor", name ? name : "(null)");
        return RT_ERR;
    }
    if (!P || !name) {
        rt_set_error("nn_params_add: %s is NULL", !P ? "registry" : "name");
        goto fail;
    }
    len = strlen(name);
    if (len == 0 || len >= NN_NAME_MAX) {
        rt_set_error("nn_params_add: name \"%.40s\" has length %zu, expected 1..%d", name, len,
                     NN_NAME_MAX - 1);
        goto fail;
    }
    if (nn_params_index(P, name) >= 0) {
        rt_set_error("nn_params_add: duplicate parameter name \"%s\"", name);
        goto fail;
    }
    if (P->count == P->cap) {
        size_t cap = P->cap ? 2 * P->cap : 16;
        char **names = realloc(P->names, cap * sizeof *names);
        if (!names)
            goto oom;
        P->names = names;
        rt_tensor **tensors = realloc(P->tensors, cap * sizeof *tensors);
        if (!tensors)
            goto oom;
        P->tensors = tensors;
        P->cap = cap;
    }
    copy = malloc(len + 1);
    if (!copy)
        goto oom;
    memcpy(copy, name, len + 1);
    P->names[P->count] = copy;
    P->tensors[P->count] = rt_move(t, NULL);
    P->count++;
    return RT_OK;
oom:
    rt_set_error("nn_params_add(%s): out of memory", name);
    rc = RT_ERR;
fail:
    rt_free(t);
    return rc;
}

size_t nn_params_count(const nn_params *P) { return P ? P->count : 0; }

int64_t nn_params_numel(const nn_params *P) {
    int64_t n = 0;
    if (!P)
        return 0;
    for (size_t i = 0; i < P->count; i++)
        n += rt_numel(P->tensors[i]);
    return n;
}

const char *nn_params_name(const nn_params *P, size_t i) {
    return P && i < P->count ? P->names[i] : NULL;
}

rt_tensor *nn_params_tensor(const nn_params *P, size_t i) {
    return P && i < P->count ? P->tensors[i] : NULL;
}

rt_tensor *nn_params_get(const nn_params *P, const char *name) {
    int64_t i = nn_params_index(P, name);
    if (i < 0) {
        rt_set_error("nn_params_get: no parameter named \"%s\"", name ? name : "(null)");
        return NULL;
    }
    return P->tensors[i];
}

rt_tensor *const *nn_params_tensors(const nn_params *P) { return P ? P->tensors : NULL; }

const char *const *nn_params_names(const nn_params *P) {
    return P ? (const char *const *)P->names : NULL;
}

int nn_params_set_requires_grad(nn_params *P, int on) {
    if (!P)
        return nn_einval("nn_params_set_requires_grad: registry is NULL");
    for (size_t i = 0; i < P->count; i++)
        if (rt_set_requires_grad(P->tensors[i], on) != RT_OK)
            return nn_wrap_error("nn_params_set_requires_grad(%s)", P->names[i]);
    return RT_OK;
}

/* dst <- src (tau < 0) or dst <- lerp(dst, src, tau), position by position. */
static int nn_params_update(const char *fn, nn_params *dst, const nn_params *src, double tau) {
    int rc = RT_OK, grad_mode;
    if (!dst || !src)
        return nn_einval("%s: %s registry is NULL", fn, !dst ? "destination" : "source");
    if (dst->count != src->count)
        return nn_einval("%s: destination has %zu parameters, source %zu", fn, dst->count,
                            src->count);
    /* Check every shape before touching anything: all or nothing. */
    for (size_t i = 0; i < dst->count; i++) {
        int64_t a[RT_MAX_DIMS], b[RT_MAX_DIMS];
        int na = rt_shape(dst->tensors[i], a, RT_MAX_DIMS);
        int nb = rt_shape(src->tensors[i], b, RT_MAX_DIMS);
        if (na < 0 || nb < 0 || na != nb || memcmp(a, b, (size_t)na * sizeof a[0]) != 0) {
            char sa[64], sb[64];
            return nn_einval("%s: parameter %zu: destination \"%s\" %s, source \"%s\" %s", fn,
                                i, dst->names[i], rt_shape_str(dst->tensors[i], sa, sizeof sa),
                                src->names[i], rt_shape_str(src->tensors[i], sb, sizeof sb));
        }
    }
    grad_mode = rt_no_grad_begin();
    for (size_t i = 0; i < dst->count && rc == RT_OK; i++) {
        rc = tau < 0 ? rt_copy_(dst->tensors[i], src->tensors[i])
                     : rt_lerp_(dst->tensors[i], src->tensors[i], tau);
        if (rc != RT_OK)
            rc = nn_wrap_error("%s(%s <- %s)", fn, dst->names[i], src->names[i]);
    }
    rt_grad_mode_restore(grad_mode);
    return rc;
}

int nn_params_copy_(nn_params *dst, const nn_params *src) {
    return nn_params_update("nn_params_copy_", dst, src, -1.0);
}

int nn_params_lerp_(nn_params *dst, const nn_params *src, double tau) {
    if (!(tau >= 0.0 && tau <= 1.0))
        return nn_einval("nn_params_lerp_: tau %g is outside [0, 1]", tau);
    return nn_params_update("nn_params_lerp_", dst, src, tau);
}

/* ------------------------------------------------------------------------ */
/* Parameter creation                                                        */
/* ------------------------------------------------------------------------ */

typedef enum { INIT_UNIFORM, INIT_NORMAL, INIT_ONES, INIT_ZEROS } nn_init_kind;

/* Creates "prefix.leaf" with the given shape and initialisation, marks it
 * requires_grad and registers it. Returns the (registry-owned) tensor or NULL. */
static rt_tensor *nn_new_param(nn_params *P, const char *prefix, const char *leaf,
                               const int64_t *shape, int ndim, rt_opts o, nn_init_kind kind,
                               double a, double b, rt_gen *g) {
    char name[NN_NAME_MAX];
    rt_tensor *t;
    int rc = RT_OK;
    if (nn_join(name, sizeof name, prefix, leaf) != RT_OK)
        return NULL;
    t = rt_empty(NULL, shape, ndim, o);
    if (!t) {
        nn_wrap_error("nn: creating parameter \"%s\"", name);
        return NULL;
    }
    switch (kind) {
    case INIT_UNIFORM: rc = rt_uniform_(t, a, b, g); break;
    case INIT_NORMAL: rc = rt_normal_(t, a, b, g); break;
    case INIT_ONES: rc = rt_fill_(t, 1.0); break;
    case INIT_ZEROS: rc = rt_zero_(t); break;
    }
    if (rc == RT_OK)
        rc = rt_set_requires_grad(t, 1);
    if (rc != RT_OK) {
        nn_wrap_error("nn: initialising parameter \"%s\"", name);
        rt_free(t);
        return NULL;
    }
    if (nn_params_add(P, name, t) != RT_OK)
        return NULL;
    return t;
}

/* ------------------------------------------------------------------------ */
/* Activations                                                               */
/* ------------------------------------------------------------------------ */

static const char *const nn_act_names[] = {"none", "relu", "tanh", "gelu", "gelu_tanh", "silu"};
#define NN_ACT_COUNT ((int)(sizeof nn_act_names / sizeof nn_act_names[0]))

const char *nn_act_name(nn_act a) {
    return (int)a >= 0 && (int)a < NN_ACT_COUNT ? nn_act_names[a] : "unknown";
}

int nn_act_from_name(const char *name, nn_act *out) {
    for (int i = 0; name && i < NN_ACT_COUNT; i++)
        if (strcmp(name, nn_act_names[i]) == 0) {
            if (out)
                *out = (nn_act)i;
            return RT_OK;
        }
    rt_set_error("nn_act_from_name: unknown activation \"%s\" (valid: none, relu, tanh, gelu, "
                 "gelu_tanh, silu)",
                 name ? name : "(null)");
    return RT_EINVAL;
}

rt_tensor *nn_act_forward(rt_scope *S, nn_act a, const rt_tensor *x) {
    if (!x)
        return NULL;
    switch (a) {
    case NN_ACT_NONE: return rt_alias(S, x);
    case NN_ACT_RELU: return rt_relu(S, x);
    case NN_ACT_TANH: return rt_tanh(S, x);
    case NN_ACT_GELU: return rt_gelu(S, x, 0);
    case NN_ACT_GELU_TANH: return rt_gelu(S, x, 1);
    case NN_ACT_SILU: return rt_silu(S, x);
    }
    rt_set_error("nn_act_forward: unknown activation %d", (int)a);
    return NULL;
}

static int nn_act_valid(nn_act a) { return (int)a >= 0 && (int)a < NN_ACT_COUNT; }

/* ------------------------------------------------------------------------ */
/* Input checks for forwards                                                 */
/* ------------------------------------------------------------------------ */

/* 1 when x's last dimension is `want`; otherwise sets an error naming the
 * module and the shapes and returns 0. */
static int nn_check_last_dim(const char *fn, const char *name, const rt_tensor *x, int64_t want) {
    char buf[96];
    int nd = rt_ndim(x);
    if (nd >= 1 && rt_size(x, -1) == want)
        return 1;
    rt_set_error("%s(%s): input %s must have last dimension %lld", fn, name,
                 rt_shape_str(x, buf, sizeof buf), (long long)want);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Linear                                                                    */
/* ------------------------------------------------------------------------ */

int nn_linear_init(nn_linear *m, nn_params *P, const char *prefix, int64_t in_features,
                   int64_t out_features, int bias, rt_opts o, rt_gen *g) {
    size_t n0 = nn_params_count(P);
    int64_t wshape[2] = {out_features, in_features}, bshape[1] = {out_features};
    double a, gain, bound_w, bound_b;
    if (!m || !P || !g)
        return nn_einval("nn_linear_init(%s): %s is NULL", prefix ? prefix : "",
                            !m ? "module" : !P ? "registry" : "generator");
    memset(m, 0, sizeof *m);
    if (in_features <= 0 || out_features <= 0)
        return nn_einval("nn_linear_init(%s): in_features %lld and out_features %lld must be "
                            "positive",
                            prefix ? prefix : "", (long long)in_features, (long long)out_features);
    if (nn_set_name(m->name, prefix) != RT_OK)
        return RT_EINVAL;
    /* torch.nn.Linear.reset_parameters: kaiming_uniform_(a=sqrt(5)) on the
     * weight, i.e. bound sqrt(3) * gain / sqrt(fan_in) with gain
     * sqrt(2 / (1 + a^2)) -- mathematically 1/sqrt(in), computed in the same
     * floating-point steps so the draws match torch bit for bit. */
    a = sqrt(5.0);
    gain = sqrt(2.0 / (1.0 + a * a));
    bound_w = sqrt(3.0) * (gain / sqrt((double)in_features));
    bound_b = 1.0 / sqrt((double)in_features);
    m->weight = nn_new_param(P, prefix, "weight", wshape, 2, o, INIT_UNIFORM, -bound_w, bound_w, g);
    if (!m->weight)
        goto fail;
    if (bias) {
        m->bias = nn_new_param(P, prefix, "bias", bshape, 1, o, INIT_UNIFORM, -bound_b, bound_b, g);
        if (!m->bias)
            goto fail;
    }
    m->in_features = in_features;
    m->out_features = out_features;
    return RT_OK;
fail:
    nn_params_truncate(P, n0);
    memset(m, 0, sizeof *m);
    return RT_ERR;
}

rt_tensor *nn_linear_forward(rt_scope *S, const nn_linear *m, const rt_tensor *x) {
    rt_tensor *y;
    if (!x)
        return NULL;
    if (!m || !m->weight) {
        rt_set_error("nn_linear_forward: module is NULL or not initialised");
        return NULL;
    }
    if (!nn_check_last_dim("nn_linear_forward", m->name, x, m->in_features))
        return NULL;
    y = rt_linear(S, x, m->weight, m->bias); /* [.., out] */
    if (!y)
        nn_wrap_error("nn_linear_forward(%s)", m->name);
    return y;
}

/* ------------------------------------------------------------------------ */
/* MLP                                                                       */
/* ------------------------------------------------------------------------ */

int nn_mlp_init(nn_mlp *m, nn_params *P, const char *prefix, const int64_t *widths, int n_widths,
                nn_act act, nn_act out_act, rt_opts o, rt_gen *g) {
    size_t n0 = nn_params_count(P);
    char layer_prefix[NN_NAME_MAX], idx[24];
    if (!m || !P || !widths)
        return nn_einval("nn_mlp_init(%s): %s is NULL", prefix ? prefix : "",
                            !m ? "module" : !P ? "registry" : "widths");
    memset(m, 0, sizeof *m);
    if (n_widths < 2 || n_widths > NN_MLP_MAX_LAYERS + 1)
        return nn_einval("nn_mlp_init(%s): %d widths, expected 2..%d", prefix ? prefix : "",
                            n_widths, NN_MLP_MAX_LAYERS + 1);
    if (!nn_act_valid(act) || !nn_act_valid(out_act))
        return nn_einval("nn_mlp_init(%s): unknown activation %d", prefix ? prefix : "",
                            !nn_act_valid(act) ? (int)act : (int)out_act);
    for (int i = 0; i + 1 < n_widths; i++) {
        /* nn.Sequential index of Linear i: activations take the odd slots. */
        snprintf(idx, sizeof idx, "%d", 2 * i);
        if (nn_join(layer_prefix, sizeof layer_prefix, prefix, idx) != RT_OK)
            goto fail;
        if (nn_linear_init(&m->layers[i], P, layer_prefix, widths[i], widths[i + 1], 1, o, g) !=
            RT_OK) {
            nn_wrap_error("nn_mlp_init(%s): layer %d", prefix ? prefix : "", i);
            goto fail;
        }
    }
    m->n_layers = n_widths - 1;
    m->act = act;
    m->out_act = out_act;
    return RT_OK;
fail:
    nn_params_truncate(P, n0);
    memset(m, 0, sizeof *m);
    return RT_ERR;
}

rt_tensor *nn_mlp_forward(rt_scope *S, const nn_mlp *m, const rt_tensor *x) {
    rt_tensor *h = NULL;
    if (!x)
        return NULL;
    if (!m || m->n_layers < 1) {
        rt_set_error("nn_mlp_forward: module is NULL or not initialised");
        return NULL;
    }
    for (int i = 0; i < m->n_layers; i++) {
        h = nn_linear_forward(S, &m->layers[i], i == 0 ? x : h); /* [.., widths[i+1]] */
        h = nn_act_forward(S, i + 1 < m->n_layers ? m->act : m->out_act, h);
        if (!h)
            return NULL;
    }
    return h;
}

/* ------------------------------------------------------------------------ */
/* Embedding                                                                 */
/* ------------------------------------------------------------------------ */

int nn_embedding_init(nn_embedding *m, nn_params *P, const char *prefix, int64_t num_embeddings,
                      int64_t embedding_dim, rt_opts o, rt_gen *g) {
    int64_t shape[2] = {num_embeddings, embedding_dim};
    if (!m || !P || !g)
        return nn_einval("nn_embedding_init(%s): %s is NULL", prefix ? prefix : "",
                            !m ? "module" : !P ? "registry" : "generator");
    memset(m, 0, sizeof *m);
    if (num_embeddings <= 0 || embedding_dim <= 0)
        return nn_einval("nn_embedding_init(%s): num_embeddings %lld and embedding_dim %lld "
                            "must be positive",
                            prefix ? prefix : "", (long long)num_embeddings,
                            (long long)embedding_dim);
    if (nn_set_name(m->name, prefix) != RT_OK)
        return RT_EINVAL;
    m->weight = nn_new_param(P, prefix, "weight", shape, 2, o, INIT_NORMAL, 0.0, 1.0, g);
    if (!m->weight)
        return RT_ERR;
    m->num_embeddings = num_embeddings;
    m->embedding_dim = embedding_dim;
    return RT_OK;
}

rt_tensor *nn_embedding_forward(rt_scope *S, const nn_embedding *m, const rt_tensor *ids) {
    rt_tensor *y;
    if (!ids)
        return NULL;
    if (!m || !m->weight) {
        rt_set_error("nn_embedding_forward: module is NULL or not initialised");
        return NULL;
    }
    y = rt_embedding(S, m->weight, ids); /* [.., dim] */
    if (!y)
        nn_wrap_error("nn_embedding_forward(%s)", m->name);
    return y;
}

/* ------------------------------------------------------------------------ */
/* LayerNorm and RMSNorm                                                     */
/* ------------------------------------------------------------------------ */

int nn_layer_norm_init(nn_layer_norm *m, nn_params *P, const char *prefix, int64_t dim,
                       double eps, rt_opts o) {
    size_t n0 = nn_params_count(P);
    int64_t shape[1] = {dim};
    if (!m || !P)
        return nn_einval("nn_layer_norm_init(%s): %s is NULL", prefix ? prefix : "",
                            !m ? "module" : "registry");
    memset(m, 0, sizeof *m);
    if (dim <= 0)
        return nn_einval("nn_layer_norm_init(%s): dim %lld must be positive",
                            prefix ? prefix : "", (long long)dim);
    if (nn_set_name(m->name, prefix) != RT_OK)
        return RT_EINVAL;
    m->weight = nn_new_param(P, prefix, "weight", shape, 1, o, INIT_ONES, 0, 0, NULL);
    if (m->weight)
        m->bias = nn_new_param(P, prefix, "bias", shape, 1, o, INIT_ZEROS, 0, 0, NULL);
    if (!m->weight || !m->bias) {
        nn_params_truncate(P, n0);
        memset(m, 0, sizeof *m);
        return RT_ERR;
    }
    m->dim = dim;
    m->eps = eps > 0 ? eps : NN_DEFAULT_EPS;
    return RT_OK;
}

rt_tensor *nn_layer_norm_forward(rt_scope *S, const nn_layer_norm *m, const rt_tensor *x) {
    rt_tensor *y;
    if (!x)
        return NULL;
    if (!m || !m->weight) {
        rt_set_error("nn_layer_norm_forward: module is NULL or not initialised");
        return NULL;
    }
    if (!nn_check_last_dim("nn_layer_norm_forward", m->name, x, m->dim))
        return NULL;
    y = rt_layer_norm(S, x, 1, m->weight, m->bias, m->eps); /* [.., dim] */
    if (!y)
        nn_wrap_error("nn_layer_norm_forward(%s)", m->name);
    return y;
}

int nn_rms_norm_init(nn_rms_norm *m, nn_params *P, const char *prefix, int64_t dim, double eps,
                     rt_opts o) {
    int64_t shape[1] = {dim};
    if (!m || !P)
        return nn_einval("nn_rms_norm_init(%s): %s is NULL", prefix ? prefix : "",
                            !m ? "module" : "registry");
    memset(m, 0, sizeof *m);
    if (dim <= 0)
        return nn_einval("nn_rms_norm_init(%s): dim %lld must be positive", prefix ? prefix : "",
                            (long long)dim);
    if (nn_set_name(m->name, prefix) != RT_OK)
        return RT_EINVAL;
    m->weight = nn_new_param(P, prefix, "weight", shape, 1, o, INIT_ONES, 0, 0, NULL);
    if (!m->weight)
        return RT_ERR;
    m->dim = dim;
    m->eps = eps > 0 ? eps : NN_DEFAULT_EPS;
    return RT_OK;
}

rt_tensor *nn_rms_norm_forward(rt_scope *S, const nn_rms_norm *m, const rt_tensor *x) {
    rt_tensor *y;
    if (!x)
        return NULL;
    if (!m || !m->weight) {
        rt_set_error("nn_rms_norm_forward: module is NULL or not initialised");
        return NULL;
    }
    if (!nn_check_last_dim("nn_rms_norm_forward", m->name, x, m->dim))
        return NULL;
    y = rt_rms_norm(S, x, m->weight, m->eps); /* [.., dim] */
    if (!y)
        nn_wrap_error("nn_rms_norm_forward(%s)", m->name);
    return y;
}

/* ------------------------------------------------------------------------ */
/* Causal self-attention                                                     */
/* ------------------------------------------------------------------------ */

int nn_attention_init(nn_attention *m, nn_params *P, const char *prefix, int64_t d_model,
                      int64_t n_heads, int64_t head_dim, int bias, rt_opts o, rt_gen *g) {
    static const char *const leaves[4] = {"q_proj", "k_proj", "v_proj", "o_proj"};
    size_t n0 = nn_params_count(P);
    char sub[NN_NAME_MAX];
    nn_linear *proj[4];
    if (!m || !P || !g)
        return nn_einval("nn_attention_init(%s): %s is NULL", prefix ? prefix : "",
                            !m ? "module" : !P ? "registry" : "generator");
    memset(m, 0, sizeof *m);
    if (d_model <= 0 || n_heads <= 0)
        return nn_einval("nn_attention_init(%s): d_model %lld and n_heads %lld must be positive",
                            prefix ? prefix : "", (long long)d_model, (long long)n_heads);
    if (head_dim <= 0) {
        if (d_model % n_heads != 0)
            return nn_einval("nn_attention_init(%s): d_model %lld is not divisible by n_heads "
                                "%lld (pass head_dim explicitly)",
                                prefix ? prefix : "", (long long)d_model, (long long)n_heads);
        head_dim = d_model / n_heads;
    }
    proj[0] = &m->q_proj;
    proj[1] = &m->k_proj;
    proj[2] = &m->v_proj;
    proj[3] = &m->o_proj;
    for (int i = 0; i < 4; i++) {
        int64_t in = i < 3 ? d_model : n_heads * head_dim;
        int64_t out = i < 3 ? n_heads * head_dim : d_model;
        if (nn_join(sub, sizeof sub, prefix, leaves[i]) != RT_OK ||
            nn_linear_init(proj[i], P, sub, in, out, bias, o, g) != RT_OK)
            goto fail;
    }
    m->d_model = d_model;
    m->n_heads = n_heads;
    m->head_dim = head_dim;
    m->opts = o;
    return RT_OK;
fail:
    nn_params_truncate(P, n0);
    memset(m, 0, sizeof *m);
    return RT_ERR;
}

/* x [B,T,C] -> [B,H,T,D] through one projection. */
static rt_tensor *nn_heads_split(rt_scope *S, const nn_attention *m, const nn_linear *proj,
                                 const rt_tensor *x, int64_t B, int64_t T) {
    int64_t shape[4] = {B, T, m->n_heads, m->head_dim};
    rt_tensor *y = nn_linear_forward(S, proj, x); /* [B,T,H*D] */
    y = rt_view(S, y, shape, 4);                  /* [B,T,H,D] */
    return rt_transpose(S, y, 1, 2);              /* [B,H,T,D] */
}

/* Shared by the full and the cached forwards; cache NULL = full, key_mask
 * NULL = unmasked (the masked entry points refuse a NULL mask first). */
static rt_tensor *nn_attention_run(rt_scope *S, const nn_attention *m, rt_kv_cache *cache,
                                   const rt_tensor *x, const rt_tensor *key_mask, const char *fn) {
    char buf[96];
    int64_t B, T, merged[3];
    rt_tensor *q, *k, *v, *y;
    if (!x)
        return NULL;
    if (!m || !m->q_proj.weight) {
        rt_set_error("%s: module is NULL or not initialised", fn);
        return NULL;
    }
    if (rt_ndim(x) != 3 || rt_size(x, 2) != m->d_model) {
        rt_set_error("%s(%s): input %s must be [B, T, %lld]", fn, m->q_proj.name,
                     rt_shape_str(x, buf, sizeof buf), (long long)m->d_model);
        return NULL;
    }
    B = rt_size(x, 0);
    T = rt_size(x, 1);
    q = nn_heads_split(S, m, &m->q_proj, x, B, T); /* [B,H,T,D] */
    k = nn_heads_split(S, m, &m->k_proj, x, B, T); /* [B,H,T,D] */
    v = nn_heads_split(S, m, &m->v_proj, x, B, T); /* [B,H,T,D] */
    if (!q || !k || !v)
        return NULL;
    if (cache)
        y = key_mask ? rt_causal_attention_cached_masked(S, cache, q, k, v, key_mask, 0.0)
                     : rt_causal_attention_cached(S, cache, q, k, v, 0.0); /* [B,H,T,D] over len+T keys */
    else
        y = key_mask ? rt_causal_attention_masked(S, q, k, v, key_mask, 0.0)
                     : rt_causal_attention(S, q, k, v, 0.0); /* [B,H,T,D] */
    if (!y) {
        nn_wrap_error("%s(%s)", fn, m->q_proj.name);
        return NULL;
    }
    merged[0] = B;
    merged[1] = T;
    merged[2] = m->n_heads * m->head_dim;
    y = rt_transpose(S, y, 1, 2);          /* [B,T,H,D] */
    y = rt_reshape(S, y, merged, 3);       /* [B,T,H*D] */
    return nn_linear_forward(S, &m->o_proj, y); /* [B,T,C] */
}

rt_tensor *nn_attention_forward(rt_scope *S, const nn_attention *m, const rt_tensor *x) {
    return nn_attention_run(S, m, NULL, x, NULL, "nn_attention_forward");
}

/* 1 when the key mask of a masked forward is there; otherwise keeps the
 * earlier message (a failed op upstream) or says it is missing. */
static int nn_have_mask(const char *fn, const rt_tensor *key_mask) {
    if (key_mask)
        return 1;
    if (!rt_last_error()[0])
        rt_set_error("%s: key_mask is NULL (use the unmasked forward when there is no padding)", fn);
    return 0;
}

rt_tensor *nn_attention_forward_masked(rt_scope *S, const nn_attention *m, const rt_tensor *x,
                                       const rt_tensor *key_mask) {
    if (!x || !nn_have_mask("nn_attention_forward_masked", key_mask))
        return NULL;
    return nn_attention_run(S, m, NULL, x, key_mask, "nn_attention_forward_masked");
}

rt_kv_cache *nn_attention_cache_new(const nn_attention *m, int64_t batch, int64_t max_len) {
    rt_kv_cache *c;
    if (!m || !m->q_proj.weight) {
        rt_set_error("nn_attention_cache_new: module is NULL or not initialised");
        return NULL;
    }
    c = rt_kv_cache_new(batch, m->n_heads, max_len, m->head_dim, m->opts);
    if (!c)
        nn_wrap_error("nn_attention_cache_new(%s): batch %lld, max_len %lld", m->q_proj.name,
                      (long long)batch, (long long)max_len);
    return c;
}

rt_tensor *nn_attention_forward_cached(rt_scope *S, const nn_attention *m, rt_kv_cache *cache,
                                       const rt_tensor *x) {
    if (x && !cache) {
        rt_set_error("nn_attention_forward_cached: cache is NULL");
        return NULL;
    }
    return nn_attention_run(S, m, cache, x, NULL, "nn_attention_forward_cached");
}

rt_tensor *nn_attention_forward_cached_masked(rt_scope *S, const nn_attention *m,
                                              rt_kv_cache *cache, const rt_tensor *x,
                                              const rt_tensor *key_mask) {
    if (!x || !nn_have_mask("nn_attention_forward_cached_masked", key_mask))
        return NULL;
    if (!cache) {
        rt_set_error("nn_attention_forward_cached_masked: cache is NULL");
        return NULL;
    }
    return nn_attention_run(S, m, cache, x, key_mask, "nn_attention_forward_cached_masked");
}

/* ------------------------------------------------------------------------ */
/* Pre-norm transformer block                                                */
/* ------------------------------------------------------------------------ */

nn_block_config nn_block_config_default(int64_t d_model, int64_t n_heads) {
    nn_block_config c;
    c.d_model = d_model;
    c.n_heads = n_heads;
    c.head_dim = 0;
    c.mlp_hidden = 4 * d_model;
    c.bias = 1;
    c.act = NN_ACT_GELU_TANH;
    c.ln_eps = NN_DEFAULT_EPS;
    return c;
}

int nn_block_init(nn_block *m, nn_params *P, const char *prefix, const nn_block_config *cfg,
                  rt_opts o, rt_gen *g) {
    size_t n0 = nn_params_count(P);
    char sub[NN_NAME_MAX];
    int64_t hidden;
    if (!m || !P || !cfg || !g)
        return nn_einval("nn_block_init(%s): %s is NULL", prefix ? prefix : "",
                            !m ? "module" : !P ? "registry" : !cfg ? "config" : "generator");
    memset(m, 0, sizeof *m);
    if (!nn_act_valid(cfg->act))
        return nn_einval("nn_block_init(%s): unknown activation %d", prefix ? prefix : "",
                            (int)cfg->act);
    hidden = cfg->mlp_hidden > 0 ? cfg->mlp_hidden : 4 * cfg->d_model;
    if (nn_join(sub, sizeof sub, prefix, "ln_1") != RT_OK ||
        nn_layer_norm_init(&m->ln_1, P, sub, cfg->d_model, cfg->ln_eps, o) != RT_OK)
        goto fail;
    if (nn_join(sub, sizeof sub, prefix, "attn") != RT_OK ||
        nn_attention_init(&m->attn, P, sub, cfg->d_model, cfg->n_heads, cfg->head_dim, cfg->bias, o,
                          g) != RT_OK)
        goto fail;
    if (nn_join(sub, sizeof sub, prefix, "ln_2") != RT_OK ||
        nn_layer_norm_init(&m->ln_2, P, sub, cfg->d_model, cfg->ln_eps, o) != RT_OK)
        goto fail;
    if (nn_join(sub, sizeof sub, prefix, "mlp.fc") != RT_OK ||
        nn_linear_init(&m->fc, P, sub, cfg->d_model, hidden, cfg->bias, o, g) != RT_OK)
        goto fail;
    if (nn_join(sub, sizeof sub, prefix, "mlp.proj") != RT_OK ||
        nn_linear_init(&m->proj, P, sub, hidden, cfg->d_model, cfg->bias, o, g) != RT_OK)
        goto fail;
    m->act = cfg->act;
    return RT_OK;
fail:
    nn_params_truncate(P, n0);
    memset(m, 0, sizeof *m);
    return RT_ERR;
}

/* Shared by the full and the cached forwards; cache NULL = full, key_mask
 * NULL = unmasked. */
static rt_tensor *nn_block_run(rt_scope *S, const nn_block *m, rt_kv_cache *cache,
                               const rt_tensor *x, const rt_tensor *key_mask) {
    rt_tensor *a, *h, *f;
    if (!x)
        return NULL;
    if (!m || !m->ln_1.weight) {
        rt_set_error("nn_block_forward: module is NULL or not initialised");
        return NULL;
    }
    a = nn_layer_norm_forward(S, &m->ln_1, x); /* [B,T,C] */
    a = nn_attention_run(S, &m->attn, cache, a, key_mask,
                         cache ? (key_mask ? "nn_attention_forward_cached_masked"
                                           : "nn_attention_forward_cached")
                               : (key_mask ? "nn_attention_forward_masked"
                                           : "nn_attention_forward")); /* [B,T,C] */
    h = rt_add(S, x, a);                              /* [B,T,C] residual */
    f = nn_layer_norm_forward(S, &m->ln_2, h);        /* [B,T,C] */
    f = nn_linear_forward(S, &m->fc, f);              /* [B,T,hidden] */
    f = nn_act_forward(S, m->act, f);                 /* [B,T,hidden] */
    f = nn_linear_forward(S, &m->proj, f);            /* [B,T,C] */
    return rt_add(S, h, f);                           /* [B,T,C] residual */
}

rt_tensor *nn_block_forward(rt_scope *S, const nn_block *m, const rt_tensor *x) {
    return nn_block_run(S, m, NULL, x, NULL);
}

rt_tensor *nn_block_forward_masked(rt_scope *S, const nn_block *m, const rt_tensor *x,
                                   const rt_tensor *key_mask) {
    if (!x || !nn_have_mask("nn_block_forward_masked", key_mask))
        return NULL;
    return nn_block_run(S, m, NULL, x, key_mask);
}

rt_tensor *nn_block_forward_cached(rt_scope *S, const nn_block *m, rt_kv_cache *cache,
                                   const rt_tensor *x) {
    if (x && !cache) {
        rt_set_error("nn_block_forward_cached: cache is NULL");
        return NULL;
    }
    return nn_block_run(S, m, cache, x, NULL);
}

rt_tensor *nn_block_forward_cached_masked(rt_scope *S, const nn_block *m, rt_kv_cache *cache,
                                          const rt_tensor *x, const rt_tensor *key_mask) {
    if (!x || !nn_have_mask("nn_block_forward_cached_masked", key_mask))
        return NULL;
    if (!cache) {
        rt_set_error("nn_block_forward_cached_masked: cache is NULL");
        return NULL;
    }
    return nn_block_run(S, m, cache, x, key_mask);
}
