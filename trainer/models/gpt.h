/*
 * gpt.h -- a small decoder-only transformer (GPT-2 layout) for rlt's sequence
 * policies: token and learned position embeddings, n_layer pre-norm blocks
 * (tensor/nn.h's nn_block: LayerNorm, causal self-attention, tanh-GELU MLP),
 * a final LayerNorm and a language-model head tied to the token table (or
 * not). It runs a training forward over token ids or over input embeddings
 * (SofT-GRPO's mixed soft-token inputs), and an incremental forward through a
 * KV cache for sampling.
 *
 * Padding (tensor.h's convention, as HF/TRL): prompts are LEFT-padded, a mask
 * [B,T] marks the real tokens (any dtype, nonzero = real; NULL = all real),
 * position ids are max(cumsum(mask) - 1, 0), and attention never looks at a
 * masked key. Outputs at pad positions are finite and meaningless; losses
 * mask them out.
 *
 * State dict (PyTorch names, so a checkpoint maps 1:1 to a state_dict):
 *   tok_emb.weight [V,C]   pos_emb.weight [context,C]
 *   layers.{i}.ln_1.weight/.bias, layers.{i}.attn.{q,k,v,o}_proj.weight/.bias,
 *   layers.{i}.ln_2.weight/.bias, layers.{i}.mlp.fc.weight/.bias [H,C]/[H],
 *   layers.{i}.mlp.proj.weight/.bias [C,H]/[C]
 *   ln_f.weight ln_f.bias [C]   lm_head.weight [V,C] (only when untied)
 * The PyTorch twin (tests/gpt/gpt_reference.py) is
 *   x = tok_emb(ids) + pos_emb(pos); x = block(x) for each layer;
 *   logits = ln_f(x) @ (tok_emb.weight if tied else lm_head.weight).T
 *
 * Errors: functions returning a handle return NULL and functions returning int
 * a negative rt_status, with rt_last_error() naming the function, the
 * argument or parameter, its shape and the reason. A NULL tensor input gives
 * NULL and keeps the earlier message, like every rt_ op (the mask is the one
 * argument where NULL has a meaning).
 */
#ifndef RLT_GPT_H
#define RLT_GPT_H

#include <stddef.h>
#include <stdint.h>

#include "nn.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gpt_config {
    int64_t vocab;      /* V                                              64 */
    int64_t context;    /* longest sequence (position embeddings)        128 */
    int64_t n_layer;    /* blocks                                          4 */
    int64_t n_head;     /* attention heads (must divide d_model)           4 */
    int64_t d_model;    /* C                                             128 */
    int64_t mlp_hidden; /* MLP width; <= 0 -> 4 * d_model                  0 */
    int tie_embeddings; /* 1: the head is tok_emb.weight                   1 */
} gpt_config;

/* 4 layers, 128 wide, 4 heads, context 128, vocab 64, 4x MLP, tied head. */
gpt_config gpt_config_default(void);
/* RT_OK, or RT_EINVAL with a message in err (errlen bytes; err may be NULL)
 * and in rt_last_error() naming the field, its value and the rule. */
int gpt_config_check(const gpt_config *c, char *err, size_t errlen);

typedef struct gpt gpt;

/* A new model with GPT-2's initialisation, drawn from g in parameter order:
 * Linear weights and both embeddings N(0, 0.02), the residual projections
 * (attn.o_proj.weight, mlp.proj.weight) N(0, 0.02/sqrt(2*n_layer)), biases 0,
 * LayerNorms 1 and 0. o gives dtype and device (float32 or float64). Every
 * parameter requires grad. Returns RT_OK and *out, or an error (*out NULL). */
int gpt_new(const gpt_config *c, rt_opts o, rt_gen *g, gpt **out);
void gpt_free(gpt *m); /* NULL-safe */
/* The config the model was built with (mlp_hidden resolved to its width). */
const gpt_config *gpt_get_config(const gpt *m);
/* The registry (state_dict names above): feed it to rt_optim_new, checkpoints,
 * nn_params_copy_ (reference models). Owned by the model. */
nn_params *gpt_params(gpt *m);
/* tok_emb.weight [V,C] (borrowed): the table soft inputs are mixed from. */
rt_tensor *gpt_token_table(const gpt *m);
/* The options (dtype, device) the parameters were made with. */
rt_opts gpt_opts(const gpt *m);

/* Training forward: ids [B,T] int64, mask [B,T] (NULL = all real) -> logits
 * [B,T,V] in the parameters' dtype, differentiable in every parameter. T and
 * every position id must be < context. Intermediates are freed on return (the
 * autograd graph keeps what backward needs); only the logits go to S. */
rt_tensor *gpt_forward(rt_scope *S, const gpt *m, const rt_tensor *ids, const rt_tensor *mask);
/* The same from input embeddings [B,T,C] (position embeddings are added
 * inside). Differentiable in the embeddings too, unless they are detached. */
rt_tensor *gpt_forward_embeds(rt_scope *S, const gpt *m, const rt_tensor *embeds,
                              const rt_tensor *mask);

/* The final LayerNorm's output [B,T,C] -- what the head reads: gpt_forward
 * without the head (logits = hidden @ head^T). Differentiable the same way.
 * For features of a sequence (BCO's prompt embeddings). */
rt_tensor *gpt_forward_hidden(rt_scope *S, const gpt *m, const rt_tensor *ids, const rt_tensor *mask);

/* ---- Incremental decoding ---- */

typedef struct gpt_cache gpt_cache;

/* A KV cache for `batch` rows and up to max_len positions (max_len <= 0:
 * the model's context), one per layer, in the model's dtype, allocated
 * without filling (positions not yet cached are never read). It stays tied
 * to m's shapes (any model with the same config can use it). */
gpt_cache *gpt_cache_new(const gpt *m, int64_t batch, int64_t max_len);
void gpt_cache_free(gpt_cache *c); /* NULL-safe */
/* Forget everything cached (keeps the buffers); also clears a cache that a
 * failed call left unusable. */
void gpt_cache_reset(gpt_cache *c);
/* Positions cached so far (-1 for NULL). */
int64_t gpt_cache_len(const gpt_cache *c);
int64_t gpt_cache_max_len(const gpt_cache *c);

/* The next t positions: ids [B,t] int64 (or embeds [B,t,C]) with mask_all
 * [B, len+t] -- the mask of everything cached so far plus these (NULL =
 * every position real) -> logits [B,t,V]. Positions continue from the cache:
 * the new positions' ids are max(cumsum(mask_all) - 1, 0) at columns
 * len..len+t-1 (len..len+t-1 themselves without a mask). Equal, to rounding,
 * to the matching rows of gpt_forward over the whole sequence. Runs in an
 * inference region (no autograd; sampling only) and appends the new keys and
 * values to c. Fails without touching c when the shapes are wrong or the
 * cache would overflow; a failure inside the layers leaves c unusable until
 * gpt_cache_reset (the message says so). The cached path packs each layer's
 * q, k and v projections into one matmul; the packed weights are taken from
 * m when the cache is empty (the first call after gpt_cache_new or
 * gpt_cache_reset), so parameter updates between sequences are seen, and a
 * sequence is decoded with the weights it started with. */
rt_tensor *gpt_forward_cached(rt_scope *S, const gpt *m, gpt_cache *c, const rt_tensor *ids,
                              const rt_tensor *mask_all);
rt_tensor *gpt_forward_cached_embeds(rt_scope *S, const gpt *m, gpt_cache *c,
                                     const rt_tensor *embeds, const rt_tensor *mask_all);

#ifdef __cplusplus
}
#endif
#endif /* RLT_GPT_H */
