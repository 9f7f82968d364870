/* buffer — the one bounded, growable byte buffer (after libcurl's dynbuf).
 *
 * Every place that builds text or collects bytes of unknown length (the /metrics
 * exposition, a rendered note, an HTTP response body, a spool read) uses this instead of
 * its own realloc loop. A buffer is initialised with the most bytes it may ever hold, so
 * outside input can never make it grow without bound.
 *
 * Errors are sticky: once an append fails — CALLLOG_NOMEM when memory ran out,
 * CALLLOG_INVALID when the content would exceed the maximum — the buffer keeps that code
 * and every later append, printf or reserve is a no-op returning it, so a caller can append
 * many pieces and check once at the end (buffer_error, or a NULL from buffer_take). The
 * content is always NUL-terminated once anything was allocated (the terminator is not
 * counted in the length nor in the maximum). A buffer is not locked: one thread at a time.
 *
 * Typical use:
 *     buffer b;
 *     buffer_init(&b, 1 << 20);
 *     buffer_add_str(&b, "hello, ");
 *     buffer_printf(&b, "%s", name);
 *     char *text = buffer_take(&b);   // NULL: buffer_error said why; else caller frees
 */
#ifndef CALLLOG_BUFFER_H
#define CALLLOG_BUFFER_H

#include <stddef.h>

#include "common/error.h"

/* The buffer's fields are public so it can live on the stack; use the functions. */
typedef struct buffer {
    char *data;        /* NULL until the first byte is added */
    size_t len;        /* bytes held, terminator excluded */
    size_t cap;        /* bytes allocated, terminator included */
    size_t max;        /* most bytes `len` may reach */
    calllog_code code; /* CALLLOG_OK, or the sticky failure */
} buffer;

/* Makes `b` an empty buffer that may hold at most `max` bytes; allocates nothing. */
void buffer_init(buffer *b, size_t max);

/* Appends `n` bytes of `data` (which may hold NULs; may be NULL when `n` is 0). Returns
 * CALLLOG_OK or the sticky error. */
calllog_code buffer_add(buffer *b, const void *data, size_t n);

/* Appends the NUL-terminated string `s`. Returns CALLLOG_OK or the sticky error. */
calllog_code buffer_add_str(buffer *b, const char *s);

/* Appends printf-formatted text. Returns CALLLOG_OK or the sticky error (a format error
 * counts as CALLLOG_INVALID). */
calllog_code buffer_printf(buffer *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Makes room for `n` more bytes and returns where they go, for a read(2)-style producer
 * that then calls buffer_commit; NULL on a (sticky) error. */
char *buffer_reserve(buffer *b, size_t n);

/* Counts `n` bytes written at buffer_reserve's pointer as content (at most what was
 * reserved) and re-terminates the text. */
void buffer_commit(buffer *b, size_t n);

/* Empties the content but keeps the memory and any sticky error (so a buffer reused per
 * line still reports a failure of an earlier line). */
void buffer_reset(buffer *b);

/* The content, NUL-terminated and writable, or NULL when nothing was ever allocated. */
char *buffer_ptr(const buffer *b);

/* Bytes held, terminator excluded. */
size_t buffer_len(const buffer *b);

/* CALLLOG_OK, or the sticky failure (CALLLOG_NOMEM, CALLLOG_INVALID). */
calllog_code buffer_error(const buffer *b);

/* Hands the content to the caller, who frees it with free(): always a NUL-terminated
 * string ("" for an empty buffer). Returns NULL when the buffer has an error (or the empty
 * string could not be allocated, which becomes its error). The buffer is left empty, its
 * error kept. */
char *buffer_take(buffer *b);

/* Frees the content and makes `b` empty again, error cleared, same maximum. */
void buffer_free(buffer *b);

#endif
