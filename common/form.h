/* form — application/x-www-form-urlencoded parsing that survives hostile input.
 *
 * Twilio posts its callbacks form-encoded. The parser decodes `+` and `%XX`, keeps
 * parameters in arrival order (repeated keys included), and refuses — never crashes on —
 * bad escapes, empty keys, embedded NUL bytes and more than `max_params` parameters. */
#ifndef CALLLOG_FORM_H
#define CALLLOG_FORM_H

#include <stddef.h>

typedef enum {
    FORM_OK = 0,
    FORM_ERR_ESCAPE,    /* a `%` not followed by two hex digits */
    FORM_ERR_EMPTY_KEY, /* `=value` with no key */
    FORM_ERR_NUL,       /* a decoded NUL byte */
    FORM_ERR_TOO_MANY,  /* more than max_params parameters */
    FORM_ERR_NOMEM
} form_status;

typedef struct form_param {
    char *key;   /* decoded, NUL-terminated */
    char *value; /* decoded, NUL-terminated ("" when the pair had no `=`) */
} form_param;

typedef struct form {
    form_param *params; /* in arrival order */
    size_t count;
} form;

/* Parses `len` bytes of `body` (not NUL-terminated). Empty segments (`a=1&&b=2`) are
 * skipped. On success `out` owns its memory (form_free). On error `out` is empty. */
form_status form_parse(const char *body, size_t len, size_t max_params, form *out);

/* Releases what form_parse allocated; `f` is left empty. */
void form_free(form *f);

/* The first value of `key`, or NULL. */
const char *form_get(const form *f, const char *key);

/* A short English reason for a status ("bad percent-escape", ...). */
const char *form_strerror(form_status s);

/* Decodes `len` bytes of `in` (`+` → space when `plus_is_space`, `%XX`) into `out`,
 * which must hold len + 1 bytes. Returns the decoded length, or -1 on a bad escape or
 * a decoded NUL byte. */
long form_decode(const char *in, size_t len, int plus_is_space, char *out);

#endif
