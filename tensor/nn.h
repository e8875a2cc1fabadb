/*
 * nn.h -- small neural-network building blocks in plain C over tensor.h:
 * a named parameter registry, Linear, MLP, Embedding, LayerNorm, RMSNorm,
 * causal self-attention (with a KV-cache decoding path and key-masked forms
 * for left-padded batches) and a pre-norm transformer block, so that the models rlt needs (an MLP for SAC and
 * knowledge distillation, a small GPT) are a few lines each.
 *
 * Conventions (they hold for every module below):
 *
 *   Registry.  Every parameter lives in an nn_params registry under its
 *              PyTorch state_dict name ("layers.0.attn.q_proj.weight"). The
 *              registry owns the tensor handles (caller-owned, scope NULL) and
 *              frees them in nn_params_free(). Its name and tensor arrays feed
 *              rt_optim_new() and checkpoints directly:
 *                  rt_optim_new(RT_ADAM, nn_params_tensors(P),
 *                               nn_params_names(P), nn_params_count(P), &o);
 *
 *   Modules.   A module is a plain struct of borrowed pointers into the
 *              registry plus its sizes; it needs no destructor. An init
 *              function creates the module's parameters under `prefix`
 *              (NULL or "" = no prefix; otherwise names are "prefix.leaf"),
 *              draws them from the explicit generator g, marks them
 *              requires_grad, and returns 0 or a negative rt_status with
 *              rt_last_error() naming the parameter and the reason. On failure
 *              the registry is left exactly as it was (no half-built module).
 *              The module is valid while the registry lives.
 *
 *   Forwards.  Every forward takes (rt_scope *S, module, inputs) and returns
 *              a new handle owned by S (intermediates also go to S), or NULL
 *              with rt_last_error() set; a NULL input gives NULL and keeps the
 *              earlier message, like every rt_ op. Inputs must have the
 *              parameters' dtype and device.
 *
 *   Init.      Like torch.nn defaults, drawn in the same order torch draws
 *              them: Linear weight then bias, both U(-1/sqrt(in), 1/sqrt(in));
 *              Embedding N(0, 1); norm weights ones, biases zeros. A model
 *              built here from rt_gen_new(seed) starts from the same numbers
 *              as its PyTorch twin built after torch.manual_seed(seed) with
 *              its modules created in the same order (tests/nn checks this
 *              for an MLP, an Embedding and a transformer block).
 *
 *   Dropout.   None. Every module is dropout-free (the RL and preference
 *              losses here are trained without it); a model that wants it
 *              calls rt_dropout() between modules.
 */
#ifndef RLT_NN_H
#define RLT_NN_H

#include <stddef.h>
#include <stdint.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NN_NAME_MAX 256      /* longest parameter name, with its NUL        */
#define NN_MLP_MAX_LAYERS 16 /* Linear layers in one nn_mlp                 */
#define NN_DEFAULT_EPS 1e-5  /* LayerNorm / RMSNorm eps when given eps <= 0 */

/* ------------------------------------------------------------------------ */
/* Parameter registry                                                        */
/* ------------------------------------------------------------------------ */

typedef struct nn_params nn_params;

nn_params *nn_params_new(void);
/* Frees every parameter handle and the registry. NULL-safe. */
void nn_params_free(nn_params *P);
/* Register t under `name` (unique). The registry takes ownership of t in every
 * case (t is taken out of its scope if it has one); on failure (duplicate,
 * empty or too-long name, t NULL) t is freed, so
 * `nn_params_add(P, "w", rt_zeros(NULL, ...))` needs no cleanup.
 * Returns 0 or a negative rt_status. */
int nn_params_add(nn_params *P, const char *name, rt_tensor *t);
size_t nn_params_count(const nn_params *P);
/* Sum of the parameters' element counts. */
int64_t nn_params_numel(const nn_params *P);
/* The i-th name / tensor in registration order (NULL when out of range). */
const char *nn_params_name(const nn_params *P, size_t i);
rt_tensor *nn_params_tensor(const nn_params *P, size_t i);
/* The tensor registered under name, or NULL (rt_last_error says so). */
rt_tensor *nn_params_get(const nn_params *P, const char *name);
/* Index of name, or -1. */
int64_t nn_params_index(const nn_params *P, const char *name);
/* Parallel arrays of length nn_params_count() (for rt_optim_new, checkpoints,
 * rt_clip_grad_norm). Valid until the next nn_params_add(). */
rt_tensor *const *nn_params_tensors(const nn_params *P);
const char *const *nn_params_names(const nn_params *P);
/* requires_grad on/off for every parameter (freeze a reference model). */
int nn_params_set_requires_grad(nn_params *P, int on);
/* In place, under no-grad: dst[i] <- src[i] (copy) or dst[i] <- dst[i] +
 * tau * (src[i] - dst[i]) (Polyak averaging of a SAC target network). The
 * registries must have the same count and shapes, position by position;
 * names may differ (e.g. "q1." versus "q1_target."). */
int nn_params_copy_(nn_params *dst, const nn_params *src);
int nn_params_lerp_(nn_params *dst, const nn_params *src, double tau);

/* ------------------------------------------------------------------------ */
/* Activations                                                               */
/* ------------------------------------------------------------------------ */

typedef enum nn_act {
    NN_ACT_NONE = 0, /* identity                                  */
    NN_ACT_RELU = 1,
    NN_ACT_TANH = 2,
    NN_ACT_GELU = 3,      /* exact erf GELU (torch.nn.GELU())           */
    NN_ACT_GELU_TANH = 4, /* tanh approximation (GELU(approximate='tanh'), GPT-2) */
    NN_ACT_SILU = 5
} nn_act;

/* "none", "relu", "tanh", "gelu", "gelu_tanh", "silu". */
const char *nn_act_name(nn_act a);
/* Parse a name as above; returns 0 and sets *out, or RT_EINVAL listing the
 * valid names. */
int nn_act_from_name(const char *name, nn_act *out);
/* a(x), same shape as x. */
rt_tensor *nn_act_forward(rt_scope *S, nn_act a, const rt_tensor *x);

/* ------------------------------------------------------------------------ */
/* Linear: y = x W^T + b                                                     */
/* ------------------------------------------------------------------------ */

typedef struct nn_linear {
    rt_tensor *weight; /* [out, in]  "prefix.weight"              */
    rt_tensor *bias;   /* [out]      "prefix.bias", NULL if none  */
    int64_t in_features, out_features;
    char name[NN_NAME_MAX]; /* prefix, for error messages */
} nn_linear;

/* torch.nn.Linear(in, out, bias): weight then bias ~ U(-1/sqrt(in), 1/sqrt(in)). */
int nn_linear_init(nn_linear *m, nn_params *P, const char *prefix, int64_t in_features,
                          int64_t out_features, int bias, rt_opts o, rt_gen *g);
/* x [.., in] -> [.., out]. */
rt_tensor *nn_linear_forward(rt_scope *S, const nn_linear *m, const rt_tensor *x);

/* ------------------------------------------------------------------------ */
/* MLP: Linear, act, Linear, act, ..., Linear[, out_act]                     */
/* ------------------------------------------------------------------------ */

/* Naming follows nn.Sequential, so the state_dict loads into
 *     nn.Sequential(nn.Linear(w0, w1), Act(), nn.Linear(w1, w2), Act(), ...,
 *                   nn.Linear(w[n-2], w[n-1])[, OutAct()])
 * with strict=True: Linear layer i is Sequential index 2*i, so its parameters
 * are "prefix.{2i}.weight" and "prefix.{2i}.bias" (activations own no
 * parameters but take the odd indices). With prefix "actor.net" the names
 * match a PyTorch module whose attribute `net` of submodule `actor` is that
 * Sequential. Every Linear has a bias. */
typedef struct nn_mlp {
    int n_layers; /* Linear layers = number of widths - 1 */
    nn_linear layers[NN_MLP_MAX_LAYERS];
    nn_act act;     /* between layers          */
    nn_act out_act; /* after the last layer (NN_ACT_NONE: raw output) */
} nn_mlp;

/* widths[0] = input size, widths[n_widths-1] = output size; 2 <= n_widths <=
 * NN_MLP_MAX_LAYERS + 1. Layers are initialised in order, like Sequential. */
int nn_mlp_init(nn_mlp *m, nn_params *P, const char *prefix, const int64_t *widths,
                       int n_widths, nn_act act, nn_act out_act, rt_opts o, rt_gen *g);
/* x [.., widths[0]] -> [.., widths[n-1]]. */
rt_tensor *nn_mlp_forward(rt_scope *S, const nn_mlp *m, const rt_tensor *x);

/* ------------------------------------------------------------------------ */
/* Embedding                                                                 */
/* ------------------------------------------------------------------------ */

typedef struct nn_embedding {
    rt_tensor *weight; /* [num, dim]  "prefix.weight", N(0,1) */
    int64_t num_embeddings, embedding_dim;
    char name[NN_NAME_MAX];
} nn_embedding;

int nn_embedding_init(nn_embedding *m, nn_params *P, const char *prefix,
                             int64_t num_embeddings, int64_t embedding_dim, rt_opts o, rt_gen *g);
/* ids int64 [..] in [0, num) -> [.., dim]. */
rt_tensor *nn_embedding_forward(rt_scope *S, const nn_embedding *m, const rt_tensor *ids);

/* ------------------------------------------------------------------------ */
/* LayerNorm and RMSNorm over the last dimension                             */
/* ------------------------------------------------------------------------ */

typedef struct nn_layer_norm {
    rt_tensor *weight; /* [dim] ones   "prefix.weight" */
    rt_tensor *bias;   /* [dim] zeros  "prefix.bias"   */
    int64_t dim;
    double eps; /* eps <= 0 at init -> NN_DEFAULT_EPS (torch's 1e-5) */
    char name[NN_NAME_MAX];
} nn_layer_norm;

int nn_layer_norm_init(nn_layer_norm *m, nn_params *P, const char *prefix, int64_t dim,
                              double eps, rt_opts o);
/* x [.., dim] -> [.., dim]: (x - mean) / sqrt(var + eps) * weight + bias, with
 * the population variance, like torch.nn.LayerNorm(dim, eps). */
rt_tensor *nn_layer_norm_forward(rt_scope *S, const nn_layer_norm *m, const rt_tensor *x);

typedef struct nn_rms_norm {
    rt_tensor *weight; /* [dim] ones  "prefix.weight" */
    int64_t dim;
    double eps; /* eps <= 0 at init -> NN_DEFAULT_EPS */
    char name[NN_NAME_MAX];
} nn_rms_norm;

int nn_rms_norm_init(nn_rms_norm *m, nn_params *P, const char *prefix, int64_t dim,
                            double eps, rt_opts o);
/* x [.., dim] -> [.., dim]: x / sqrt(mean(x^2) + eps) * weight
 * (torch.nn.RMSNorm(dim, eps) of torch >= 2.4; LLaMA's RMSNorm). */
rt_tensor *nn_rms_norm_forward(rt_scope *S, const nn_rms_norm *m, const rt_tensor *x);

/* ------------------------------------------------------------------------ */
/* Causal self-attention                                                     */
/* ------------------------------------------------------------------------ */

/* Multi-head causal self-attention with separate projections:
 *   "prefix.q_proj.weight" [H*D, C]   "prefix.k_proj.weight" [H*D, C]
 *   "prefix.v_proj.weight" [H*D, C]   "prefix.o_proj.weight" [C, H*D]
 * plus ".bias" of each when bias is on. Scores are scaled by 1/sqrt(D). The
 * module adds no positional information: the model does (learned position
 * embeddings for a GPT). */
typedef struct nn_attention {
    nn_linear q_proj, k_proj, v_proj, o_proj;
    int64_t d_model;  /* C */
    int64_t n_heads;  /* H */
    int64_t head_dim; /* D */
    rt_opts opts;     /* of the parameters, for caches */
} nn_attention;

/* head_dim <= 0 means d_model / n_heads (which must then divide exactly).
 * Projections are initialised in the order q, k, v, o. */
int nn_attention_init(nn_attention *m, nn_params *P, const char *prefix, int64_t d_model,
                             int64_t n_heads, int64_t head_dim, int bias, rt_opts o, rt_gen *g);
/* Full causal forward: x [B,T,C] -> [B,T,C]; position t sees 0..t. */
rt_tensor *nn_attention_forward(rt_scope *S, const nn_attention *m, const rt_tensor *x);
/* A KV cache sized for this module: [batch, H, max_len, D] keys and values,
 * in the parameters' dtype and device. Free with rt_kv_cache_free(). */
rt_kv_cache *nn_attention_cache_new(const nn_attention *m, int64_t batch, int64_t max_len);
/* Incremental forward: x [B,T,C] holds the next T positions (T = 1 when
 * decoding token by token, or the whole prompt at once); their keys and values
 * are appended to `cache` and the queries attend over everything cached, so
 * position i of x sits at absolute position len_before + i. Returns [B,T,C],
 * equal (to rounding) to the matching rows of the full forward over the whole
 * sequence. Fails (NULL) when the cache would overflow its max_len. The cache
 * stores keys and values without autograd history (it is for sampling): train
 * with the full forward. */
rt_tensor *nn_attention_forward_cached(rt_scope *S, const nn_attention *m,
                                              rt_kv_cache *cache, const rt_tensor *x);
/* Masked forms for left-padded batches (tensor.h's padding convention):
 * key_mask marks the real positions (nonzero = real) and no query attends to
 * a masked key; a query with no visible key (a pad position at the left edge)
 * gets a zero attention output, never NaN. key_mask is required here (NULL ->
 * NULL); call the unmasked forms when there is no padding.
 *   full:    x [B,T,C], key_mask [B,T]
 *   cached:  x [B,T,C] (the next T positions), key_mask [B, len+T] covering
 *            the cached positions and the new ones (len = rt_kv_cache_len
 *            before the call). */
rt_tensor *nn_attention_forward_masked(rt_scope *S, const nn_attention *m, const rt_tensor *x,
                                       const rt_tensor *key_mask);
rt_tensor *nn_attention_forward_cached_masked(rt_scope *S, const nn_attention *m,
                                              rt_kv_cache *cache, const rt_tensor *x,
                                              const rt_tensor *key_mask);

/* ------------------------------------------------------------------------ */
/* Pre-norm transformer block (GPT-2 layout)                                 */
/* ------------------------------------------------------------------------ */

/*   h   = x + attn(ln_1(x))
 *   out = h + mlp.proj(act(mlp.fc(ln_2(h))))
 * Parameter names under prefix (e.g. "layers.3"):
 *   ln_1.weight ln_1.bias  attn.{q,k,v,o}_proj.weight[/bias]
 *   ln_2.weight ln_2.bias  mlp.fc.weight[/bias] [hidden, C]
 *   mlp.proj.weight[/bias] [C, hidden]
 * A GPT is token + position embeddings, a stack of blocks under "layers.{i}",
 * a final LayerNorm and a head. */
typedef struct nn_block_config {
    int64_t d_model;    /* C                                          */
    int64_t n_heads;    /* H                                          */
    int64_t head_dim;   /* D; <= 0 -> d_model / n_heads              */
    int64_t mlp_hidden; /* <= 0 -> 4 * d_model                       */
    int bias;           /* Linear biases (GPT-2: 1)                   */
    nn_act act;         /* MLP activation (GPT-2: NN_ACT_GELU_TANH)   */
    double ln_eps;      /* <= 0 -> NN_DEFAULT_EPS                     */
} nn_block_config;

/* GPT-2's choices for the given width and heads: bias on, tanh GELU, 4x MLP,
 * eps 1e-5. */
nn_block_config nn_block_config_default(int64_t d_model, int64_t n_heads);

typedef struct nn_block {
    nn_layer_norm ln_1;
    nn_attention attn;
    nn_layer_norm ln_2;
    nn_linear fc;   /* "prefix.mlp.fc"   */
    nn_linear proj; /* "prefix.mlp.proj" */
    nn_act act;
} nn_block;

/* Parameters are created in the order ln_1, attn (q, k, v, o), ln_2, fc, proj. */
int nn_block_init(nn_block *m, nn_params *P, const char *prefix, const nn_block_config *cfg,
                         rt_opts o, rt_gen *g);
/* x [B,T,C] -> [B,T,C]. */
rt_tensor *nn_block_forward(rt_scope *S, const nn_block *m, const rt_tensor *x);
/* Incremental forward through this block's cache (nn_attention_cache_new(
 * &m->attn, ...)); x [B,T,C] are the next T positions -> [B,T,C]. */
rt_tensor *nn_block_forward_cached(rt_scope *S, const nn_block *m, rt_kv_cache *cache,
                                          const rt_tensor *x);
/* The same with a key mask (see nn_attention_forward_masked): key_mask [B,T]
 * for the full forward, [B, len+T] for the cached one. Only attention reads
 * the mask; every other part of the block is per position. */
rt_tensor *nn_block_forward_masked(rt_scope *S, const nn_block *m, const rt_tensor *x,
                                   const rt_tensor *key_mask);
rt_tensor *nn_block_forward_cached_masked(rt_scope *S, const nn_block *m, rt_kv_cache *cache,
                                          const rt_tensor *x, const rt_tensor *key_mask);

#ifdef __cplusplus
}
#endif
#endif /* RLT_NN_H */
