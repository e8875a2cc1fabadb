/*
 * arithmetic.c -- the "arithmetic" text task: add or multiply two decimal
 * numbers (TinyZero's multiply task, sac_envs.md §5.1, with addition and a
 * scratchpad for a tiny character-level model).
 *
 * Prompt: "47+85=" or "23*45=" (operands in the usual order).
 * Demonstration: ENV_THINK_BEGIN scratchpad ENV_THINK_END answer, e.g.
 *
 *     47+85=  ->  <think>7+5=12,4+8+1=13</think>132
 *     23*45=  ->  <think>23*5=115,23*4=92</think>1035
 *
 * The addition scratchpad walks the columns from the least significant one:
 * "x+y=s" with the column's digits (0 past the end of the shorter operand),
 * "+1" when a carry comes in, and the column sum s. The multiplication
 * scratchpad lists the first operand times each digit of the second, least
 * significant digit first. scratchpad=0 leaves the think segment empty.
 *
 * reverse_answer=1 writes the answer least significant digit first
 * ("132" -> "231"), and so the partial products of the multiplication
 * scratchpad; the answer is then scored in that order. A small model
 * trained from scratch learns this order much more easily: each digit then
 * depends only on digits it has already seen (the column and the carry).
 *
 * Config (all optional):
 *   op             add | mul | mix (each item picks add or mul)   default add
 *   min_digits     operand digit count, lower bound, 1..9         default 1
 *   max_digits     operand digit count, upper bound, 1..9         default 3 for
 *                  add, 2 for mul and mix (never below min_digits)
 *   reverse_answer 0 | 1                                          default 0
 *   scratchpad     0 | 1                                          default 1
 *   partial        score of a well-formed wrong answer, [0, 1]     default 0.1
 * Each operand draws its digit count uniformly in [min_digits, max_digits],
 * then a number with exactly that many digits (0..9 for one digit).
 *
 * Score: the answer (after the last ENV_THINK_END, blanks trimmed) must be
 * decimal digits only. Its value equal to the truth (leading zeros allowed,
 * as TinyZero's int() allows them; in reverse_answer mode trailing ones) is
 * 1.0; any other digit string is `partial`; anything else (empty, a sign, a
 * space or other character inside) is 0.0. Prompts are read back with
 * operands of up to 9 digits and '+' or '*', whatever the config.
 */
#include "text_common.h"

#define ARITH_ALPHABET "0123456789+*=,"
#define ARITH_SALT 0x61726974686D6574ull /* "aritmet": this plugin's RNG streams */

enum { K_OP, K_MIN_DIGITS, K_MAX_DIGITS, K_REVERSE, K_SCRATCHPAD, K_PARTIAL, K_COUNT };
enum { OP_ADD = 0, OP_MUL = 1, OP_MIX = 2 };

static const txt_key arith_keys[K_COUNT] = {
    [K_OP] = {"op", TXT_CHOICE, OP_ADD, 0, 0, "add|mul|mix"},
    [K_MIN_DIGITS] = {"min_digits", TXT_INT, 1, 1, 9, NULL},
    [K_MAX_DIGITS] = {"max_digits", TXT_INT, 3, 1, 9, NULL},
    [K_REVERSE] = {"reverse_answer", TXT_INT, 0, 0, 1, NULL},
    [K_SCRATCHPAD] = {"scratchpad", TXT_INT, 1, 0, 1, NULL},
    [K_PARTIAL] = {"partial", TXT_REAL, 0.1, 0, 1, NULL},
};

static int arith_check(txt_val *v, char *msg, size_t cap) {
    if (!v[K_MAX_DIGITS].given) {
        double def = v[K_OP].num == OP_ADD ? 3 : 2;
        v[K_MAX_DIGITS].num = def > v[K_MIN_DIGITS].num ? def : v[K_MIN_DIGITS].num;
    }
    if (v[K_MIN_DIGITS].num > v[K_MAX_DIGITS].num) {
        snprintf(msg, cap, "min_digits (%.0f) exceeds max_digits (%.0f)", v[K_MIN_DIGITS].num, v[K_MAX_DIGITS].num);
        return ENV_EINVAL;
    }
    return ENV_OK;
}

static const txt_desc arith_desc = {"arithmetic", arith_keys, K_COUNT, arith_check};

static int arith_create(const char *config, env_text_task **out, char *err, size_t errlen) {
    return txt_create(&arith_desc, config, out, err, errlen);
}

/* Demonstration length for operands of at most d digits (see the top). */
static uint32_t add_demo_max(uint32_t d, int scratch) {
    /* columns: the first "9+9=18" (6), the others "9+9+1=19" (8), ',' between */
    uint32_t pad = scratch ? 6 + (d - 1) * 9 : 0;
    return (uint32_t)(TXT_THINK_BEGIN_LEN + TXT_THINK_END_LEN) + pad + d + 1;
}

static uint32_t mul_demo_max(uint32_t d, int scratch) {
    /* d entries "A*9=P": d + 3 + (d + 1) characters each, ',' between */
    uint32_t pad = scratch ? d * (2 * d + 4) + d - 1 : 0;
    return (uint32_t)(TXT_THINK_BEGIN_LEN + TXT_THINK_END_LEN) + pad + 2 * d;
}

static int arith_limits(const env_text_task *t, uint32_t *max_prompt, uint32_t *max_demo) {
    if (!t) return ENV_EINVAL;
    if (!max_prompt || !max_demo) return txt_fail((env_text_task *)t, ENV_EINVAL, "limits: NULL output");
    uint32_t d = (uint32_t)txt_int(t, K_MAX_DIGITS);
    int scratch = (int)txt_int(t, K_SCRATCHPAD);
    int op = (int)txt_int(t, K_OP);
    uint32_t add = add_demo_max(d, scratch), mul = mul_demo_max(d, scratch);
    *max_prompt = 2 * d + 2;
    *max_demo = op == OP_ADD ? add : op == OP_MUL ? mul : (add > mul ? add : mul);
    return ENV_OK;
}

/* A number with exactly `digits` digits (0..9 for one). */
static uint64_t draw_operand(txt_rng *r, int64_t digits) {
    uint64_t lo = 1;
    for (int64_t i = 1; i < digits; i++) lo *= 10;
    uint64_t hi = lo * 10 - 1;
    if (digits == 1) lo = 0;
    return lo + txt_rng_below(r, hi - lo + 1);
}

static void write_add_scratch(txt_out *o, uint64_t a, uint64_t b) {
    uint32_t cols = txt_ndigits(a) > txt_ndigits(b) ? txt_ndigits(a) : txt_ndigits(b);
    uint64_t carry = 0;
    for (uint32_t i = 0; i < cols; i++) {
        uint64_t x = a % 10, y = b % 10, s = x + y + carry;
        if (i) txt_putc(o, ',');
        txt_put_uint(o, x, 0);
        txt_putc(o, '+');
        txt_put_uint(o, y, 0);
        if (carry) txt_puts(o, "+1");
        txt_putc(o, '=');
        txt_put_uint(o, s, 0);
        carry = s >= 10;
        a /= 10;
        b /= 10;
    }
}

static void write_mul_scratch(txt_out *o, uint64_t a, uint64_t b, int reversed) {
    uint32_t n = txt_ndigits(b);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t d = b % 10;
        if (i) txt_putc(o, ',');
        txt_put_uint(o, a, 0);
        txt_putc(o, '*');
        txt_put_uint(o, d, 0);
        txt_putc(o, '=');
        txt_put_uint(o, a * d, reversed);
        b /= 10;
    }
}

static int arith_sample(env_text_task *t, uint64_t seed, char *prompt, size_t prompt_cap, char *demo,
                        size_t demo_cap) {
    int rc = txt_sample_args(t, prompt, prompt_cap, demo, demo_cap);
    if (rc != ENV_OK) return rc;
    txt_rng r;
    txt_rng_seed(&r, seed, ARITH_SALT);
    int op = (int)txt_int(t, K_OP);
    if (op == OP_MIX) op = (int)txt_rng_below(&r, 2);
    int64_t lo = txt_int(t, K_MIN_DIGITS), hi = txt_int(t, K_MAX_DIGITS);
    uint64_t a = draw_operand(&r, txt_rng_range(&r, lo, hi));
    uint64_t b = draw_operand(&r, txt_rng_range(&r, lo, hi));
    int reversed = (int)txt_int(t, K_REVERSE);

    txt_out p, d;
    txt_out_init(&p, prompt, prompt_cap);
    txt_put_uint(&p, a, 0);
    txt_putc(&p, op == OP_ADD ? '+' : '*');
    txt_put_uint(&p, b, 0);
    txt_putc(&p, '=');

    txt_out_init(&d, demo, demo_cap);
    txt_puts(&d, ENV_THINK_BEGIN);
    if (txt_int(t, K_SCRATCHPAD)) {
        if (op == OP_ADD)
            write_add_scratch(&d, a, b);
        else
            write_mul_scratch(&d, a, b, reversed);
    }
    txt_puts(&d, ENV_THINK_END);
    txt_put_uint(&d, op == OP_ADD ? a + b : a * b, reversed);
    return txt_sample_done(t, seed, &p, &d);
}

/* Is the digit string ans [n] (least significant first when reversed) the
 * number v? Leading zeros of the number are allowed. */
static int digits_equal(const char *ans, size_t n, int reversed, uint64_t v) {
    char truth[24];
    int tn = snprintf(truth, sizeof truth, "%llu", (unsigned long long)v);
    size_t i = 0;
    /* skip the number's leading zeros, keeping at least one digit */
    while (i + 1 < n && (reversed ? ans[n - 1 - i] : ans[i]) == '0') i++;
    if (n - i != (size_t)tn) return 0;
    for (size_t k = 0; k < (size_t)tn; k++)
        if ((reversed ? ans[n - 1 - (i + k)] : ans[i + k]) != truth[k]) return 0;
    return 1;
}

static int arith_score(env_text_task *t, const char *prompt, const char *completion, double *reward) {
    int rc = txt_score_args(t, prompt, completion, reward);
    if (rc != ENV_OK) return rc;
    const char *s = prompt;
    uint64_t a = 0, b = 0;
    char op = 0;
    if (txt_read_uint(&s, 9, &a) == 0 && (*s == '+' || *s == '*')) op = *s++;
    if (!op || txt_read_uint(&s, 9, &b) < 0 || s[0] != '=' || s[1] != '\0')
        return txt_bad_prompt(t, prompt, "A+B= or A*B= with operands of 1 to 9 digits");
    uint64_t truth = op == '+' ? a + b : a * b;

    size_t n = 0;
    const char *ans = txt_answer(completion, &n);
    if (n == 0) return ENV_OK; /* no answer */
    for (size_t i = 0; i < n; i++)
        if (!txt_is_digit((unsigned char)ans[i])) return ENV_OK; /* not a number */
    *reward = digits_equal(ans, n, (int)txt_int(t, K_REVERSE), truth) ? 1.0 : txt_real(t, K_PARTIAL);
    return ENV_OK;
}

static const env_text_plugin arith_plugin = {
    ENV_ABI_MAJOR,
    ENV_ABI_MINOR,
    (uint32_t)sizeof(env_text_plugin),
    "arithmetic",
    "1.0",
    "A+B= or A*B= (op=add|mul|mix, min_digits..max_digits, reverse_answer=0|1): the sum or product",
    ARITH_ALPHABET,
    arith_create,
    txt_destroy,
    txt_last_error,
    arith_limits,
    arith_sample,
    arith_score,
};

ENV_EXPORT const env_text_plugin *env_text_plugin_get(uint32_t host_abi_major) {
    return txt_plugin_get(&arith_plugin, host_abi_major);
}
