/* log — one structured line per step, JSON (default) or text, on stderr.
 *
 * A line carries a timestamp, level, program, message and typed fields:
 *   log_info("enqueued", LF_S("call_sid", sid), LF_I("latency_us", us));
 * Secrets are never passed to the logger; text that may hold one goes through redact.h
 * first (redact_url for URLs with credentials, redact_copy for messages). Writes are atomic per
 * line (one write(2) call). */
#ifndef CALLLOG_LOG_H
#define CALLLOG_LOG_H

#include <pthread.h>
#include <stddef.h>

typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } log_level;

typedef struct log_field {
    const char *key; /* NULL ends a field list */
    const char *str; /* string value, or NULL for a number */
    long long num;
} log_field;

/* A string field (NULL logs as ""). */
static inline log_field log_str_field(const char *key, const char *value)
{
    return (log_field){key, value ? value : "", 0};
}

#define LF_S(k, v) log_str_field((k), (v))
#define LF_I(k, v) ((log_field){(k), NULL, (long long)(v)})
#define LF_END ((log_field){NULL, NULL, 0})

/* Sets the program name, level ("debug".."error") and format ("json" or "text").
 * Returns 0, or -1 when level or format is not recognised (nothing changes then). */
int log_configure(const char *program, const char *level, const char *format);

/* 1 when a line of this level would be written. */
int log_enabled(log_level level);

/* Writes one line; `fields` ends with LF_END (or is NULL). */
void log_emit(log_level level, const char *msg, const log_field *fields);

#define LOG_FIELDS_(...) ((const log_field[]){__VA_ARGS__, LF_END})
#define log_debug(msg, ...) log_emit(LOG_DEBUG, (msg), LOG_FIELDS_(__VA_ARGS__))
#define log_info(msg, ...) log_emit(LOG_INFO, (msg), LOG_FIELDS_(__VA_ARGS__))
#define log_warn(msg, ...) log_emit(LOG_WARN, (msg), LOG_FIELDS_(__VA_ARGS__))
#define log_error(msg, ...) log_emit(LOG_ERROR, (msg), LOG_FIELDS_(__VA_ARGS__))

/* A budget of lines for messages an outsider can trigger at will (refused requests):
 * `rate` lines a second, `burst` at once, so that a flood cannot fill the disk. What is
 * dropped is counted, and the next line allowed says how many were (metrics still count
 * every event). Share one limiter per kind of message between threads. */
typedef struct log_limiter {
    pthread_mutex_t lock;
    double rate, burst, tokens, last_s;
    long suppressed;
} log_limiter;

#define LOG_LIMITER_INIT(rate, burst)                                                              \
    {                                                                                              \
        PTHREAD_MUTEX_INITIALIZER, (rate), (burst), (burst), 0, 0                                  \
    }

/* 1 when a line may be written now, with `*suppressed` set to the lines dropped since
 * the last one allowed (put it in the line); 0 when this one is dropped. */
int log_limiter_allow(log_limiter *l, long *suppressed);

#endif
