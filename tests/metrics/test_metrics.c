/*
 * test_metrics.c -- Criterion tests of trainer/tboard.c (CRC-32C, protobuf
 * encoding, record framing, event files read back by an independent Python
 * reader) and trainer/metrics.c (JSON numbers and escaping, metrics.jsonl
 * parsed back by Python's json module, resume truncation, console, duration
 * and progress lines). Torch-free: starts in milliseconds.
 */
#define _POSIX_C_SOURCE 200809L

#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "metrics.h"
#include "tboard.h"

#define PYTHON "/usr/bin/python3"
#define VERIFIER RLT_SOURCE_DIR "/tests/metrics/verify_metrics.py"

/* ---- helpers ------------------------------------------------------------ */

static void make_tmpdir(char *dir, size_t size) {
    snprintf(dir, size, "/tmp/rlt-test-metrics-XXXXXX");
    cr_assert_not_null(mkdtemp(dir), "mkdtemp failed");
}

/* Removes the files of a flat test directory, then the directory. */
static void remove_tmpdir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[1024];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        remove(path);
    }
    closedir(d);
    rmdir(dir);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot create %s", path);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
}

/* The whole file as a NUL-terminated string (caller frees). */
static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    cr_assert_not_null(s);
    cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    if (len) *len = (size_t)n;
    return s;
}

/* Runs the Python verifier; skips the test if the interpreter is missing. */
static void run_verifier(const char *mode, const char *file, const char *expected_path) {
    if (access(PYTHON, X_OK) != 0)
        cr_skip_test(PYTHON " is not installed: cannot run the independent %s reader", mode);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s %s %s '%s' '%s'", PYTHON, VERIFIER, mode, file, expected_path);
    int status = system(cmd);
    cr_assert(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "verifier failed (status %d): %s", status, cmd);
}

/* The single event file in dir, into path (asserts exactly one). */
static void find_event_file(const char *dir, char *path, size_t size) {
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    int found = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "events.out.tfevents.", 20) != 0) continue;
        snprintf(path, size, "%s/%s", dir, e->d_name);
        found++;
    }
    closedir(d);
    cr_assert_eq(found, 1, "expected one event file in %s, found %d", dir, found);
}

/* ---- tboard: CRC, encoding, framing ------------------------------------ */

Test(tboard, crc32c_and_mask) {
    /* The standard check value, and RFC 3720 (iSCSI) appendix B.4 vectors. */
    cr_assert_eq(tb_crc32c("123456789", 9), 0xE3069283u);
    uint8_t zeros[32] = {0}, ones[32], inc[32], dec[32];
    for (int i = 0; i < 32; i++) {
        ones[i] = 0xff;
        inc[i] = (uint8_t)i;
        dec[i] = (uint8_t)(31 - i);
    }
    cr_assert_eq(tb_crc32c(zeros, 32), 0x8A9136AAu);
    cr_assert_eq(tb_crc32c(ones, 32), 0x62A8AB43u);
    cr_assert_eq(tb_crc32c(inc, 32), 0x46DD794Eu);
    cr_assert_eq(tb_crc32c(dec, 32), 0x113FDB5Cu);
    cr_assert_eq(tb_crc32c("", 0), 0u);
    /* Extending a CRC equals the CRC of the concatenation. */
    cr_assert_eq(tb_crc32c_extend(tb_crc32c("1234", 4), "56789", 5), 0xE3069283u);
    cr_assert_eq(tb_crc32c_extend(0, "123456789", 9), 0xE3069283u);
    /* Mask: rotr(0xE3069283, 15) = 0x2507C60D; + 0xa282ead8 = 0xC78AB0E5. */
    cr_assert_eq(tb_mask_crc(0xE3069283u), 0xC78AB0E5u);
    cr_assert_eq(tb_mask_crc(0), 0xa282ead8u);
    cr_assert_eq(tb_mask_crc(0xffffffffu), 0xa282ead7u); /* wraps mod 2^32 */
}

Test(tboard, encode_exact_bytes) {
    tb_buf b = {0};

    /* Event{wall_time: 1.5, file_version: "brain.Event:2"} */
    cr_assert_eq(tb_encode_file_version(&b, 1.5), TB_OK);
    static const uint8_t fv[] = {0x09, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f, 0x1a, 13, 'b', 'r', 'a', 'i',
                                 'n', '.', 'E', 'v', 'e', 'n', 't', ':', '2'};
    cr_assert_eq(b.len, sizeof fv);
    cr_assert_arr_eq(b.data, fv, sizeof fv);
    /* Every TensorFlow event file starts with these 12 bytes: length 24 and
     * its masked CRC a3 7f 4b 22 (the file_version event is 24 bytes long). */
    tb_buf first = {0};
    cr_assert_eq(tb_encode_record(&first, b.data, b.len), TB_OK);
    static const uint8_t tf_magic[12] = {0x18, 0, 0, 0, 0, 0, 0, 0, 0xa3, 0x7f, 0x4b, 0x22};
    cr_assert_arr_eq(first.data, tf_magic, 12);
    tb_buf_free(&first);

    /* Event{wall_time: 1.5, step: 1200, summary{value{tag:"loss", simple_value:0.25}}} */
    b.len = 0;
    const char *tag = "loss";
    double value = 0.25;
    cr_assert_eq(tb_encode_scalars(&b, 1.5, 1200, 1, &tag, &value), TB_OK);
    static const uint8_t ev[27] = {
        0x09, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f, /* field 1, fixed64: 1.5            */
        0x10, 0xb0, 0x09,                   /* field 2, varint: 1200            */
        0x2a, 13,                           /* field 5 (summary), 13 bytes      */
        0x0a, 11,                           /*   Summary.value, 11 bytes        */
        0x0a, 4, 'l', 'o', 's', 's',        /*     tag                          */
        0x15, 0, 0, 0x80, 0x3e              /*     simple_value (fixed32) 0.25f */
    };
    cr_assert_eq(b.len, sizeof ev);
    cr_assert_arr_eq(b.data, ev, sizeof ev);

    /* The framed record: length 27 (LE), masked CRC of the length, data, masked
     * CRC of the data. The CRCs were computed with a bitwise CRC-32C. */
    tb_buf rec = {0};
    cr_assert_eq(tb_encode_record(&rec, ev, sizeof ev), TB_OK);
    cr_assert_eq(rec.len, 27u + 16u);
    static const uint8_t head[12] = {27, 0, 0, 0, 0, 0, 0, 0, 0x1a, 0x0d, 0x9e, 0x13};
    cr_assert_arr_eq(rec.data, head, 12);
    cr_assert_arr_eq(rec.data + 12, ev, sizeof ev);
    static const uint8_t tail[4] = {0xb1, 0xd7, 0xd9, 0xb6};
    cr_assert_arr_eq(rec.data + 12 + 27, tail, 4);
    /* The header CRC agrees with the API on the same bytes. */
    uint32_t len_crc = tb_mask_crc(tb_crc32c(head, 8));
    cr_assert_eq(len_crc, 0x139e0d1au);

    /* Step 0 is omitted (proto3 default); a negative step is a 10-byte varint. */
    b.len = 0;
    cr_assert_eq(tb_encode_scalars(&b, 0.0, 0, 0, NULL, NULL), TB_OK);
    static const uint8_t empty[] = {0x09, 0, 0, 0, 0, 0, 0, 0, 0, 0x2a, 0};
    cr_assert_eq(b.len, sizeof empty);
    cr_assert_arr_eq(b.data, empty, sizeof empty);
    b.len = 0;
    cr_assert_eq(tb_encode_session_start(&b, 0.0, -1), TB_OK);
    static const uint8_t neg[] = {0x09, 0, 0, 0, 0, 0, 0, 0, 0,
                                  0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
                                  0x3a, 2, 0x08, 0x01}; /* session_log{status: START} */
    cr_assert_eq(b.len, sizeof neg);
    cr_assert_arr_eq(b.data, neg, sizeof neg);

    /* Invalid arguments leave the buffer untouched. */
    size_t before = b.len;
    const char *null_tag = NULL;
    cr_assert_eq(tb_encode_scalars(&b, 0, 1, 1, &null_tag, &value), TB_EINVAL);
    cr_assert_eq(tb_encode_text(&b, 0, 1, "t", NULL), TB_EINVAL);
    cr_assert_eq(b.len, before);

    tb_buf_free(&b);
    tb_buf_free(&rec);
    tb_buf_free(NULL);
}

Test(tboard, event_file_read_back) {
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    char err[512] = "";
    tb_writer *w = NULL;
    cr_assert_eq(tb_open(&w, dir, 1700000000.25, err, sizeof err), TB_OK, "%s", err);

    /* File name: events.out.tfevents.<unix seconds>.<hostname> */
    char host[256] = "", want[512];
    gethostname(host, sizeof host);
    snprintf(want, sizeof want, "%s/events.out.tfevents.1700000000.%s", dir, host);
    cr_assert_str_eq(tb_path(w), want);

    const char *tags[3] = {"train/loss", "train/lr", "reward/mean"};
    double v1[3] = {0.4132, 1e-6, 0.61}, v2[3] = {0.39, 9e-7, NAN}, v3[3] = {0.35, 8e-7, 0.7};
    cr_assert_eq(tb_write_scalars(w, 1700000001.5, 1, 3, tags, v1), TB_OK, "%s", tb_error(w));
    cr_assert_eq(tb_write_scalars(w, 1700000002.5, 2, 3, tags, v2), TB_OK, "%s", tb_error(w));
    cr_assert_eq(tb_write_text(w, 1700000003.0, 2, "config", "| key | value |\n|---|---|\n| lr | 1e-6 |"),
                 TB_OK);
    cr_assert_eq(tb_write_session_start(w, 1700000004.0, 3), TB_OK);
    cr_assert_eq(tb_write_scalars(w, 1700000005.0, 3, 3, tags, v3), TB_OK);
    cr_assert_eq(tb_write_scalar(w, 1700000006.0, 5000000000LL, "big/step", -2.5), TB_OK);

    /* Records are flushed per call: the file already holds all of them. */
    struct stat st;
    cr_assert_eq(stat(want, &st), 0);
    cr_assert_gt(st.st_size, 0);
    cr_assert_eq(tb_close(w, err, sizeof err), TB_OK, "%s", err);
    cr_assert_eq(tb_close(NULL, NULL, 0), TB_OK);

    char expected_path[256];
    snprintf(expected_path, sizeof expected_path, "%s/expected.json", dir);
    write_file(expected_path,
               "[{\"wall_time\": 1700000000.25, \"step\": 0, \"file_version\": \"brain.Event:2\"},\n"
               " {\"wall_time\": 1700000001.5, \"step\": 1, \"scalars\": [[\"train/loss\", 0.4132],"
               " [\"train/lr\", 1e-6], [\"reward/mean\", 0.61]]},\n"
               " {\"wall_time\": 1700000002.5, \"step\": 2, \"scalars\": [[\"train/loss\", 0.39],"
               " [\"train/lr\", 9e-7], [\"reward/mean\", null]]},\n"
               " {\"wall_time\": 1700000003.0, \"step\": 2, \"text\": [\"config\","
               " \"| key | value |\\n|---|---|\\n| lr | 1e-6 |\"]},\n"
               " {\"wall_time\": 1700000004.0, \"step\": 3, \"session_start\": true},\n"
               " {\"wall_time\": 1700000005.0, \"step\": 3, \"scalars\": [[\"train/loss\", 0.35],"
               " [\"train/lr\", 8e-7], [\"reward/mean\", 0.7]]},\n"
               " {\"wall_time\": 1700000006.0, \"step\": 5000000000, \"scalars\": [[\"big/step\", -2.5]]}]\n");
    run_verifier("tfevents", want, expected_path);

    /* A second writer in the same second never clobbers the first file. */
    tb_writer *w2 = NULL;
    cr_assert_eq(tb_open(&w2, dir, 1700000000.9, err, sizeof err), TB_OK, "%s", err);
    snprintf(want, sizeof want, "%s/events.out.tfevents.1700000000.%s.1", dir, host);
    cr_assert_str_eq(tb_path(w2), want);
    cr_assert_eq(tb_close(w2, err, sizeof err), TB_OK);

    /* Errors name the path and the reason. */
    tb_writer *w3 = (tb_writer *)&w3;
    cr_assert_eq(tb_open(&w3, "/nonexistent-rlt-dir", 1.0, err, sizeof err), TB_EIO);
    cr_assert_null(w3);
    cr_assert_not_null(strstr(err, "/nonexistent-rlt-dir/events.out.tfevents.1."), "%s", err);
    cr_assert_not_null(strstr(err, "No such file or directory"), "%s", err);
    cr_assert_eq(tb_open(&w3, NULL, 1.0, err, sizeof err), TB_EINVAL);
    cr_assert_eq(tb_write_scalar(NULL, 0, 0, "x", 1), TB_EINVAL);

    remove_tmpdir(dir);
}

/* ---- metrics: JSON ------------------------------------------------------ */

Test(metrics, json_numbers) {
    char b[32];
    struct {
        double v;
        const char *want;
    } cases[] = {
        {0.1, "0.1"},
        {1.0 / 3.0, "0.3333333333333333"},
        {0.1 + 0.2, "0.30000000000000004"},
        {1e-6, "1e-06"},
        {0.4132, "0.4132"},
        {42.0, "42"},
        {-3.0, "-3"},
        {0.0, "0"},
        {412.0, "412"},
        {9007199254740991.0, "9007199254740991"},
        {1e20, "1e+20"},
        {-2.5e-300, "-2.5e-300"},
        {5e-324, "5e-324"},
        {1.7976931348623157e308, "1.7976931348623157e+308"},
        {NAN, "null"},
        {INFINITY, "null"},
        {-INFINITY, "null"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int n = mx_format_number(b, cases[i].v);
        cr_assert_str_eq(b, cases[i].want, "case %zu: %s", i, b);
        cr_assert_eq(n, (int)strlen(cases[i].want));
        if (isfinite(cases[i].v)) cr_assert_eq(strtod(b, NULL), cases[i].v, "round trip %s", b);
    }
}

Test(metrics, json_line_order_escaping_null) {
    mx_record *r = mx_record_new();
    cr_assert_not_null(r);
    mx_record_begin(r, 1200);
    cr_assert_eq(mx_add(r, "train/loss", 0.4132), MX_OK);
    cr_assert_eq(mx_add(r, "lr", 1e-6), MX_OK);
    cr_assert_eq(mx_add(r, "grad_norm", NAN), MX_OK);
    cr_assert_eq(mx_add(r, "a\"b\\c/\n\t\x01", 2.0), MX_OK);
    cr_assert_eq(mx_add_str(r, "phase", "caf\xc3\xa9 \xe2\x82\xac \xff end"), MX_OK);
    cr_assert_eq(mx_add(r, "perf/ms", INFINITY), MX_OK);
    cr_assert_eq(mx_add(r, "lr", 2e-6), MX_OK); /* replace keeps the first position */
    cr_assert_eq(mx_record_count(r), 6u);

    char line[512];
    long n = mx_format_json(line, sizeof line, r);
    const char *want = "{\"step\":1200,\"train/loss\":0.4132,\"lr\":2e-06,\"grad_norm\":null,"
                       "\"a\\\"b\\\\c/\\n\\t\\u0001\":2,\"phase\":\"caf\xc3\xa9 \xe2\x82\xac \\ufffd end\","
                       "\"perf/ms\":null}\n";
    cr_assert_str_eq(line, want);
    cr_assert_eq(n, (long)strlen(want));
    /* snprintf contract: a short buffer gets a prefix, the return is the full length. */
    char small[8];
    cr_assert_eq(mx_format_json(small, sizeof small, r), (long)strlen(want));
    cr_assert_str_eq(small, "{\"step\"");

    /* Reserved and empty keys are refused with a message naming the key. */
    cr_assert_eq(mx_add(r, "step", 1), MX_EINVAL);
    cr_assert_not_null(strstr(mx_record_error(r), "'step' is reserved"));
    cr_assert_eq(mx_add(r, "", 1), MX_EINVAL);
    cr_assert_eq(mx_add(r, NULL, 1), MX_EINVAL);
    cr_assert_eq(mx_add(NULL, "x", 1), MX_EINVAL);
    double v = 0;
    cr_assert_eq(mx_get(r, "lr", &v), MX_OK);
    cr_assert_eq(v, 2e-6);
    cr_assert_eq(mx_get(r, "phase", &v), MX_EINVAL); /* a string, not a number */
    cr_assert_eq(mx_get(r, "absent", &v), MX_EINVAL);

    /* begin() empties the record for the next step. */
    mx_record_begin(r, 7);
    cr_assert_eq(mx_record_count(r), 0u);
    mx_format_json(line, sizeof line, r);
    cr_assert_str_eq(line, "{\"step\":7}\n");
    mx_record_free(r);
    mx_record_free(NULL);
}

/* Writes steps [from, to] through a logger: train/loss = 1/step, and a NaN at step 3. */
static void log_steps(mx_logger *L, mx_record *r, int64_t from, int64_t to) {
    for (int64_t s = from; s <= to; s++) {
        mx_record_begin(r, s);
        mx_add(r, "train/loss", 1.0 / (double)s);
        mx_add(r, "grad_norm", s == 3 ? NAN : 0.5 * (double)s);
        mx_add(r, "perf/ms_per_step", 412.0);
        cr_assert_eq(mx_log(L, r, 1700000000.0 + (double)s), MX_OK, "%s", mx_error(L));
    }
}

Test(metrics, jsonl_and_tensorboard_with_resume) {
    char dir[64], err[512] = "", path[256], expected[256], evpath[512];
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    snprintf(expected, sizeof expected, "%s/expected.json", dir);
    mx_record *r = mx_record_new();

    /* Fresh run: steps 1..5. */
    mx_options opt = {.run_dir = dir, .resume_step = -1, .tensorboard = 1, .wall_time = 1700000000.0};
    mx_logger *L = NULL;
    cr_assert_eq(mx_open(&L, &opt, err, sizeof err), MX_OK, "%s", err);
    cr_assert_str_eq(mx_jsonl_path(L), path);
    log_steps(L, r, 1, 5);
    mx_record_begin(r, 6);
    mx_add_str(r, "note", "strings go to JSON only");
    cr_assert_eq(mx_log(L, r, 1700000006.0), MX_OK);
    cr_assert_eq(mx_log_text(L, 0, "config", "lr = 1e-6", 1700000000.0), MX_OK);
    find_event_file(dir, evpath, sizeof evpath);
    cr_assert_str_eq(mx_tb_path(L), evpath);
    cr_assert_eq(mx_close(L, err, sizeof err), MX_OK, "%s", err);

    write_file(expected,
               "[{\"step\":1,\"train/loss\":1,\"grad_norm\":0.5,\"perf/ms_per_step\":412},"
               " {\"step\":2,\"train/loss\":0.5,\"grad_norm\":1,\"perf/ms_per_step\":412},"
               " {\"step\":3,\"train/loss\":0.3333333333333333,\"grad_norm\":null,\"perf/ms_per_step\":412},"
               " {\"step\":4,\"train/loss\":0.25,\"grad_norm\":2,\"perf/ms_per_step\":412},"
               " {\"step\":5,\"train/loss\":0.2,\"grad_norm\":2.5,\"perf/ms_per_step\":412},"
               " {\"step\":6,\"note\":\"strings go to JSON only\"}]");
    run_verifier("jsonl", path, expected);

    write_file(expected,
               "[{\"wall_time\": 1700000000.0, \"step\": 0, \"file_version\": \"brain.Event:2\"},"
               " {\"wall_time\": 1700000001.0, \"step\": 1, \"scalars\": [[\"train/loss\", 1], [\"grad_norm\", 0.5], [\"perf/ms_per_step\", 412]]},"
               " {\"wall_time\": 1700000002.0, \"step\": 2, \"scalars\": [[\"train/loss\", 0.5], [\"grad_norm\", 1], [\"perf/ms_per_step\", 412]]},"
               " {\"wall_time\": 1700000003.0, \"step\": 3, \"scalars\": [[\"train/loss\", 0.3333333333333333], [\"grad_norm\", null], [\"perf/ms_per_step\", 412]]},"
               " {\"wall_time\": 1700000004.0, \"step\": 4, \"scalars\": [[\"train/loss\", 0.25], [\"grad_norm\", 2], [\"perf/ms_per_step\", 412]]},"
               " {\"wall_time\": 1700000005.0, \"step\": 5, \"scalars\": [[\"train/loss\", 0.2], [\"grad_norm\", 2.5], [\"perf/ms_per_step\", 412]]},"
               " {\"wall_time\": 1700000006.0, \"step\": 6, \"scalars\": []},"
               " {\"wall_time\": 1700000000.0, \"step\": 0, \"text\": [\"config\", \"lr = 1e-6\"]}]");
    run_verifier("tfevents", evpath, expected);
    remove(evpath);

    /* Simulate a kill in the middle of writing step 7: a line without '\n'. */
    FILE *f = fopen(path, "ab");
    fputs("{\"step\":7,\"train/lo", f);
    fclose(f);

    /* Resume from the checkpoint at step 3: lines 4..6 and the partial line go. */
    opt.resume_step = 3;
    opt.wall_time = 1700000100.0;
    cr_assert_eq(mx_open(&L, &opt, err, sizeof err), MX_OK, "%s", err);
    size_t kept = 0, dropped = 0;
    mx_resume_info(L, &kept, &dropped);
    cr_assert_eq(kept, 3u);
    cr_assert_eq(dropped, 4u);
    log_steps(L, r, 4, 5);
    find_event_file(dir, evpath, sizeof evpath);
    cr_assert_eq(mx_close(L, err, sizeof err), MX_OK, "%s", err);

    write_file(expected,
               "[{\"step\":1,\"train/loss\":1,\"grad_norm\":0.5,\"perf/ms_per_step\":412},"
               " {\"step\":2,\"train/loss\":0.5,\"grad_norm\":1,\"perf/ms_per_step\":412},"
               " {\"step\":3,\"train/loss\":0.3333333333333333,\"grad_norm\":null,\"perf/ms_per_step\":412},"
               " {\"step\":4,\"train/loss\":0.25,\"grad_norm\":2,\"perf/ms_per_step\":412},"
               " {\"step\":5,\"train/loss\":0.2,\"grad_norm\":2.5,\"perf/ms_per_step\":412}]");
    run_verifier("jsonl", path, expected);
    /* The resumed event file starts with the restart marker at step 4. */
    write_file(expected,
               "[{\"wall_time\": 1700000100.0, \"step\": 0, \"file_version\": \"brain.Event:2\"},"
               " {\"wall_time\": 1700000100.0, \"step\": 4, \"session_start\": true},"
               " {\"wall_time\": 1700000004.0, \"step\": 4, \"scalars\": [[\"train/loss\", 0.25], [\"grad_norm\", 2], [\"perf/ms_per_step\", 412]]},"
               " {\"wall_time\": 1700000005.0, \"step\": 5, \"scalars\": [[\"train/loss\", 0.2], [\"grad_norm\", 2.5], [\"perf/ms_per_step\", 412]]}]");
    run_verifier("tfevents", evpath, expected);

    /* Open errors name the file and the reason. */
    mx_options bad = {.run_dir = "/nonexistent-rlt-dir", .resume_step = -1};
    cr_assert_eq(mx_open(&L, &bad, err, sizeof err), MX_EIO);
    cr_assert_null(L);
    cr_assert_not_null(strstr(err, "/nonexistent-rlt-dir/metrics.jsonl: cannot open"), "%s", err);
    cr_assert_eq(mx_open(&L, NULL, err, sizeof err), MX_EINVAL);
    cr_assert_eq(mx_close(NULL, NULL, 0), MX_OK);

    mx_record_free(r);
    remove_tmpdir(dir);
}

Test(metrics, resume_truncation) {
    char dir[64], path[256], err[512] = "";
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    write_file(path, "{\"step\":1,\"a\":1}\n"
                     "{\"step\":2,\"a\":2}\n"
                     "{ \"step\" : 3 , \"a\":3}\n" /* foreign spacing still parses */
                     "garbage line\n"
                     "{\"step\":4,\"a\":4}\n"
                     "{\"step\":10}\n"
                     "{\"step\":-1,\"warmup\":1}\n"
                     "{\"steps\":2}\n"
                     "{\"step\":5,\"a\":");          /* cut by a kill */
    size_t kept = 99, dropped = 99;
    cr_assert_eq(mx_truncate_jsonl(path, 3, &kept, &dropped, err, sizeof err), MX_OK, "%s", err);
    cr_assert_eq(kept, 4u);
    cr_assert_eq(dropped, 5u);
    char *text = read_file(path, NULL);
    cr_assert_str_eq(text, "{\"step\":1,\"a\":1}\n"
                           "{\"step\":2,\"a\":2}\n"
                           "{ \"step\" : 3 , \"a\":3}\n"
                           "{\"step\":-1,\"warmup\":1}\n");
    free(text);
    /* Idempotent; the temp file is gone. */
    cr_assert_eq(mx_truncate_jsonl(path, 3, &kept, &dropped, err, sizeof err), MX_OK);
    cr_assert_eq(kept, 4u);
    cr_assert_eq(dropped, 0u);
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    cr_assert_neq(access(tmp, F_OK), 0);
    /* k = 0 keeps only steps <= 0. */
    cr_assert_eq(mx_truncate_jsonl(path, 0, &kept, &dropped, NULL, 0), MX_OK);
    cr_assert_eq(kept, 1u);
    cr_assert_eq(dropped, 3u);
    /* A missing file is fine: nothing was logged before the checkpoint. */
    remove(path);
    cr_assert_eq(mx_truncate_jsonl(path, 3, &kept, &dropped, err, sizeof err), MX_OK);
    cr_assert_eq(kept, 0u);
    cr_assert_eq(dropped, 0u);
    cr_assert_neq(access(path, F_OK), 0);
    cr_assert_eq(mx_truncate_jsonl(NULL, 3, NULL, NULL, err, sizeof err), MX_EINVAL);
    remove_tmpdir(dir);
}

/* ---- console, duration, progress ---------------------------------------- */

Test(metrics, console_line) {
    mx_record *r = mx_record_new();
    mx_record_begin(r, 1200);
    mx_add(r, "train/loss", 0.41321);
    mx_add(r, "reward/mean", 0.61);
    mx_add(r, "reward/std", 0.2249);
    mx_add(r, "kl", 0.013);
    mx_add(r, "grad_norm", 0.87);
    mx_add(r, "lr", 1e-6);
    mx_add(r, "acc", 0.8734);
    mx_add(r, "epoch", 3.0);
    mx_add(r, "perf/ms_per_step", 412.4);
    mx_add(r, "perf/samples_per_s", 3140.0);
    static const mx_column cols[] = {
        {"train/loss", "loss", MX_NUM, NULL},
        {"reward/mean", "reward", MX_NUM, "reward/std"},
        {"kl", NULL, MX_NUM, NULL},
        {"grad_norm", "gnorm", MX_NUM, NULL},
        {"lr", "lr", MX_SCI, NULL},
        {"acc", "acc", MX_PCT, NULL},
        {"epoch", "epoch", MX_INT, NULL},
        {"absent/key", "absent", MX_NUM, NULL}, /* left out */
        {"perf/ms_per_step", "ms", MX_MS, NULL},
        {"perf/samples_per_s", "samples/s", MX_RATE, NULL},
    };
    size_t ncols = sizeof cols / sizeof cols[0];
    char line[512];
    long n = mx_format_console(line, sizeof line, r, 5000, cols, ncols);
    const char *want = "step  1200/5000 | loss 0.4132 | reward 0.61\xc2\xb1" "0.2249 | kl 0.013 | "
                       "gnorm 0.87 | lr 1.0e-06 | acc 87.3% | epoch 3 | 412 ms | 3.1k samples/s";
    cr_assert_str_eq(line, want);
    cr_assert_eq(n, (long)strlen(want));

    /* Unknown total; large, tiny and non-finite values; rates with suffixes. */
    mx_record_begin(r, 7);
    mx_add(r, "train/loss", NAN);
    mx_add(r, "reward/mean", 123456.7);
    mx_add(r, "kl", 2.5e-5);
    mx_add(r, "grad_norm", -INFINITY);
    mx_add(r, "perf/ms_per_step", 3.14159);
    mx_add(r, "perf/samples_per_s", 999960.0);
    mx_format_console(line, sizeof line, r, 0, cols, ncols);
    cr_assert_str_eq(line, "step 7 | loss nan | reward 123457 | kl 2.50e-05 | gnorm -inf | 3.1 ms | "
                           "1.0M samples/s");
    mx_record_begin(r, 12);
    mx_add(r, "perf/samples_per_s", 41.26);
    mx_format_console(line, sizeof line, r, 100, cols, ncols);
    cr_assert_str_eq(line, "step   12/100 | 41.3 samples/s");
    mx_record_free(r);
}

Test(metrics, duration_and_progress) {
    char b[128];
    struct {
        double s;
        const char *want;
    } d[] = {{3725, "1:02:05"}, {65, "1:05"}, {5, "0:05"}, {0, "0:00"}, {59.6, "1:00"},
             {3599.4, "59:59"}, {3600, "1:00:00"}, {93600, "26:00:00"}, {-1, "?:??"},
             {NAN, "?:??"}, {INFINITY, "?:??"}};
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) {
        int n = mx_format_duration(b, sizeof b, d[i].s);
        cr_assert_str_eq(b, d[i].want, "%g s", d[i].s);
        cr_assert_eq(n, (int)strlen(d[i].want));
    }

    /* 1200 of 5000 steps in 375 s: 3.20 it/s, 3800 left -> 1187.5 s -> 19:48. */
    long n = mx_format_progress(b, sizeof b, 1200, 5000, 0, 375.0, 20);
    const char *want = "[####................]  1200/5000  24% | 3.20 it/s | 6:15 < 19:48";
    cr_assert_str_eq(b, want);
    cr_assert_eq(n, (long)strlen(want));
    /* Resumed at 1000: only 200 steps ran in 100 s -> 2.00 it/s, 3800 / 2 = 1900 s left. */
    mx_format_progress(b, sizeof b, 1200, 5000, 1000, 100.0, 0);
    cr_assert_str_eq(b, " 1200/5000  24% | 2.00 it/s | 1:40 < 31:40");
    /* Slow steps print seconds per step; before the first step the ETA is unknown. */
    mx_format_progress(b, sizeof b, 2, 10, 0, 5.0, 4);
    cr_assert_str_eq(b, "[....]   2/10  20% | 2.50 s/it | 0:05 < 0:20");
    mx_format_progress(b, sizeof b, 0, 10, 0, 0.0, 4);
    cr_assert_str_eq(b, "[....]   0/10   0% | ? it/s | 0:00 < ?:??");
    mx_format_progress(b, sizeof b, 10, 10, 0, 10.0, 4);
    cr_assert_str_eq(b, "[####]  10/10 100% | 1.00 it/s | 0:10 < 0:00");
    mx_format_progress(b, sizeof b, 42, 0, 0, 21.0, 4);
    cr_assert_str_eq(b, "42 | 2.00 it/s | 0:21");
}

Test(metrics, logger_console_and_tty_progress) {
    char dir[64], err[512] = "";
    make_tmpdir(dir, sizeof dir);
    FILE *tty = tmpfile(); /* stands in for a terminal shared by stdout and stderr */
    cr_assert_not_null(tty);
    static const mx_column cols[] = {{"train/loss", "loss", MX_NUM, NULL},
                                     {"perf/ms_per_step", "ms", MX_MS, NULL}};
    mx_options opt = {.run_dir = dir, .resume_step = -1, .total_steps = 10, .console = tty,
                      .columns = cols, .ncolumns = 2, .progress = tty, .progress_is_tty = 1};
    mx_logger *L = NULL;
    cr_assert_eq(mx_open(&L, &opt, err, sizeof err), MX_OK, "%s", err);
    mx_record *r = mx_record_new();
    mx_progress(L, 2, 5.0);
    mx_record_begin(r, 2);
    mx_add(r, "train/loss", 0.5);
    mx_add(r, "perf/ms_per_step", 250);
    cr_assert_eq(mx_log(L, r, 1.0), MX_OK);
    mx_progress(L, 3, 6.0);
    cr_assert_eq(mx_close(L, err, sizeof err), MX_OK, "%s", err);

    rewind(tty);
    char got[1024];
    size_t len = fread(got, 1, sizeof got - 1, tty);
    got[len] = '\0';
    const char *want =
        "\r[####....................]   2/10  20% | 2.50 s/it | 0:05 < 0:20\033[K"
        "\r\033[K"
        "step   2/10 | loss 0.5 | 250 ms\n"
        "\r[#######.................]   3/10  30% | 2.00 s/it | 0:06 < 0:14\033[K"
        "\n";
    cr_assert_str_eq(got, want);
    fclose(tty);

    /* Not a TTY: no progress output at all, console lines only. */
    FILE *plain = tmpfile();
    opt.console = plain;
    opt.progress = plain;
    opt.progress_is_tty = 0;
    cr_assert_eq(mx_open(&L, &opt, err, sizeof err), MX_OK, "%s", err);
    mx_progress(L, 2, 5.0);
    cr_assert_eq(mx_log(L, r, 1.0), MX_OK);
    cr_assert_eq(mx_close(L, err, sizeof err), MX_OK);
    rewind(plain);
    len = fread(got, 1, sizeof got - 1, plain);
    got[len] = '\0';
    cr_assert_str_eq(got, "step   2/10 | loss 0.5 | 250 ms\n");
    fclose(plain);
    mx_record_free(r);
    remove_tmpdir(dir);
}
