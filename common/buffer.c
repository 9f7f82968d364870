/* buffer — the one bounded, growable byte buffer; see buffer.h.
 *
 * Growth doubles the allocation from BUFFER_FIRST_CAP (or takes exactly what one large
 * append needs, when that is more), never past the maximum plus the terminator, so appends
 * are amortized O(1) and a capped buffer never allocates more than it may hold. All length
 * arithmetic is checked against the maximum before it can wrap. */
#include "common/buffer.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The first allocation, for buffers that start small and mostly stay so. */
#define BUFFER_FIRST_CAP 256

/* Makes `b` an empty buffer holding at most `max` bytes. */
void buffer_init(buffer *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max < (size_t)-1 ? max : (size_t)-1 - 1; /* room for the terminator */
    b->code = CALLLOG_OK;
}

/* Records `code` as the sticky failure and returns it. */
static calllog_code buffer_fail(buffer *b, calllog_code code)
{
    if (b->code == CALLLOG_OK)
        b->code = code;
    return b->code;
}

/* Makes room for `n` more bytes plus the terminator. Returns CALLLOG_OK or the error. */
static calllog_code buffer_grow(buffer *b, size_t n)
{
    if (b->code != CALLLOG_OK)
        return b->code;
    if (n > b->max - b->len)
        return buffer_fail(b, CALLLOG_INVALID);
    size_t need = b->len + n + 1;
    if (need <= b->cap)
        return CALLLOG_OK;
    size_t limit = b->max + 1; /* need <= limit, by the check above */
    size_t cap = b->cap == 0 ? BUFFER_FIRST_CAP : b->cap > limit / 2 ? limit : b->cap * 2;
    if (cap < need)
        cap = need; /* one large append: exactly what it needs */
    if (cap > limit)
        cap = limit;
    char *p = realloc(b->data, cap);
    if (p == NULL)
        return buffer_fail(b, CALLLOG_NOMEM);
    if (b->data == NULL)
        p[0] = '\0';
    b->data = p;
    b->cap = cap;
    return CALLLOG_OK;
}

/* Appends `n` bytes of `data`. */
calllog_code buffer_add(buffer *b, const void *data, size_t n)
{
    if (n == 0)
        return b->code;
    if (buffer_grow(b, n) != CALLLOG_OK)
        return b->code;
    memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
    return CALLLOG_OK;
}

/* Appends a NUL-terminated string. */
calllog_code buffer_add_str(buffer *b, const char *s)
{
    return buffer_add(b, s, strlen(s));
}

/* Appends printf-formatted text: formats into the free room, and again after growing
 * when it did not fit. */
calllog_code buffer_printf(buffer *b, const char *fmt, ...)
{
    va_list ap;
    if (b->code != CALLLOG_OK)
        return b->code;
    size_t room = b->cap > b->len ? b->cap - b->len : 0;
    va_start(ap, fmt);
    int n = vsnprintf(room ? b->data + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n < 0)
        return buffer_fail(b, CALLLOG_INVALID);
    if ((size_t)n >= room) {
        if (buffer_grow(b, (size_t)n) != CALLLOG_OK) {
            if (b->data != NULL)
                b->data[b->len] = '\0'; /* undo a partial format */
            return b->code;
        }
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
    return CALLLOG_OK;
}

/* Makes room for `n` more bytes; returns where they go, or NULL. */
char *buffer_reserve(buffer *b, size_t n)
{
    if (buffer_grow(b, n) != CALLLOG_OK)
        return NULL;
    return b->data + b->len;
}

/* Counts `n` bytes written at the reserved room as content. */
void buffer_commit(buffer *b, size_t n)
{
    if (b->data == NULL || b->code != CALLLOG_OK)
        return;
    if (n > b->cap - 1 - b->len)
        n = b->cap - 1 - b->len;
    b->len += n;
    b->data[b->len] = '\0';
}

/* Empties the content, keeping the memory and the sticky error. */
void buffer_reset(buffer *b)
{
    b->len = 0;
    if (b->data != NULL)
        b->data[0] = '\0';
}

/* The content, or NULL when nothing was ever allocated. */
char *buffer_ptr(const buffer *b)
{
    return b->data;
}

/* Bytes held. */
size_t buffer_len(const buffer *b)
{
    return b->len;
}

/* The sticky failure, or CALLLOG_OK. */
calllog_code buffer_error(const buffer *b)
{
    return b->code;
}

/* Hands the content over (an allocated "" when empty), or NULL on an error. */
char *buffer_take(buffer *b)
{
    if (b->code == CALLLOG_OK && b->data == NULL && buffer_grow(b, 0) != CALLLOG_OK)
        return NULL;
    if (b->code != CALLLOG_OK) {
        free(b->data);
        b->data = NULL;
        b->len = b->cap = 0;
        return NULL;
    }
    char *p = b->data;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

/* Frees the content and clears the error. */
void buffer_free(buffer *b)
{
    free(b->data);
    buffer_init(b, b->max);
}
