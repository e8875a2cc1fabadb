/*
 * tokenizer.h -- the character- and byte-level tokenizers of sequence
 * policies: text <-> token ids. Torch-free. This header is the API and its
 * documentation.
 *
 * Ids. Five special tokens come first and are the same in every tokenizer:
 *
 *     TOK_PAD 0   padding; decodes to nothing
 *     TOK_BOS 1   start of sequence; decodes to nothing
 *     TOK_EOS 2   end of sequence; decoding stops there (see tok_decode)
 *     TOK_THINK_BEGIN 3   the string ENV_THINK_BEGIN, "<think>"
 *     TOK_THINK_END   4   the string ENV_THINK_END, "</think>"
 *
 * then one id per symbol, from TOK_FIRST_SYMBOL (5):
 *   - chars: over an alphabet of distinct printable ASCII characters (0x20
 *     to 0x7E, e.g. a text plugin's alphabet "0123456789+*=,"): symbol i of
 *     the alphabet is id 5 + i. Vocabulary 5 + strlen(alphabet).
 *   - bytes: every byte value b is id 5 + b. Vocabulary 261.
 *
 * Encoding scans left to right; wherever the text starts with "<think>" or
 * "</think>" that string becomes its single special id (so a byte tokenizer
 * never spells them out), and every other byte is looked up as a symbol. A
 * byte outside a char alphabet is an error naming the character and its
 * offset. BOS and EOS are never added: the caller places them.
 *
 * Decoding writes each id's text: a symbol its character, the think
 * specials their strings, PAD and BOS nothing. At the first EOS it stops
 * (ids after it are not looked at), so a sampled completion decodes to its
 * text; tok_decode_flags with TOK_DECODE_PAST_EOS makes EOS decode to
 * nothing too and goes on to the end.
 *
 * Round trip. For any text over the alphabet (any bytes in byte mode),
 * decode(encode(text)) == text: the special strings come back as they went
 * in. (A byte text may hold NUL; use tok_encode_n for it.)
 *
 * Checkpoints. tok_spec gives a one-line description -- "chars:" followed by
 * the alphabet, or "bytes" -- and tok_new_from_spec builds the same
 * tokenizer from it, so a run can store the spec next to the model.
 *
 * Errors. Functions that can fail return a count (>= 0) or a negative
 * tok_status with a one-line message: the constructors write it into the
 * caller's (err, errlen) (err may be NULL), since there is no handle yet;
 * encode and decode keep it in the handle, read with tok_last_error.
 *
 * Threads. The vocabulary never changes after creation, but a failing
 * encode or decode writes the handle's message, so a tokenizer serves one
 * thread at a time; they are small (a few hundred bytes): make one per
 * thread from the same alphabet or spec.
 */
#ifndef RLT_DATA_TOKENIZER_H
#define RLT_DATA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    TOK_PAD = 0,
    TOK_BOS = 1,
    TOK_EOS = 2,
    TOK_THINK_BEGIN = 3,
    TOK_THINK_END = 4,
    TOK_FIRST_SYMBOL = 5, /* the id of the first symbol */
    TOK_NUM_SPECIAL = 5
};

#define TOK_THINK_BEGIN_STR "<think>"  /* == ENV_THINK_BEGIN of envs/env.h */
#define TOK_THINK_END_STR "</think>"   /* == ENV_THINK_END                 */
#define TOK_SPEC_MAX 128               /* a spec fits in this many bytes    */

typedef enum tok_status {
    TOK_OK = 0,
    TOK_ERR_ARG = -1,   /* invalid argument, alphabet or spec                 */
    TOK_ERR_NOMEM = -2, /* allocation failed                                  */
    TOK_ERR_CHAR = -3,  /* encode: a character outside the alphabet           */
    TOK_ERR_SPACE = -4, /* the output buffer is too small                     */
    TOK_ERR_ID = -5     /* decode: an id outside [0, vocab_size)              */
} tok_status;

typedef enum tok_kind { TOK_KIND_CHARS = 1, TOK_KIND_BYTES = 2 } tok_kind;

/* tok_decode_flags flags. */
#define TOK_DECODE_PAST_EOS 1u /* EOS decodes to nothing and decoding goes on */

typedef struct tok_tokenizer tok_tokenizer; /* opaque */

/* A char-level tokenizer over `alphabet`: 1 to 95 distinct printable ASCII
 * characters. An empty alphabet, a character outside 0x20..0x7E or a
 * duplicate is TOK_ERR_ARG naming the character and its offset(s). */
int tok_new_chars(const char *alphabet, tok_tokenizer **out, char *err, size_t errlen);
/* The byte-level tokenizer (256 symbols). */
int tok_new_bytes(tok_tokenizer **out, char *err, size_t errlen);
/* From a spec: "chars:<alphabet>" or "bytes". */
int tok_new_from_spec(const char *spec, tok_tokenizer **out, char *err, size_t errlen);
void tok_free(tok_tokenizer *tok); /* NULL-safe */

tok_kind tok_get_kind(const tok_tokenizer *tok);
/* 5 + the number of symbols; 0 for NULL. */
int64_t tok_vocab_size(const tok_tokenizer *tok);
/* The char alphabet ("" for bytes); valid while tok lives. */
const char *tok_alphabet(const tok_tokenizer *tok);

/* The spec string into buf [cap]; returns its length, or TOK_ERR_SPACE
 * when it does not fit (it always fits in TOK_SPEC_MAX). */
int tok_spec(const tok_tokenizer *tok, char *buf, size_t cap);

/* Encode the NUL-terminated text into ids [cap]; returns the number of ids.
 * ids may be NULL with cap 0 to count them. TOK_ERR_CHAR for a character
 * outside the alphabet (the message names it and its offset), TOK_ERR_SPACE
 * when more than cap ids are needed (the message says how many). */
int64_t tok_encode(tok_tokenizer *tok, const char *text, int64_t *ids, int64_t cap);
/* The same over text [len] bytes, which may contain NUL (byte mode). */
int64_t tok_encode_n(tok_tokenizer *tok, const char *text, size_t len, int64_t *ids, int64_t cap);

/* Decode ids [n] into out [cap] (NUL-terminated), stopping at the first EOS;
 * returns the number of bytes written before the NUL. out may be NULL with
 * cap 0 to measure. TOK_ERR_ID for an id outside [0, vocab_size) (before
 * the EOS), TOK_ERR_SPACE when the text needs more than cap - 1 bytes (the
 * message says how many; out is then ""). */
int64_t tok_decode(tok_tokenizer *tok, const int64_t *ids, int64_t n, char *out, size_t cap);
/* The same with flags: 0 (as tok_decode) or TOK_DECODE_PAST_EOS. */
int64_t tok_decode_flags(tok_tokenizer *tok, const int64_t *ids, int64_t n, unsigned flags, char *out, size_t cap);

/* The message of the last failed encode or decode on tok ("" before any). */
const char *tok_last_error(const tok_tokenizer *tok);

/* One token for display into buf [cap]; returns buf. Specials are "<pad>",
 * "<bos>", "<eos>", "<think>", "</think>"; printable symbols themselves;
 * other bytes "\xNN" (and '\' as "\\"); an id outside the vocabulary
 * "<invalid:ID>". */
const char *tok_token_str(const tok_tokenizer *tok, int64_t id, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif /* RLT_DATA_TOKENIZER_H */
