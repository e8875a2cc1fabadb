/*
 * countdown.c -- the "countdown" text task (TinyZero countdown,
 * sac_envs.md §5.1): given numbers and a target, write an expression that
 * uses every number exactly once with + - * / and parentheses and equals
 * the target.
 *
 * Prompt: the numbers, ':', the target, '=' -- "3,7,12:33=".
 * Demonstration: ENV_THINK_BEGIN ENV_THINK_END expression, e.g.
 * "<think></think>3*7+12". Items are always solvable: the target is the
 * value of a random expression over the drawn numbers (Countdown rules:
 * every intermediate result a positive integer, division only when exact),
 * and the demonstration is that expression with the parentheses it needs.
 * After 64 draws whose value misses [1, max_target] the item falls back to
 * the sum of the numbers (create insists that count * max_number <=
 * max_target, so the sum always fits).
 *
 * Config (all optional):
 *   count       how many numbers, 2..6                       default 3
 *   min_number  smallest number, 1..999                      default 1
 *   max_number  largest number, 1..999                       default 20
 *   max_target  largest target, 1..1e9 (>= count*max_number) default 100
 *   partial     score of a well-formed wrong answer, [0, 1]  default 0.1
 *
 * Score (the answer is the text after the last ENV_THINK_END, blanks
 * trimmed; blanks inside are skipped as Python's eval skips them):
 *   1.0      it parses, uses exactly the multiset of the prompt's numbers,
 *            and its value is within 1e-5 of the target;
 *   partial  it parses but uses other numbers (one missing, one reused, an
 *            extra one), divides by zero, or has another value;
 *   0.0      no answer, or it does not parse.
 * The grammar is Python's for these tokens: expr = term {(+|-) term},
 * term = factor {(*|/) factor}, factor = (+|-) factor | ( expr ) | number,
 * number = decimal digits (leading zeros allowed: "03" is 3, as TinyZero's
 * int() reads it). '/' is true division in double precision. Nesting deeper
 * than 64 levels does not parse. This is a recursive-descent evaluator; no
 * eval.
 */
#include "text_common.h"

#define CD_ALPHABET "0123456789,:=+-*/()"
#define CD_SALT 0x636F756E74646F77ull /* "countdow": this plugin's RNG streams */
#define CD_MAX_NUMBERS 6              /* count's upper bound                 */
#define CD_MAX_PROMPT_NUMBERS 16      /* numbers a prompt may hold (score)   */
#define CD_MAX_DEPTH 64
#define CD_TOLERANCE 1e-5

enum { K_COUNT_, K_MIN_NUMBER, K_MAX_NUMBER, K_MAX_TARGET, K_PARTIAL, K_NKEYS };

static const txt_key cd_keys[K_NKEYS] = {
    [K_COUNT_] = {"count", TXT_INT, 3, 2, CD_MAX_NUMBERS, NULL},
    [K_MIN_NUMBER] = {"min_number", TXT_INT, 1, 1, 999, NULL},
    [K_MAX_NUMBER] = {"max_number", TXT_INT, 20, 1, 999, NULL},
    [K_MAX_TARGET] = {"max_target", TXT_INT, 100, 1, 1e9, NULL},
    [K_PARTIAL] = {"partial", TXT_REAL, 0.1, 0, 1, NULL},
};

static int cd_check(txt_val *v, char *msg, size_t cap) {
    if (v[K_MIN_NUMBER].num > v[K_MAX_NUMBER].num) {
        snprintf(msg, cap, "min_number (%.0f) exceeds max_number (%.0f)", v[K_MIN_NUMBER].num, v[K_MAX_NUMBER].num);
        return ENV_EINVAL;
    }
    double sum = v[K_COUNT_].num * v[K_MAX_NUMBER].num;
    if (sum > v[K_MAX_TARGET].num) {
        snprintf(msg, cap,
                 "max_target (%.0f) is below count * max_number (%.0f); raise it so that every draw has a "
                 "solution within range",
                 v[K_MAX_TARGET].num, sum);
        return ENV_EINVAL;
    }
    return ENV_OK;
}

static const txt_desc cd_desc = {"countdown", cd_keys, K_NKEYS, cd_check};

static int cd_create(const char *config, env_text_task **out, char *err, size_t errlen) {
    return txt_create(&cd_desc, config, out, err, errlen);
}

static int cd_limits(const env_text_task *t, uint32_t *max_prompt, uint32_t *max_demo) {
    if (!t) return ENV_EINVAL;
    if (!max_prompt || !max_demo) return txt_fail((env_text_task *)t, ENV_EINVAL, "limits: NULL output");
    uint32_t n = (uint32_t)txt_int(t, K_COUNT_);
    uint32_t dn = txt_ndigits((uint64_t)txt_int(t, K_MAX_NUMBER));
    uint32_t dt = txt_ndigits((uint64_t)txt_int(t, K_MAX_TARGET));
    *max_prompt = n * dn + (n - 1) + 1 + dt + 1;
    /* n numbers, n-1 operators, and at most one pair of parentheses around
     * each operation but the outermost */
    *max_demo = (uint32_t)(TXT_THINK_BEGIN_LEN + TXT_THINK_END_LEN) + n * dn + (n - 1) + 2 * (n - 2);
    return ENV_OK;
}

/* ---- generation ---------------------------------------------------------- */

/* An expression tree over at most CD_MAX_NUMBERS leaves. */
typedef struct cd_node {
    char op;        /* 0 for a leaf, else + - * / */
    int left, right;
    uint64_t value; /* a positive integer */
} cd_node;

typedef struct cd_tree {
    cd_node node[2 * CD_MAX_NUMBERS];
    int n, root;
} cd_tree;

/* Intermediate results stay below 2^50 so that the double evaluation of the
 * printed expression is exact. */
#define CD_VALUE_CAP (1ull << 50)

static int cd_apply(char op, uint64_t a, uint64_t b, uint64_t *out) {
    switch (op) {
    case '+': *out = a + b; return 1;
    case '-': *out = a - b; return a > b;
    case '*': *out = a * b; return b == 0 || a <= CD_VALUE_CAP / b;
    case '/': *out = b ? a / b : 0; return b != 0 && a % b == 0;
    }
    return 0;
}

/* A random tree over nums [n]: repeatedly combine two random subtrees with a
 * random operator (the next one in the order + - * / when it breaks the rules). */
static void cd_random_tree(txt_rng *r, const uint64_t *nums, int n, cd_tree *t) {
    static const char ops[4] = {'+', '-', '*', '/'};
    int active[CD_MAX_NUMBERS];
    t->n = 0;
    for (int i = 0; i < n; i++) {
        t->node[t->n] = (cd_node){0, -1, -1, nums[i]};
        active[i] = t->n++;
    }
    int nactive = n;
    while (nactive > 1) {
        int i = (int)txt_rng_below(r, (uint64_t)nactive);
        int j = (int)txt_rng_below(r, (uint64_t)nactive - 1);
        if (j >= i) j++;
        int k = (int)txt_rng_below(r, 4), tries = 0;
        uint64_t v = 0;
        /* Of (a, b) and (b, a) one always works: '-' when they differ, '/'
         * when they are equal. */
        for (;; tries++) {
            if (tries == 4) { /* nothing works in this order: swap */
                int tmp = i;
                i = j;
                j = tmp;
            }
            uint64_t a = t->node[active[i]].value, b = t->node[active[j]].value;
            if (cd_apply(ops[(k + tries) % 4], a, b, &v) && v <= CD_VALUE_CAP) break;
        }
        t->node[t->n] = (cd_node){ops[(k + tries) % 4], active[i], active[j], v};
        active[i] = t->n++;
        active[j] = active[--nactive];
    }
    t->root = active[0];
}

static int cd_prec(char op) { return op == '+' || op == '-' ? 1 : 2; }

/* Print node k; parent_op 0 at the root. Parentheses where precedence or
 * order of evaluation needs them: a lower-precedence child, and a right
 * child of equal precedence under '-' or '/' (and '/' under '*', which keeps
 * the evaluation order, and so exactness, of the generated tree). */
static void cd_print(txt_out *o, const cd_tree *t, int k, char parent_op, int is_right) {
    const cd_node *nd = &t->node[k];
    if (!nd->op) {
        txt_put_uint(o, nd->value, 0);
        return;
    }
    int paren = 0;
    if (parent_op) {
        int pp = cd_prec(parent_op), cp = cd_prec(nd->op);
        paren = cp < pp ||
                (is_right && cp == pp && (parent_op == '-' || parent_op == '/' || (parent_op == '*' && nd->op == '/')));
    }
    if (paren) txt_putc(o, '(');
    cd_print(o, t, nd->left, nd->op, 0);
    txt_putc(o, nd->op);
    cd_print(o, t, nd->right, nd->op, 1);
    if (paren) txt_putc(o, ')');
}

static int cd_sample(env_text_task *t, uint64_t seed, char *prompt, size_t prompt_cap, char *demo,
                     size_t demo_cap) {
    int rc = txt_sample_args(t, prompt, prompt_cap, demo, demo_cap);
    if (rc != ENV_OK) return rc;
    txt_rng r;
    txt_rng_seed(&r, seed, CD_SALT);
    int n = (int)txt_int(t, K_COUNT_);
    uint64_t nums[CD_MAX_NUMBERS];
    for (int i = 0; i < n; i++)
        nums[i] = (uint64_t)txt_rng_range(&r, txt_int(t, K_MIN_NUMBER), txt_int(t, K_MAX_NUMBER));
    uint64_t max_target = (uint64_t)txt_int(t, K_MAX_TARGET);
    cd_tree tree;
    int found = 0;
    for (int attempt = 0; attempt < 64 && !found; attempt++) {
        cd_random_tree(&r, nums, n, &tree);
        uint64_t v = tree.node[tree.root].value;
        found = v >= 1 && v <= max_target;
    }
    if (!found) { /* the sum, left to right: <= count * max_number <= max_target */
        tree.n = 0;
        for (int i = 0; i < n; i++) tree.node[tree.n++] = (cd_node){0, -1, -1, nums[i]};
        int acc = 0;
        for (int i = 1; i < n; i++) {
            tree.node[tree.n] = (cd_node){'+', acc, i, tree.node[acc].value + nums[i]};
            acc = tree.n++;
        }
        tree.root = acc;
    }

    txt_out p, d;
    txt_out_init(&p, prompt, prompt_cap);
    for (int i = 0; i < n; i++) {
        if (i) txt_putc(&p, ',');
        txt_put_uint(&p, nums[i], 0);
    }
    txt_putc(&p, ':');
    txt_put_uint(&p, tree.node[tree.root].value, 0);
    txt_putc(&p, '=');

    txt_out_init(&d, demo, demo_cap);
    txt_puts(&d, ENV_THINK_BEGIN ENV_THINK_END);
    cd_print(&d, &tree, tree.root, 0, 0);
    return txt_sample_done(t, seed, &p, &d);
}

/* ---- scoring: a recursive-descent evaluator -------------------------------- */

typedef struct cd_parser {
    const char *s, *end; /* the answer [s, end)                              */
    int depth;
    int bad;             /* 1: does not parse                                */
    int div_zero;        /* 1: a division by zero happened                   */
    uint64_t used[CD_MAX_PROMPT_NUMBERS]; /* the numbers, in order of use     */
    int nused;           /* may exceed CD_MAX_PROMPT_NUMBERS (then no match)  */
    int huge;            /* a number of more than 15 digits (never matches)   */
} cd_parser;

static void cd_skip(cd_parser *p) {
    while (p->s < p->end && txt_is_blank((unsigned char)*p->s)) p->s++;
}

static int cd_peek(cd_parser *p) {
    cd_skip(p);
    return p->s < p->end ? (unsigned char)*p->s : -1;
}

static double cd_expr(cd_parser *p);

static double cd_factor(cd_parser *p) {
    int c = cd_peek(p);
    if (++p->depth > CD_MAX_DEPTH) {
        p->bad = 1;
        return 0;
    }
    double v = 0;
    if (c == '+' || c == '-') {
        p->s++;
        v = cd_factor(p);
        if (c == '-') v = -v;
    } else if (c == '(') {
        p->s++;
        v = cd_expr(p);
        if (cd_peek(p) != ')')
            p->bad = 1;
        else
            p->s++;
    } else if (c >= 0 && txt_is_digit(c)) {
        uint64_t x = 0;
        int ndig = 0;
        while (p->s < p->end && txt_is_digit((unsigned char)*p->s)) {
            if (x > 0 || *p->s != '0') ndig++; /* leading zeros do not count */
            if (ndig <= 15) x = x * 10 + (uint64_t)(*p->s - '0');
            p->s++;
        }
        if (ndig > 15) p->huge = 1;
        if (p->nused < CD_MAX_PROMPT_NUMBERS) p->used[p->nused] = x;
        p->nused++;
        v = (double)x;
    } else {
        p->bad = 1;
    }
    p->depth--;
    return v;
}

static double cd_term(cd_parser *p) {
    double v = cd_factor(p);
    for (int c = cd_peek(p); !p->bad && (c == '*' || c == '/'); c = cd_peek(p)) {
        p->s++;
        double w = cd_factor(p);
        if (c == '*') {
            v *= w;
        } else if (w == 0) {
            p->div_zero = 1; /* Python raises ZeroDivisionError: well formed, no value */
        } else {
            v /= w;
        }
    }
    return v;
}

static double cd_expr(cd_parser *p) {
    double v = cd_term(p);
    for (int c = cd_peek(p); !p->bad && (c == '+' || c == '-'); c = cd_peek(p)) {
        p->s++;
        double w = cd_term(p);
        v = c == '+' ? v + w : v - w;
    }
    return v;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static int cd_score(env_text_task *t, const char *prompt, const char *completion, double *reward) {
    int rc = txt_score_args(t, prompt, completion, reward);
    if (rc != ENV_OK) return rc;
    uint64_t nums[CD_MAX_PROMPT_NUMBERS], target = 0;
    int n = 0;
    const char *s = prompt;
    int ok = 1;
    for (;;) {
        if (n == CD_MAX_PROMPT_NUMBERS || txt_read_uint(&s, 9, &nums[n]) < 0) {
            ok = 0;
            break;
        }
        n++;
        if (*s == ':') break;
        if (*s++ != ',') {
            ok = 0;
            break;
        }
    }
    if (ok) {
        s++;
        ok = txt_read_uint(&s, 10, &target) == 0 && s[0] == '=' && s[1] == '\0';
    }
    if (!ok) return txt_bad_prompt(t, prompt, "N1,N2,...:TARGET= with 1 to 16 numbers of up to 9 digits");

    size_t len = 0;
    const char *ans = txt_answer(completion, &len);
    if (len == 0) return ENV_OK; /* no answer */
    cd_parser p;
    memset(&p, 0, sizeof p);
    p.s = ans;
    p.end = ans + len;
    double v = cd_expr(&p);
    if (p.bad || cd_peek(&p) != -1) return ENV_OK; /* does not parse */

    int same = !p.huge && p.nused == n;
    if (same) {
        qsort(nums, (size_t)n, sizeof *nums, cmp_u64);
        qsort(p.used, (size_t)n, sizeof *p.used, cmp_u64);
        same = memcmp(nums, p.used, (size_t)n * sizeof *nums) == 0;
    }
    int hit = same && !p.div_zero && isfinite(v) && fabs(v - (double)target) < CD_TOLERANCE;
    *reward = hit ? 1.0 : txt_real(t, K_PARTIAL);
    return ENV_OK;
}

static const env_text_plugin cd_plugin = {
    ENV_ABI_MAJOR,
    ENV_ABI_MINOR,
    (uint32_t)sizeof(env_text_plugin),
    "countdown",
    "1.0",
    "N1,N2,N3:TARGET= (TinyZero countdown): an expression using each number once with + - * / ( ) equal to TARGET",
    CD_ALPHABET,
    cd_create,
    txt_destroy,
    txt_last_error,
    cd_limits,
    cd_sample,
    cd_score,
};

ENV_EXPORT const env_text_plugin *env_text_plugin_get(uint32_t host_abi_major) {
    return txt_plugin_get(&cd_plugin, host_abi_major);
}
