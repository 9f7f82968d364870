/* bench_signature — what verifying one Twilio callback costs, next to a bare HMAC-SHA1.
 *
 * The ingest spends its CPU per webhook on form_parse + signature_check_form (design §1).
 * This benchmark times both on a realistic signed `completed` callback (26 parameters, the
 * ones Twilio sends), and, in the same run, the floor any implementation has to pay: one
 * and two one-shot OpenSSL HMAC-SHA1s (+ base64) of the very same string to sign. Two,
 * because the check also tries the URL's port variant (https://host → https://host:443)
 * the way Twilio's SDKs do. Every case first proves it computes the right answer (the
 * check says SIG_OK; the bare HMAC reproduces the header), so a fast wrong result cannot
 * pass for a fast one.
 *
 * Usage: bench_signature [--iterations N] [--repeat R] [--only CASE] [--list]
 *   prints one table row per case: ns/op (best and median of R runs of N iterations).
 * The timed loops are wrapped in CALLGRIND_TOGGLE_COLLECT (a no-op outside valgrind), so
 * `valgrind --tool=callgrind --collect-atstart=no bench_signature --only CASE` counts the
 * instructions of exactly N x R iterations of that case, warm-up excluded
 * (tests/bench/bench_signature.sh divides). Not a unit test: no timing thresholds here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <valgrind/callgrind.h>

#include "common/form.h"
#include "common/signature.h"

#define BENCH_URL "https://calllog.example.com/twilio/log-call"
#define BENCH_TOKEN "8f14e45fceea167a5a36dedd4bea2543"
#define BENCH_MAX_PARAMS 512
#define BENCH_MAX_REPEAT 101

/* The body Twilio POSTs when a call completes (status callback, call-progress-events). */
static const char bench_body[] =
    "Called=%2B551130001000&ToState=SP&CallerCountry=BR&Direction=inbound"
    "&Timestamp=Tue%2C+24+Nov+2026+19%3A02%3A35+%2B0000&CallbackSource=call-progress-events"
    "&CallerState=SP&SequenceNumber=3&CallSid=CA7f3c1e9a0b2d4c6e8f0a1b2c3d4e5f60"
    "&To=%2B551130001000&ToCountry=BR&ApiVersion=2010-04-01&CalledCity=SAO+PAULO"
    "&CallStatus=completed&Duration=3&From=%2B5511971730783&CallDuration=155"
    "&AccountSid=AC0123456789abcdef0123456789abcdef&CalledCountry=BR&CallerCity=SAO+PAULO"
    "&ToCity=SAO+PAULO&FromCountry=BR&Caller=%2B5511971730783&FromCity=SAO+PAULO"
    "&CalledState=SP&FromState=SP";

/* What every case reads: the parsed body, the header, and the string to sign. */
typedef struct bench_input {
    form parsed;
    char header[SIGNATURE_LEN + 1];
    char *to_sign; /* URL + sorted key/value pairs, owned */
    size_t to_sign_len;
    const char *tokens[1];
} bench_input;

/* One benchmark case: runs `n` iterations, returns 0 when every one gave the right answer. */
typedef int (*bench_fn)(const bench_input *in, long n);

typedef struct bench_case {
    const char *name;
    const char *what;
    bench_fn run;
} bench_case;

/* A sink the compiler cannot see through, so no iteration is optimized away. */
static volatile unsigned char bench_sink;

/* Monotonic time in nanoseconds. */
static double bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* qsort comparator over form_param pointers: by key, then value (Twilio's order). */
static int bench_param_cmp(const void *pa, const void *pb)
{
    const form_param *a = *(const form_param *const *)pa;
    const form_param *b = *(const form_param *const *)pb;
    int c = strcmp(a->key, b->key);
    return c != 0 ? c : strcmp(a->value, b->value);
}

/* Builds URL + sorted key/value pairs into in->to_sign. Returns 0 or -1. */
static int bench_build_to_sign(bench_input *in)
{
    size_t n = in->parsed.count, len = strlen(BENCH_URL);
    const form_param **sorted = malloc(n * sizeof(*sorted));
    if (sorted == NULL)
        return -1;
    for (size_t i = 0; i < n; i++) {
        sorted[i] = &in->parsed.params[i];
        len += strlen(sorted[i]->key) + strlen(sorted[i]->value);
    }
    qsort(sorted, n, sizeof(*sorted), bench_param_cmp);
    in->to_sign = malloc(len + 1);
    if (in->to_sign == NULL) {
        free(sorted);
        return -1;
    }
    strcpy(in->to_sign, BENCH_URL);
    for (size_t i = 0; i < n; i++) {
        strcat(in->to_sign, sorted[i]->key);
        strcat(in->to_sign, sorted[i]->value);
    }
    in->to_sign_len = len;
    free(sorted);
    return 0;
}

/* One-shot HMAC-SHA1 of the string to sign, base64 into `out` (SIGNATURE_LEN + 1 bytes). */
static int bench_bare_hmac(const bench_input *in, char *out)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (HMAC(EVP_sha1(), BENCH_TOKEN, (int)strlen(BENCH_TOKEN), (const unsigned char *)in->to_sign,
             in->to_sign_len, md, &md_len) == NULL ||
        md_len != 20)
        return -1;
    EVP_EncodeBlock((unsigned char *)out, md, 20);
    return 0;
}

/* Parses the body, signs it with the library, and checks that a bare HMAC agrees. */
static int bench_setup(bench_input *in)
{
    char check[SIGNATURE_LEN + 1];
    memset(in, 0, sizeof(*in));
    in->tokens[0] = BENCH_TOKEN;
    if (form_parse(bench_body, strlen(bench_body), BENCH_MAX_PARAMS, &in->parsed) != FORM_OK) {
        fprintf(stderr, "bench_signature: the benchmark body does not parse\n");
        return -1;
    }
    if (signature_compute(BENCH_TOKEN, BENCH_URL, &in->parsed, in->header) != 0 ||
        bench_build_to_sign(in) != 0 || bench_bare_hmac(in, check) != 0) {
        fprintf(stderr, "bench_signature: setup failed (out of memory or crypto error)\n");
        return -1;
    }
    if (strcmp(check, in->header) != 0) {
        fprintf(stderr, "bench_signature: signature_compute %s != bare HMAC %s\n", in->header,
                check);
        return -1;
    }
    return 0;
}

/* Releases what bench_setup allocated. */
static void bench_teardown(bench_input *in)
{
    form_free(&in->parsed);
    free(in->to_sign);
}

/* Case parse: form_parse + form_free of the body. */
static int bench_run_parse(const bench_input *in, long n)
{
    int bad = 0;
    for (long i = 0; i < n; i++) {
        form f;
        bad |= form_parse(bench_body, sizeof(bench_body) - 1, BENCH_MAX_PARAMS, &f) != FORM_OK;
        bad |= f.count != in->parsed.count;
        form_free(&f);
    }
    return bad ? -1 : 0;
}

/* Case check: signature_check_form on the already parsed body. */
static int bench_run_check(const bench_input *in, long n)
{
    int bad = 0;
    for (long i = 0; i < n; i++)
        bad |= signature_check_form(in->tokens, 1, BENCH_URL, &in->parsed, in->header) != SIG_OK;
    return bad ? -1 : 0;
}

/* Case parse_check: what the ingest does per request — parse, then check. */
static int bench_run_parse_check(const bench_input *in, long n)
{
    int bad = 0;
    for (long i = 0; i < n; i++) {
        form f;
        bad |= form_parse(bench_body, sizeof(bench_body) - 1, BENCH_MAX_PARAMS, &f) != FORM_OK;
        bad |= signature_check_form(in->tokens, 1, BENCH_URL, &f, in->header) != SIG_OK;
        form_free(&f);
    }
    return bad ? -1 : 0;
}

/* Baseline hmac1: one bare HMAC-SHA1 + base64 of the prebuilt string to sign. */
static int bench_run_hmac1(const bench_input *in, long n)
{
    int bad = 0;
    char out[SIGNATURE_LEN + 1];
    for (long i = 0; i < n; i++) {
        bad |= bench_bare_hmac(in, out) != 0;
        bench_sink ^= (unsigned char)out[0];
    }
    return bad || strcmp(out, in->header) != 0 ? -1 : 0;
}

/* Baseline hmac2: two bare HMACs, as many as the check computes for a port-less URL. */
static int bench_run_hmac2(const bench_input *in, long n)
{
    int bad = 0;
    char out[SIGNATURE_LEN + 1];
    for (long i = 0; i < n; i++) {
        bad |= bench_bare_hmac(in, out) != 0;
        bad |= bench_bare_hmac(in, out) != 0;
        bench_sink ^= (unsigned char)out[0];
    }
    return bad || strcmp(out, in->header) != 0 ? -1 : 0;
}

static const bench_case bench_cases[] = {
    {"parse", "form_parse + form_free (26 params)", bench_run_parse},
    {"check", "signature_check_form (pre-parsed)", bench_run_check},
    {"parse_check", "form_parse + signature_check_form", bench_run_parse_check},
    {"hmac1", "baseline: 1x HMAC(EVP_sha1) + base64", bench_run_hmac1},
    {"hmac2", "baseline: 2x HMAC(EVP_sha1) + base64", bench_run_hmac2},
};
#define BENCH_NCASES (sizeof(bench_cases) / sizeof(bench_cases[0]))

/* qsort comparator for doubles. */
static int bench_double_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Times `c` `repeat` times over `n` iterations; prints a row. Returns 0 or -1 (wrong). */
static int bench_time_case(const bench_case *c, const bench_input *in, long n, int repeat)
{
    double ns[BENCH_MAX_REPEAT];
    if (c->run(in, n / 10 + 1) != 0) { /* warm-up, and the correctness proof */
        fprintf(stderr, "bench_signature: case %s gave a wrong answer\n", c->name);
        return -1;
    }
    for (int r = 0; r < repeat; r++) {
        double t0 = bench_now_ns();
        CALLGRIND_TOGGLE_COLLECT;
        int wrong = c->run(in, n) != 0;
        CALLGRIND_TOGGLE_COLLECT;
        if (wrong) {
            fprintf(stderr, "bench_signature: case %s gave a wrong answer\n", c->name);
            return -1;
        }
        ns[r] = (bench_now_ns() - t0) / (double)n;
    }
    qsort(ns, (size_t)repeat, sizeof(ns[0]), bench_double_cmp);
    printf("| %-12s | %-38s | %9.0f | %9.0f | %10.0f |\n", c->name, c->what, ns[0], ns[repeat / 2],
           1e9 / ns[repeat / 2]);
    return 0;
}

/* Parses a positive long option value, or exits with a message. */
static long bench_arg_long(const char *opt, const char *v, long max)
{
    char *end = NULL;
    long x = v ? strtol(v, &end, 10) : 0;
    if (v == NULL || *end != '\0' || x < 1 || x > max) {
        fprintf(stderr, "bench_signature: %s wants an integer in 1..%ld\n", opt, max);
        exit(2);
    }
    return x;
}

/* Prints the usage line. */
static void bench_usage(FILE *to)
{
    fprintf(to, "usage: bench_signature [--iterations N] [--repeat R] [--only CASE] [--list]\n");
}

int main(int argc, char **argv)
{
    long n = 200000;
    int repeat = 7, rc = 0, matched = 0;
    const char *only = NULL;
    bench_input in;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--iterations") == 0) {
            n = bench_arg_long(argv[i], argv[i + 1], 1000000000L);
            i++;
        } else if (strcmp(argv[i], "--repeat") == 0) {
            repeat = (int)bench_arg_long(argv[i], argv[i + 1], BENCH_MAX_REPEAT);
            i++;
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            only = argv[++i];
        } else if (strcmp(argv[i], "--list") == 0) {
            for (size_t c = 0; c < BENCH_NCASES; c++)
                printf("%s\n", bench_cases[c].name);
            return 0;
        } else {
            bench_usage(strcmp(argv[i], "--help") == 0 ? stdout : stderr);
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    if (bench_setup(&in) != 0)
        return 1;
    printf("string to sign: %zu bytes, body: %zu bytes, %zu params, %ld iterations x %d\n\n",
           in.to_sign_len, sizeof(bench_body) - 1, in.parsed.count, n, repeat);
    printf("| %-12s | %-38s | %9s | %9s | %10s |\n", "case", "what", "best ns", "median ns",
           "ops/s");
    printf("|--------------|----------------------------------------|-----------|-----------|"
           "------------|\n");
    for (size_t c = 0; c < BENCH_NCASES && rc == 0; c++) {
        if (only && strcmp(only, bench_cases[c].name) != 0)
            continue;
        matched = 1;
        rc = bench_time_case(&bench_cases[c], &in, n, repeat);
    }
    bench_teardown(&in);
    if (only && !matched) {
        fprintf(stderr, "bench_signature: no case named %s (see --list)\n", only);
        return 2;
    }
    return rc == 0 ? 0 : 1;
}
