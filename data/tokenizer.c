/*
 * tokenizer.c -- char- and byte-level tokenizers with the think specials.
 * See tokenizer.h.
 */
#include "tokenizer.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THINK_BEGIN_LEN (sizeof TOK_THINK_BEGIN_STR - 1)
#define THINK_END_LEN (sizeof TOK_THINK_END_STR - 1)
#define SPEC_CHARS "chars:"
#define SPEC_BYTES "bytes"

struct tok_tokenizer {
    tok_kind kind;
    int nsym;                 /* symbols: strlen(alphabet) or 256           */
    char alphabet[96];        /* chars: the alphabet; bytes: ""             */
    int16_t id_of_byte[256];  /* byte -> id, or -1 when not a symbol        */
    char err[256];            /* the last encode/decode failure             */
};

static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static int fail(char *err, size_t errlen, int code, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* 'c' for a printable character, \xNN otherwise, into buf [8]. */
static const char *show_byte(unsigned char c, char *buf) {
    if (c >= 0x20 && c <= 0x7E && c != '\'')
        snprintf(buf, 8, "'%c'", c);
    else
        snprintf(buf, 8, "\\x%02x", c);
    return buf;
}

int tok_new_chars(const char *alphabet, tok_tokenizer **out, char *err, size_t errlen) {
    if (!out) return fail(err, errlen, TOK_ERR_ARG, "tok_new_chars: NULL out");
    *out = NULL;
    if (!alphabet) return fail(err, errlen, TOK_ERR_ARG, "tokenizer alphabet: NULL");
    size_t n = strlen(alphabet);
    if (n == 0) return fail(err, errlen, TOK_ERR_ARG, "tokenizer alphabet is empty");
    int first[256];
    for (int b = 0; b < 256; b++) first[b] = -1;
    char shown[8];
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)alphabet[i];
        if (c < 0x20 || c > 0x7E)
            return fail(err, errlen, TOK_ERR_ARG,
                        "tokenizer alphabet: character %s at offset %zu is not printable ASCII (0x20..0x7e)",
                        show_byte(c, shown), i);
        if (first[c] >= 0)
            return fail(err, errlen, TOK_ERR_ARG, "tokenizer alphabet: character %s at offset %zu repeats offset %d",
                        show_byte(c, shown), i, first[c]);
        first[c] = (int)i;
    }
    /* n <= 95 now: 95 printable characters, all distinct */
    tok_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return fail(err, errlen, TOK_ERR_NOMEM, "tokenizer: out of memory");
    t->kind = TOK_KIND_CHARS;
    t->nsym = (int)n;
    memcpy(t->alphabet, alphabet, n + 1);
    for (int b = 0; b < 256; b++) t->id_of_byte[b] = (int16_t)(first[b] >= 0 ? TOK_FIRST_SYMBOL + first[b] : -1);
    *out = t;
    return TOK_OK;
}

int tok_new_bytes(tok_tokenizer **out, char *err, size_t errlen) {
    if (!out) return fail(err, errlen, TOK_ERR_ARG, "tok_new_bytes: NULL out");
    *out = NULL;
    tok_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return fail(err, errlen, TOK_ERR_NOMEM, "tokenizer: out of memory");
    t->kind = TOK_KIND_BYTES;
    t->nsym = 256;
    for (int b = 0; b < 256; b++) t->id_of_byte[b] = (int16_t)(TOK_FIRST_SYMBOL + b);
    *out = t;
    return TOK_OK;
}

int tok_new_from_spec(const char *spec, tok_tokenizer **out, char *err, size_t errlen) {
    if (!out) return fail(err, errlen, TOK_ERR_ARG, "tok_new_from_spec: NULL out");
    *out = NULL;
    if (!spec) return fail(err, errlen, TOK_ERR_ARG, "tokenizer spec: NULL");
    if (strcmp(spec, SPEC_BYTES) == 0) return tok_new_bytes(out, err, errlen);
    if (strncmp(spec, SPEC_CHARS, strlen(SPEC_CHARS)) == 0) {
        int rc = tok_new_chars(spec + strlen(SPEC_CHARS), out, err, errlen);
        if (rc < 0 && err && errlen) {
            char why[256];
            snprintf(why, sizeof why, "%s", err);
            fail(err, errlen, rc, "tokenizer spec \"%.40s%s\": %s", spec, strlen(spec) > 40 ? "..." : "", why);
        }
        return rc;
    }
    return fail(err, errlen, TOK_ERR_ARG, "tokenizer spec \"%.40s%s\" is neither \"" SPEC_BYTES "\" nor \"" SPEC_CHARS
                "<alphabet>\"", spec, strlen(spec) > 40 ? "..." : "");
}

void tok_free(tok_tokenizer *tok) { free(tok); }

tok_kind tok_get_kind(const tok_tokenizer *tok) { return tok ? tok->kind : (tok_kind)0; }

int64_t tok_vocab_size(const tok_tokenizer *tok) { return tok ? TOK_NUM_SPECIAL + tok->nsym : 0; }

const char *tok_alphabet(const tok_tokenizer *tok) { return tok ? tok->alphabet : ""; }

int tok_spec(const tok_tokenizer *tok, char *buf, size_t cap) {
    if (!tok || !buf) return TOK_ERR_ARG;
    int w = tok->kind == TOK_KIND_BYTES ? snprintf(buf, cap, SPEC_BYTES)
                                        : snprintf(buf, cap, SPEC_CHARS "%s", tok->alphabet);
    if (w < 0 || (size_t)w >= cap) {
        if (cap) buf[0] = '\0';
        return TOK_ERR_SPACE;
    }
    return w;
}

/* The handle's message; returns code. */
static int64_t tok_fail(tok_tokenizer *tok, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static int64_t tok_fail(tok_tokenizer *tok, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tok->err, sizeof tok->err, fmt, ap);
    va_end(ap);
    return code;
}

const char *tok_last_error(const tok_tokenizer *tok) { return tok ? tok->err : "tokenizer: NULL handle"; }

int64_t tok_encode_n(tok_tokenizer *tok, const char *text, size_t len, int64_t *ids, int64_t cap) {
    if (!tok) return TOK_ERR_ARG;
    if (!text && len) return tok_fail(tok, TOK_ERR_ARG, "tok_encode: NULL text");
    if (cap < 0 || (!ids && cap > 0))
        return tok_fail(tok, TOK_ERR_ARG, "tok_encode: no buffer for %lld ids", (long long)cap);
    int64_t n = 0;
    for (size_t i = 0; i < len;) {
        int64_t id;
        if (len - i >= THINK_BEGIN_LEN && memcmp(text + i, TOK_THINK_BEGIN_STR, THINK_BEGIN_LEN) == 0) {
            id = TOK_THINK_BEGIN;
            i += THINK_BEGIN_LEN;
        } else if (len - i >= THINK_END_LEN && memcmp(text + i, TOK_THINK_END_STR, THINK_END_LEN) == 0) {
            id = TOK_THINK_END;
            i += THINK_END_LEN;
        } else {
            unsigned char c = (unsigned char)text[i];
            id = tok->id_of_byte[c];
            if (id < 0) {
                char shown[8];
                return tok_fail(tok, TOK_ERR_CHAR,
                                "tokenizer: character %s at offset %zu of the text is not in the alphabet \"%s\"",
                                show_byte(c, shown), i, tok->alphabet);
            }
            i++;
        }
        if (n < cap) ids[n] = id;
        n++;
    }
    if (n > cap && ids)
        return tok_fail(tok, TOK_ERR_SPACE, "tokenizer: the text needs %lld ids; the buffer holds %lld", (long long)n,
                        (long long)cap);
    return n;
}

int64_t tok_encode(tok_tokenizer *tok, const char *text, int64_t *ids, int64_t cap) {
    if (!tok) return TOK_ERR_ARG;
    if (!text) return tok_fail(tok, TOK_ERR_ARG, "tok_encode: NULL text");
    return tok_encode_n(tok, text, strlen(text), ids, cap);
}

int64_t tok_decode_flags(tok_tokenizer *tok, const int64_t *ids, int64_t n, unsigned flags, char *out, size_t cap) {
    if (!tok) return TOK_ERR_ARG;
    if (n < 0 || (!ids && n > 0)) return tok_fail(tok, TOK_ERR_ARG, "tok_decode: no ids (n = %lld)", (long long)n);
    if (!out && cap > 0) return tok_fail(tok, TOK_ERR_ARG, "tok_decode: NULL output with cap %zu", cap);
    if (flags & ~(unsigned)TOK_DECODE_PAST_EOS)
        return tok_fail(tok, TOK_ERR_ARG, "tok_decode: unknown flags 0x%x", flags);
    int64_t vocab = tok_vocab_size(tok);
    size_t used = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t id = ids[i];
        if (id < 0 || id >= vocab) {
            if (cap) out[0] = '\0';
            return tok_fail(tok, TOK_ERR_ID, "tokenizer: id %lld at position %lld is outside [0, %lld)", (long long)id,
                            (long long)i, (long long)vocab);
        }
        const char *s = NULL;
        size_t len = 0;
        char sym = 0;
        if (id == TOK_EOS && !(flags & TOK_DECODE_PAST_EOS)) break;
        if (id == TOK_THINK_BEGIN) {
            s = TOK_THINK_BEGIN_STR;
            len = THINK_BEGIN_LEN;
        } else if (id == TOK_THINK_END) {
            s = TOK_THINK_END_STR;
            len = THINK_END_LEN;
        } else if (id >= TOK_FIRST_SYMBOL) {
            int k = (int)(id - TOK_FIRST_SYMBOL);
            sym = tok->kind == TOK_KIND_BYTES ? (char)(unsigned char)k : tok->alphabet[k];
            s = &sym;
            len = 1;
        } /* PAD, BOS, and EOS past it: nothing */
        if (len && used + len < cap) memcpy(out + used, s, len);
        used += len;
    }
    if (cap && used >= cap) {
        out[0] = '\0';
        return tok_fail(tok, TOK_ERR_SPACE, "tokenizer: the text needs %zu bytes and a NUL; the buffer holds %zu", used,
                        cap);
    }
    if (cap) out[used] = '\0';
    return (int64_t)used;
}

int64_t tok_decode(tok_tokenizer *tok, const int64_t *ids, int64_t n, char *out, size_t cap) {
    return tok_decode_flags(tok, ids, n, 0, out, cap);
}

const char *tok_token_str(const tok_tokenizer *tok, int64_t id, char *buf, size_t cap) {
    if (!buf || cap == 0) return buf;
    static const char *const specials[TOK_NUM_SPECIAL] = {"<pad>", "<bos>", "<eos>", TOK_THINK_BEGIN_STR,
                                                          TOK_THINK_END_STR};
    if (!tok || id < 0 || id >= tok_vocab_size(tok)) {
        snprintf(buf, cap, "<invalid:%lld>", (long long)id);
    } else if (id < TOK_FIRST_SYMBOL) {
        snprintf(buf, cap, "%s", specials[id]);
    } else {
        int k = (int)(id - TOK_FIRST_SYMBOL);
        unsigned char c = tok->kind == TOK_KIND_BYTES ? (unsigned char)k : (unsigned char)tok->alphabet[k];
        if (c == '\\')
            snprintf(buf, cap, "\\\\");
        else if (c >= 0x20 && c <= 0x7E)
            snprintf(buf, cap, "%c", c);
        else
            snprintf(buf, cap, "\\x%02x", c);
    }
    return buf;
}
