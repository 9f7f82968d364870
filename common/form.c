/* form — application/x-www-form-urlencoded parsing that survives hostile input.
 *
 * Twilio posts its status callbacks form-encoded, and anyone on the Internet can post
 * anything to the same URL, so this parser is written for bytes an attacker chose. It makes
 * two linear passes: the first counts the non-empty `&`-separated segments (refusing more
 * than `max_params` before allocating anything), the second decodes every key and value into
 * one block that also holds the parameter array. One allocation per body keeps the cost
 * O(n), makes a failed parse trivially leak-free, and lets form_free release everything
 * with a single free(). */
#include "common/form.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* How a decode ended; form_parse maps these onto form_status. */
typedef enum { DECODE_OK = 0, DECODE_ESCAPE, DECODE_NUL } decode_status;

/* The value of one hex digit, or -1 when `c` is not one (locale-independent). */
static int form_hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes `len` bytes into `out` (at least `len` bytes, not NUL-terminated here) and stores
 * the decoded length in `*outlen`; stops at the first bad escape or decoded NUL. */
static decode_status form_decode_raw(const char *in, size_t len, int plus_is_space, char *out,
                                     size_t *outlen)
{
    size_t i = 0, o = 0;
    while (i < len) {
        unsigned char c = (unsigned char)in[i];
        if (c == '%') {
            if (len - i < 3)
                return DECODE_ESCAPE;
            int hi = form_hex_value((unsigned char)in[i + 1]);
            int lo = form_hex_value((unsigned char)in[i + 2]);
            if (hi < 0 || lo < 0)
                return DECODE_ESCAPE;
            c = (unsigned char)(hi * 16 + lo);
            i += 3;
        } else {
            if (c == '+' && plus_is_space)
                c = ' ';
            i++;
        }
        if (c == '\0')
            return DECODE_NUL;
        out[o++] = (char)c;
    }
    *outlen = o;
    return DECODE_OK;
}

/* Public wrapper around form_decode_raw that NUL-terminates and reports -1 on any error. */
long form_decode(const char *in, size_t len, int plus_is_space, char *out)
{
    size_t n = 0;
    if (len > (unsigned long)LONG_MAX)
        return -1;
    if (form_decode_raw(in, len, plus_is_space, out, &n) != DECODE_OK)
        return -1;
    out[n] = '\0';
    return (long)n;
}

/* Counts the non-empty `&`-separated segments of `body`, giving up once `limit` is passed
 * (the count returned is then limit + 1). */
static size_t form_count_segments(const char *body, size_t len, size_t limit)
{
    size_t count = 0;
    const char *p = body, *end = body + len;
    while (p < end && count <= limit) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *seg_end = amp ? amp : end;
        if (seg_end > p)
            count++;
        p = amp ? amp + 1 : end;
    }
    return count;
}

/* Decodes one segment `seg` (`key[=value]`, non-empty) into `*param`, writing the strings at
 * `*store` and advancing it past what was written. */
static form_status form_parse_segment(const char *seg, size_t seg_len, form_param *param,
                                      char **store)
{
    const char *eq = memchr(seg, '=', seg_len);
    size_t key_len = eq ? (size_t)(eq - seg) : seg_len;
    size_t n = 0;
    decode_status ds;

    if (key_len == 0)
        return FORM_ERR_EMPTY_KEY;
    ds = form_decode_raw(seg, key_len, 1, *store, &n);
    if (ds != DECODE_OK)
        return ds == DECODE_NUL ? FORM_ERR_NUL : FORM_ERR_ESCAPE;
    param->key = *store;
    param->key[n] = '\0';
    *store += n + 1;

    if (eq) {
        ds = form_decode_raw(eq + 1, seg_len - key_len - 1, 1, *store, &n);
        if (ds != DECODE_OK)
            return ds == DECODE_NUL ? FORM_ERR_NUL : FORM_ERR_ESCAPE;
    } else {
        n = 0;
    }
    param->value = *store;
    param->value[n] = '\0';
    *store += n + 1;
    return FORM_OK;
}

/* Decodes every segment of `body` into `out`, whose block was sized by form_parse. */
static form_status form_fill(const char *body, size_t len, form *out, char *store)
{
    const char *p = body, *end = body + len;
    size_t i = 0;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *seg_end = amp ? amp : end;
        if (seg_end > p) {
            form_status st = form_parse_segment(p, (size_t)(seg_end - p), &out->params[i], &store);
            if (st != FORM_OK)
                return st;
            i++;
        }
        p = amp ? amp + 1 : end;
    }
    out->count = i;
    return FORM_OK;
}

/* Parses a form body; see form.h. The parameter array and every string live in one block
 * owned by `out->params`: decoded text never outgrows its raw text, so `len` bytes plus two
 * terminators per parameter always suffice. */
form_status form_parse(const char *body, size_t len, size_t max_params, form *out)
{
    size_t count, size;
    form_status st;

    if (out == NULL)
        return FORM_ERR_NOMEM;
    out->params = NULL;
    out->count = 0;
    if (body == NULL || len == 0)
        return FORM_OK;

    count = form_count_segments(body, len, max_params);
    if (count > max_params)
        return FORM_ERR_TOO_MANY;
    if (count == 0)
        return FORM_OK;
    if (count > (SIZE_MAX - len) / (sizeof(form_param) + 2))
        return FORM_ERR_NOMEM;
    size = count * sizeof(form_param) + len + 2 * count;

    out->params = malloc(size);
    if (out->params == NULL)
        return FORM_ERR_NOMEM;
    st = form_fill(body, len, out, (char *)(out->params + count));
    if (st != FORM_OK)
        form_free(out);
    return st;
}

/* Frees the single block form_parse allocated and leaves `f` empty. */
void form_free(form *f)
{
    if (f == NULL)
        return;
    free(f->params);
    f->params = NULL;
    f->count = 0;
}

/* Linear search for the first parameter named `key`. */
const char *form_get(const form *f, const char *key)
{
    if (f == NULL || key == NULL)
        return NULL;
    for (size_t i = 0; i < f->count; i++) {
        if (strcmp(f->params[i].key, key) == 0)
            return f->params[i].value;
    }
    return NULL;
}

/* Maps a status onto a short English reason. */
const char *form_strerror(form_status s)
{
    switch (s) {
    case FORM_OK:
        return "ok";
    case FORM_ERR_ESCAPE:
        return "bad percent-escape";
    case FORM_ERR_EMPTY_KEY:
        return "empty parameter name";
    case FORM_ERR_NUL:
        return "NUL byte in parameter";
    case FORM_ERR_TOO_MANY:
        return "too many parameters";
    case FORM_ERR_NOMEM:
        return "out of memory";
    }
    return "unknown form status";
}
