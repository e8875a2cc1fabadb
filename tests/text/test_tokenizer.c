/*
 * test_tokenizer.c -- Criterion tests for data/tokenizer.h: fixed special
 * ids, char- and byte-level encoding with the think specials, decoding
 * (PAD/BOS dropped, EOS stops unless TOK_DECODE_PAST_EOS), lossless round
 * trips (every byte value, random texts with special fragments), the spec
 * round trip for checkpoints, display strings, and every error path with
 * its message. Torch-free.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

#define ARITH "0123456789+*=,"

static tok_tokenizer *chars(const char *alphabet) {
    tok_tokenizer *t = NULL;
    char err[256] = "";
    cr_assert_eq(tok_new_chars(alphabet, &t, err, sizeof err), TOK_OK, "%s", err);
    cr_assert_not_null(t);
    return t;
}

static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* encode -> decode gives text [len] back, byte for byte. */
static void expect_round_trip(tok_tokenizer *t, const char *text, size_t len) {
    int64_t ids[1024];
    char out[1100];
    int64_t n = tok_encode_n(t, text, len, ids, 1024);
    cr_assert_geq(n, 0, "%s", tok_last_error(t));
    cr_assert_leq((size_t)n, len);
    int64_t m = tok_decode(t, ids, n, out, sizeof out);
    cr_assert_eq(m, (int64_t)len, "decoded %lld bytes of %zu: %s", (long long)m, len, tok_last_error(t));
    cr_assert_eq(memcmp(out, text, len), 0);
    cr_assert_eq(out[len], '\0');
}

Test(tokenizer, chars_encode_decode) {
    tok_tokenizer *t = chars(ARITH);
    cr_assert_eq(TOK_PAD, 0);
    cr_assert_eq(TOK_BOS, 1);
    cr_assert_eq(TOK_EOS, 2);
    cr_assert_eq(TOK_THINK_BEGIN, 3);
    cr_assert_eq(TOK_THINK_END, 4);
    cr_assert_eq(tok_vocab_size(t), 19);
    cr_assert_eq(tok_get_kind(t), TOK_KIND_CHARS);
    cr_assert_str_eq(tok_alphabet(t), ARITH);

    /* '0'..'9' -> 5..14, '+' 15, '*' 16, '=' 17, ',' 18 */
    const char *text = "<think>1+2=3</think>3";
    int64_t ids[32];
    int64_t n = tok_encode(t, text, ids, 32);
    const int64_t want[] = {3, 6, 15, 7, 17, 8, 4, 8};
    cr_assert_eq(n, 8, "%s", tok_last_error(t));
    for (int i = 0; i < 8; i++) cr_assert_eq(ids[i], want[i], "ids[%d] = %lld", i, (long long)ids[i]);
    cr_assert_eq(tok_encode(t, text, NULL, 0), 8, "counting mode");
    cr_assert_eq(tok_encode(t, "", ids, 32), 0);

    char out[64];
    cr_assert_eq(tok_decode(t, ids, n, out, sizeof out), (int64_t)strlen(text), "%s", tok_last_error(t));
    cr_assert_str_eq(out, text);
    cr_assert_eq(tok_decode(t, ids, n, NULL, 0), (int64_t)strlen(text), "measuring mode");

    /* BOS and PAD decode to nothing; EOS stops decoding unless told. */
    const int64_t framed[] = {TOK_BOS, 6, 15, 7, TOK_PAD, 17, 8, TOK_EOS, 9, TOK_PAD, TOK_PAD};
    cr_assert_eq(tok_decode(t, framed, 11, out, sizeof out), 5, "%s", tok_last_error(t));
    cr_assert_str_eq(out, "1+2=3");
    cr_assert_eq(tok_decode_flags(t, framed, 11, TOK_DECODE_PAST_EOS, out, sizeof out), 6, "%s", tok_last_error(t));
    cr_assert_str_eq(out, "1+2=34");
    /* ids after the first EOS are not looked at, even invalid ones */
    const int64_t after_eos[] = {6, TOK_EOS, 999};
    cr_assert_eq(tok_decode(t, after_eos, 3, out, sizeof out), 1, "%s", tok_last_error(t));
    cr_assert_str_eq(out, "1");
    cr_assert_eq(tok_decode(t, ids, 0, out, sizeof out), 0);
    cr_assert_str_eq(out, "");

    /* Round trips over the alphabet with specials anywhere. */
    uint64_t x = 42;
    const char *pieces[] = {"<think>", "</think>", "0", "9", "+", "*", "=", ","};
    for (int trial = 0; trial < 500; trial++) {
        char buf[512];
        size_t len = 0;
        int k = (int)(splitmix(&x) % 40);
        for (int i = 0; i < k; i++) {
            const char *p = pieces[splitmix(&x) % 8];
            memcpy(buf + len, p, strlen(p));
            len += strlen(p);
        }
        buf[len] = '\0';
        expect_round_trip(t, buf, len);
    }
    tok_free(t);
    tok_free(NULL);
}

Test(tokenizer, chars_errors) {
    tok_tokenizer *t = chars(ARITH);
    int64_t ids[8];
    char err[256] = "";

    /* a character outside the alphabet: named with its offset */
    cr_assert_eq(tok_encode(t, "12+x4", ids, 8), TOK_ERR_CHAR);
    cr_assert_not_null(strstr(tok_last_error(t), "'x' at offset 3"), "%s", tok_last_error(t));
    cr_assert_not_null(strstr(tok_last_error(t), "\"" ARITH "\""), "%s", tok_last_error(t));
    cr_assert_eq(tok_encode(t, "1\n", ids, 8), TOK_ERR_CHAR);
    cr_assert_not_null(strstr(tok_last_error(t), "\\x0a at offset 1"), "%s", tok_last_error(t));
    /* "<think" without '>' is not the special: '<' is outside this alphabet */
    cr_assert_eq(tok_encode(t, "12<think", ids, 8), TOK_ERR_CHAR);
    cr_assert_not_null(strstr(tok_last_error(t), "'<' at offset 2"), "%s", tok_last_error(t));
    cr_assert_eq(tok_encode(t, "1</think", ids, 8), TOK_ERR_CHAR);
    cr_assert_not_null(strstr(tok_last_error(t), "'<' at offset 1"), "%s", tok_last_error(t));

    /* too small a buffer says how many ids are needed */
    cr_assert_eq(tok_encode(t, "<think>1+2=3</think>3", ids, 7), TOK_ERR_SPACE);
    cr_assert_not_null(strstr(tok_last_error(t), "needs 8 ids; the buffer holds 7"), "%s", tok_last_error(t));
    cr_assert_eq(tok_encode(t, "1", ids, 0), TOK_ERR_SPACE);
    cr_assert_eq(tok_encode(t, "1", NULL, 4), TOK_ERR_ARG);
    cr_assert_eq(tok_encode(t, NULL, ids, 8), TOK_ERR_ARG);
    cr_assert_eq(tok_encode(NULL, "1", ids, 8), TOK_ERR_ARG);
    cr_assert_eq(tok_encode(t, "1", ids, -1), TOK_ERR_ARG);
    cr_assert_str_eq(tok_last_error(NULL), "tokenizer: NULL handle");

    /* decode: ids outside the vocabulary, too small an output */
    const int64_t bad[] = {6, 19};
    char out[8];
    cr_assert_eq(tok_decode(t, bad, 2, out, sizeof out), TOK_ERR_ID);
    cr_assert_not_null(strstr(tok_last_error(t), "id 19 at position 1 is outside [0, 19)"), "%s", tok_last_error(t));
    const int64_t neg[] = {-1};
    cr_assert_eq(tok_decode(t, neg, 1, out, sizeof out), TOK_ERR_ID);
    cr_assert_not_null(strstr(tok_last_error(t), "id -1 at position 0"), "%s", tok_last_error(t));
    const int64_t think[] = {TOK_THINK_BEGIN, 6};
    cr_assert_eq(tok_decode(t, think, 2, out, 8), TOK_ERR_SPACE);
    cr_assert_not_null(strstr(tok_last_error(t), "needs 8 bytes and a NUL; the buffer holds 8"), "%s",
                       tok_last_error(t));
    cr_assert_str_eq(out, "", "no half-decoded text");
    char fits[9];
    cr_assert_eq(tok_decode(t, think, 2, fits, sizeof fits), 8);
    cr_assert_str_eq(fits, "<think>1");
    cr_assert_eq(tok_decode_flags(t, think, 2, 4u, out, sizeof out), TOK_ERR_ARG);
    cr_assert_not_null(strstr(tok_last_error(t), "unknown flags 0x4"), "%s", tok_last_error(t));
    cr_assert_eq(tok_decode(t, NULL, 2, out, sizeof out), TOK_ERR_ARG);
    cr_assert_eq(tok_decode(t, think, 2, NULL, 8), TOK_ERR_ARG);
    tok_free(t);

    /* bad alphabets */
    tok_tokenizer *u = (tok_tokenizer *)1;
    cr_assert_eq(tok_new_chars("", &u, err, sizeof err), TOK_ERR_ARG);
    cr_assert_null(u);
    cr_assert_not_null(strstr(err, "empty"), "%s", err);
    cr_assert_eq(tok_new_chars("ab\n", &u, err, sizeof err), TOK_ERR_ARG);
    cr_assert_not_null(strstr(err, "\\x0a at offset 2 is not printable"), "%s", err);
    cr_assert_eq(tok_new_chars("ab\xc3\xa9", &u, err, sizeof err), TOK_ERR_ARG);
    cr_assert_not_null(strstr(err, "\\xc3 at offset 2"), "%s", err);
    cr_assert_eq(tok_new_chars("abca", &u, err, sizeof err), TOK_ERR_ARG);
    cr_assert_not_null(strstr(err, "'a' at offset 3 repeats offset 0"), "%s", err);
    cr_assert_eq(tok_new_chars(NULL, &u, err, sizeof err), TOK_ERR_ARG);
    cr_assert_eq(tok_new_chars("ab", NULL, err, sizeof err), TOK_ERR_ARG);
    cr_assert_eq(tok_vocab_size(NULL), 0);
}

Test(tokenizer, bytes_round_trip_and_specials_in_alphabet) {
    tok_tokenizer *t = NULL;
    char err[256] = "";
    cr_assert_eq(tok_new_bytes(&t, err, sizeof err), TOK_OK, "%s", err);
    cr_assert_eq(tok_vocab_size(t), 261);
    cr_assert_eq(tok_get_kind(t), TOK_KIND_BYTES);
    cr_assert_str_eq(tok_alphabet(t), "");

    /* every byte value, NUL included, through tok_encode_n */
    char all[256];
    for (int b = 0; b < 256; b++) all[b] = (char)b;
    int64_t ids[300];
    cr_assert_eq(tok_encode_n(t, all, 256, ids, 300), 256, "%s", tok_last_error(t));
    for (int b = 0; b < 256; b++) cr_assert_eq(ids[b], 5 + b);
    expect_round_trip(t, all, 256);

    /* the think strings become single ids; the rest are bytes */
    int64_t n = tok_encode(t, "a<think>\xff</think>", ids, 300);
    cr_assert_eq(n, 4, "%s", tok_last_error(t));
    cr_assert_eq(ids[0], 5 + 'a');
    cr_assert_eq(ids[1], TOK_THINK_BEGIN);
    cr_assert_eq(ids[2], 5 + 0xff);
    cr_assert_eq(ids[3], TOK_THINK_END);
    cr_assert_eq(tok_encode(t, "<thin", ids, 300), 5, "a prefix is plain bytes");
    cr_assert_eq(tok_encode(t, "<<think>>", ids, 300), 3);

    /* random byte strings with special fragments mixed in */
    uint64_t x = 7;
    for (int trial = 0; trial < 500; trial++) {
        char buf[600];
        size_t len = 0;
        int k = (int)(splitmix(&x) % 60);
        for (int i = 0; i < k; i++) {
            uint64_t r = splitmix(&x);
            const char *frag = r % 7 == 0 ? "<think>" : r % 7 == 1 ? "</think>" : r % 7 == 2 ? "</thi" : NULL;
            if (frag) {
                memcpy(buf + len, frag, strlen(frag));
                len += strlen(frag);
            } else {
                buf[len++] = (char)(r >> 8);
            }
        }
        expect_round_trip(t, buf, len);
    }
    tok_free(t);

    /* an alphabet holding the characters of "<think>": the strings still
     * encode to the specials, and round trips stay lossless */
    t = chars("<think>/ab");
    n = tok_encode(t, "<think>ab</think>", ids, 300);
    cr_assert_eq(n, 4, "%s", tok_last_error(t));
    cr_assert_eq(ids[0], TOK_THINK_BEGIN);
    cr_assert_eq(ids[3], TOK_THINK_END);
    cr_assert_eq(tok_encode(t, "<thin", ids, 300), 5);
    cr_assert_eq(ids[0], 5 + 0); /* '<' is symbol 0 */
    expect_round_trip(t, "<thi</think><think>k>", strlen("<thi</think><think>k>"));
    tok_free(t);

    /* all 95 printable characters */
    char printable[96];
    for (int c = 0x20; c <= 0x7E; c++) printable[c - 0x20] = (char)c;
    printable[95] = '\0';
    t = chars(printable);
    cr_assert_eq(tok_vocab_size(t), 100);
    expect_round_trip(t, printable, 95);
    tok_free(t);
}

Test(tokenizer, spec_and_display) {
    char err[256] = "", spec[TOK_SPEC_MAX];
    tok_tokenizer *t = chars("0123+=");
    cr_assert_eq(tok_spec(t, spec, sizeof spec), (int)strlen("chars:0123+="));
    cr_assert_str_eq(spec, "chars:0123+=");
    tok_tokenizer *u = NULL;
    cr_assert_eq(tok_new_from_spec(spec, &u, err, sizeof err), TOK_OK, "%s", err);
    cr_assert_eq(tok_vocab_size(u), tok_vocab_size(t));
    int64_t a[16], b[16];
    cr_assert_eq(tok_encode(t, "<think>12+3=13</think>", a, 16), 9);
    cr_assert_eq(tok_encode(u, "<think>12+3=13</think>", b, 16), 9);
    cr_assert_eq(memcmp(a, b, sizeof(int64_t) * 9), 0, "same ids after the spec round trip");
    char small[6];
    cr_assert_eq(tok_spec(t, small, sizeof small), TOK_ERR_SPACE);
    cr_assert_str_eq(small, "");
    tok_free(u);

    /* a spec with ':' inside the alphabet, and the widest one */
    char wide[96 + 8];
    char printable[96];
    for (int c = 0x20; c <= 0x7E; c++) printable[c - 0x20] = (char)c;
    printable[95] = '\0';
    snprintf(wide, sizeof wide, "chars:%s", printable);
    cr_assert_eq(tok_new_from_spec(wide, &u, err, sizeof err), TOK_OK, "%s", err);
    cr_assert_eq(tok_spec(u, spec, sizeof spec), (int)strlen(wide));
    cr_assert_str_eq(spec, wide);
    tok_free(u);

    cr_assert_eq(tok_new_from_spec("bytes", &u, err, sizeof err), TOK_OK, "%s", err);
    cr_assert_eq(tok_spec(u, spec, sizeof spec), 5);
    cr_assert_str_eq(spec, "bytes");
    cr_assert_eq(tok_vocab_size(u), 261);

    /* display strings */
    char buf[32];
    cr_assert_str_eq(tok_token_str(t, TOK_PAD, buf, sizeof buf), "<pad>");
    cr_assert_str_eq(tok_token_str(t, TOK_BOS, buf, sizeof buf), "<bos>");
    cr_assert_str_eq(tok_token_str(t, TOK_EOS, buf, sizeof buf), "<eos>");
    cr_assert_str_eq(tok_token_str(t, TOK_THINK_BEGIN, buf, sizeof buf), "<think>");
    cr_assert_str_eq(tok_token_str(t, TOK_THINK_END, buf, sizeof buf), "</think>");
    cr_assert_str_eq(tok_token_str(t, 5 + 4, buf, sizeof buf), "+");
    cr_assert_str_eq(tok_token_str(t, 11, buf, sizeof buf), "<invalid:11>");
    cr_assert_str_eq(tok_token_str(t, -3, buf, sizeof buf), "<invalid:-3>");
    cr_assert_str_eq(tok_token_str(u, 5 + '\n', buf, sizeof buf), "\\x0a");
    cr_assert_str_eq(tok_token_str(u, 5 + '\\', buf, sizeof buf), "\\\\");
    cr_assert_str_eq(tok_token_str(u, 5 + 0xe9, buf, sizeof buf), "\\xe9");
    cr_assert_str_eq(tok_token_str(u, 5 + 'q', buf, sizeof buf), "q");
    tok_free(u);
    tok_free(t);

    /* bad specs */
    cr_assert_eq(tok_new_from_spec("words:abc", &u, err, sizeof err), TOK_ERR_ARG);
    cr_assert_null(u);
    cr_assert_not_null(strstr(err, "\"words:abc\" is neither \"bytes\" nor \"chars:<alphabet>\""), "%s", err);
    cr_assert_eq(tok_new_from_spec("chars:", &u, err, sizeof err), TOK_ERR_ARG);
    cr_assert_not_null(strstr(err, "tokenizer spec \"chars:\": tokenizer alphabet is empty"), "%s", err);
    cr_assert_eq(tok_new_from_spec("chars:aa", &u, err, sizeof err), TOK_ERR_ARG);
    cr_assert_not_null(strstr(err, "repeats"), "%s", err);
    cr_assert_eq(tok_new_from_spec("bytes ", &u, err, sizeof err), TOK_ERR_ARG);
    cr_assert_eq(tok_new_from_spec(NULL, &u, err, sizeof err), TOK_ERR_ARG);
    cr_assert_eq(tok_spec(NULL, spec, sizeof spec), TOK_ERR_ARG);
}
