/* fuzz_form — libFuzzer target for the form-encoded body parser (common/form.c).
 *
 * Feeds arbitrary bytes to form_parse and releases the result; sanitizers catch memory
 * errors and leaks. As an oracle, every successful parse is re-encoded (each byte outside
 * the unreserved set percent-escaped) and parsed again: the second parse must succeed and
 * yield exactly the same parameters, in the same order. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/form.h"

#define FUZZ_MAX_PARAMS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Appends `s` to `out` with every byte but [A-Za-z0-9._~-] written as %XX. */
static size_t fuzz_encode(const char *s, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '.' || c == '_' || c == '~' || c == '-') {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    return o;
}

/* Re-encodes `f`, parses it again and aborts unless the result equals `f`. */
static void fuzz_check_roundtrip(const form *f, size_t size)
{
    char *buf = malloc(3 * size + 2 * f->count + 1);
    size_t len = 0;
    form g;
    if (buf == NULL)
        return;
    for (size_t i = 0; i < f->count; i++) {
        if (i > 0)
            buf[len++] = '&';
        len += fuzz_encode(f->params[i].key, buf + len);
        buf[len++] = '=';
        len += fuzz_encode(f->params[i].value, buf + len);
    }
    if (form_parse(buf, len, FUZZ_MAX_PARAMS, &g) != FORM_OK || g.count != f->count)
        abort();
    for (size_t i = 0; i < f->count; i++) {
        if (strcmp(g.params[i].key, f->params[i].key) != 0 ||
            strcmp(g.params[i].value, f->params[i].value) != 0)
            abort();
    }
    form_free(&g);
    free(buf);
}

/* One fuzz input: parse, check invariants and the round trip, free. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    form f;
    form_status st = form_parse((const char *)data, size, FUZZ_MAX_PARAMS, &f);
    if (st != FORM_OK) {
        if (f.params != NULL || f.count != 0 || form_strerror(st) == NULL)
            abort();
        return 0;
    }
    if (f.count > FUZZ_MAX_PARAMS)
        abort();
    for (size_t i = 0; i < f.count; i++) {
        if (f.params[i].key[0] == '\0')
            abort();
    }
    if (f.count > 0 && form_get(&f, f.params[0].key) != f.params[0].value)
        abort();
    fuzz_check_roundtrip(&f, size);
    form_free(&f);
    return 0;
}
