/* error — the one error type; see error.h for the convention and the classification. */
#include "common/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Resets `e` to "no error". */
void error_clear(calllog_error *e)
{
    if (e == NULL)
        return;
    memset(e, 0, sizeof *e);
    e->retry_after_ms = -1;
}

/* Fills `e` with `code` and a formatted message; returns the code. */
calllog_code error_set(calllog_error *e, calllog_code code, const char *fmt, ...)
{
    va_list ap;
    if (e == NULL)
        return code;
    error_clear(e);
    e->code = code;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return code;
}

/* Copies one error into another. */
void error_copy(calllog_error *dst, const calllog_error *src)
{
    if (dst != NULL && src != NULL && dst != src)
        *dst = *src;
}

/* Transient or permanent, for one HTTP exchange. */
calllog_code error_classify(int curl_code, long http_status)
{
    if (curl_code != 0 || http_status == 0)
        return CALLLOG_TRANSIENT;
    if (http_status >= 200 && http_status < 300)
        return CALLLOG_OK;
    if (http_status == 408 || http_status == 429 || (http_status >= 500 && http_status < 600))
        return CALLLOG_TRANSIENT;
    return CALLLOG_PERMANENT;
}

/* A failure's code: error_classify, with a 2xx that still failed counted permanent. */
calllog_code error_classify_failure(int curl_code, long http_status)
{
    calllog_code code = error_classify(curl_code, http_status);
    return code == CALLLOG_OK ? CALLLOG_PERMANENT : code;
}

/* Worth another try later. */
int error_is_transient(calllog_code code)
{
    return code == CALLLOG_TRANSIENT || code == CALLLOG_NOMEM;
}

/* The code's name for logs. */
const char *error_code_name(calllog_code code)
{
    switch (code) {
    case CALLLOG_OK:
        return "ok";
    case CALLLOG_NOT_FOUND:
        return "not_found";
    case CALLLOG_LEASE_LOST:
        return "lease_lost";
    case CALLLOG_TRANSIENT:
        return "transient";
    case CALLLOG_PERMANENT:
        return "permanent";
    case CALLLOG_NOMEM:
        return "no_memory";
    case CALLLOG_INVALID:
        return "invalid";
    }
    return "unknown";
}
