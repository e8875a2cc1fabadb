/*
 * np_rng.h -- numpy's seeding chain in portable C, so that an environment
 * plugin reset with seed s draws exactly the numbers Gymnasium draws from
 * np.random.Generator(np.random.PCG64(np.random.SeedSequence(s))).
 *
 * Three pieces (specs/sac_envs.md §3.0, constants of numpy's
 * bit_generator.pyx and pcg64.h):
 *   - SeedSequence: hash the entropy words into a 4-word pool, then
 *     generate_state() expands the pool into any number of uint32 words;
 *   - PCG64 (XSL-RR 128/64): seeded from 8 such words as numpy does;
 *   - Generator.uniform(low, high) = low + (high - low) * U with
 *     U = (next64 >> 11) * 2^-53. Compile users with -ffp-contract=off so the
 *     multiply-add is not fused and the result matches numpy bit for bit.
 *
 * Header-only, static inline, no global state: each environment owns an
 * nprng. The 128-bit arithmetic is done on two uint64 halves (ISO C has no
 * 128-bit integer), which only costs time in reset, never in step.
 */
#ifndef RLT_NP_RNG_H
#define RLT_NP_RNG_H

#include <stddef.h>
#include <stdint.h>

/* A PCG64 generator: 128-bit state and increment as (hi, lo) halves. The
 * struct is four uint64 with no padding, so it can be copied into a state
 * buffer as is. */
typedef struct nprng {
    uint64_t state_hi, state_lo;
    uint64_t inc_hi, inc_lo;
} nprng;

/* SeedSequence constants (numpy bit_generator.pyx). */
#define NPRNG_POOL_SIZE 4
#define NPRNG_INIT_A 0x43b0d7e5u
#define NPRNG_MULT_A 0x931e8875u
#define NPRNG_INIT_B 0x8b51f9ddu
#define NPRNG_MULT_B 0x58f38dedu
#define NPRNG_MIX_MULT_L 0xca01f9ddu
#define NPRNG_MIX_MULT_R 0x4973f715u
#define NPRNG_XSHIFT 16

/* PCG64's default 128-bit multiplier, 0x2360ED051FC65DA44385DF649FCCF645. */
#define NPRNG_MULT_HI 0x2360ED051FC65DA4ull
#define NPRNG_MULT_LO 0x4385DF649FCCF645ull

static inline uint32_t nprng_hashmix_(uint32_t value, uint32_t *hash_const)
{
    value ^= *hash_const;
    *hash_const *= NPRNG_MULT_A;
    value *= *hash_const;
    value ^= value >> NPRNG_XSHIFT;
    return value;
}

static inline uint32_t nprng_mix_(uint32_t x, uint32_t y)
{
    uint32_t r = NPRNG_MIX_MULT_L * x - NPRNG_MIX_MULT_R * y;
    r ^= r >> NPRNG_XSHIFT;
    return r;
}

/* SeedSequence(entropy).generate_state(nwords, uint32) into out[nwords].
 * entropy[n_entropy] are the little-endian uint32 words of the seed (numpy
 * turns the int 0 into the single word 0, so n_entropy >= 1 for an int). */
static inline void nprng_seedseq_generate(const uint32_t *entropy, size_t n_entropy, uint32_t *out,
                                          size_t nwords)
{
    uint32_t pool[NPRNG_POOL_SIZE];
    uint32_t hc = NPRNG_INIT_A;
    for (size_t i = 0; i < NPRNG_POOL_SIZE; i++)
        pool[i] = nprng_hashmix_(i < n_entropy ? entropy[i] : 0u, &hc);
    for (size_t src = 0; src < NPRNG_POOL_SIZE; src++)
        for (size_t dst = 0; dst < NPRNG_POOL_SIZE; dst++)
            if (src != dst)
                pool[dst] = nprng_mix_(pool[dst], nprng_hashmix_(pool[src], &hc));
    for (size_t src = NPRNG_POOL_SIZE; src < n_entropy; src++)
        for (size_t dst = 0; dst < NPRNG_POOL_SIZE; dst++)
            pool[dst] = nprng_mix_(pool[dst], nprng_hashmix_(entropy[src], &hc));

    uint32_t hb = NPRNG_INIT_B;
    for (size_t i = 0; i < nwords; i++) {
        uint32_t d = pool[i % NPRNG_POOL_SIZE];
        d ^= hb;
        hb *= NPRNG_MULT_B;
        d *= hb;
        d ^= d >> NPRNG_XSHIFT;
        out[i] = d;
    }
}

/* Full 64x64 -> 128-bit product as (hi, lo). */
static inline void nprng_mul64_(uint64_t a, uint64_t b, uint64_t *hi, uint64_t *lo)
{
    uint64_t a0 = a & 0xffffffffu, a1 = a >> 32, b0 = b & 0xffffffffu, b1 = b >> 32;
    uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    uint64_t mid = (p00 >> 32) + (p01 & 0xffffffffu) + (p10 & 0xffffffffu);
    *lo = (mid << 32) | (p00 & 0xffffffffu);
    *hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
}

/* state = state * MULT + inc (mod 2^128): one LCG step. */
static inline void nprng_step_(nprng *r)
{
    uint64_t hi, lo;
    nprng_mul64_(r->state_lo, NPRNG_MULT_LO, &hi, &lo);
    hi += r->state_hi * NPRNG_MULT_LO + r->state_lo * NPRNG_MULT_HI;
    uint64_t sum_lo = lo + r->inc_lo;
    hi += r->inc_hi + (sum_lo < lo);
    r->state_hi = hi;
    r->state_lo = sum_lo;
}

/* PCG64 seeded as numpy does from a SeedSequence: 8 words -> 4 uint64
 * (little-endian pairs) -> initstate = u[0]:u[1], initseq = u[2]:u[3]. */
static inline void nprng_seed_entropy(nprng *r, const uint32_t *entropy, size_t n_entropy)
{
    uint32_t w[8];
    uint64_t u[4];
    nprng_seedseq_generate(entropy, n_entropy, w, 8);
    for (int k = 0; k < 4; k++)
        u[k] = (uint64_t)w[2 * k] | ((uint64_t)w[2 * k + 1] << 32);
    /* pcg_setseq_128_srandom_r: inc = initseq << 1 | 1; step; += initstate; step. */
    r->inc_hi = (u[2] << 1) | (u[3] >> 63);
    r->inc_lo = (u[3] << 1) | 1u;
    r->state_hi = 0;
    r->state_lo = 0;
    nprng_step_(r);
    uint64_t lo = r->state_lo + u[1];
    r->state_hi += u[0] + (lo < u[1]);
    r->state_lo = lo;
    nprng_step_(r);
}

/* PCG64(SeedSequence(seed)) for a non-negative integer seed, as Gymnasium's
 * reset(seed=seed) creates it. */
static inline void nprng_seed(nprng *r, uint64_t seed)
{
    uint32_t entropy[2] = {(uint32_t)(seed & 0xffffffffu), (uint32_t)(seed >> 32)};
    nprng_seed_entropy(r, entropy, seed >> 32 ? 2u : 1u);
}

/* The next 64 random bits (XSL-RR output of the advanced state). */
static inline uint64_t nprng_next64(nprng *r)
{
    nprng_step_(r);
    uint64_t x = r->state_hi ^ r->state_lo;
    unsigned rot = (unsigned)(r->state_hi >> 58);
    return (x >> rot) | (x << ((64u - rot) & 63u));
}

/* A double in [0, 1) with 53 random bits (numpy next_double). */
static inline double nprng_double(nprng *r)
{
    return (double)(nprng_next64(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* Generator.uniform(low, high) for one value. */
static inline double nprng_uniform(nprng *r, double low, double high)
{
    double range = high - low;
    return low + range * nprng_double(r);
}

#endif /* RLT_NP_RNG_H */
