/* log — structured logging, one line per call, JSON or text (see log.h).
 *
 * Each line is formatted into a stack buffer and written with a single write(2), so lines
 * from concurrent threads never interleave. Settings are fixed at start-up. */
#include "common/log.h"
#include "common/timing.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 8192

static const char *log_program = "calllog";
static log_level log_min_level = LOG_INFO;
static int log_as_json = 1;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int log_configure(const char *program, const char *level, const char *format)
{
    int lvl = -1;
    for (int i = 0; i < 4; i++) {
        if (level && strcasecmp(level, level_names[i]) == 0)
            lvl = i;
    }
    if (level && strcasecmp(level, "warning") == 0)
        lvl = LOG_WARN;
    int json = format ? (strcmp(format, "json") == 0   ? 1
                         : strcmp(format, "text") == 0 ? 0
                                                       : -1)
                      : 1;
    if ((level && lvl < 0) || json < 0)
        return -1;
    if (program)
        log_program = program;
    if (level)
        log_min_level = (log_level)lvl;
    log_as_json = json;
    return 0;
}

int log_enabled(log_level level)
{
    return level >= log_min_level;
}

/* A growing cursor into the line buffer; writes past the end are dropped. */
typedef struct line_buf {
    char buf[LOG_LINE_MAX];
    size_t len;
} line_buf;

static void put(line_buf *b, const char *s, size_t n)
{
    size_t room = sizeof b->buf - 2 - b->len; /* keep space for "\n" */
    if (n > room)
        n = room;
    memcpy(b->buf + b->len, s, n);
    b->len += n;
}

static void puts_(line_buf *b, const char *s)
{
    put(b, s, strlen(s));
}

static void putf(line_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(line_buf *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Appends `s` as the inside of a JSON string (quotes, backslashes, controls escaped). */
static void put_json_escaped(line_buf *b, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char e[2] = {'\\', (char)*p};
            put(b, e, 2);
        } else if (*p == '\n') {
            puts_(b, "\\n");
        } else if (*p < 0x20 || *p == 0x7f) {
            putf(b, "\\u%04x", *p);
        } else {
            put(b, (const char *)p, 1);
        }
    }
}

/* Appends text-format value: bare when simple, quoted and escaped otherwise. */
static void put_text_value(line_buf *b, const char *s)
{
    int plain = *s != '\0';
    for (const char *p = s; *p && plain; p++)
        plain = *p > ' ' && *p != '"' && *p != '=';
    if (plain) {
        puts_(b, s);
        return;
    }
    put(b, "\"", 1);
    put_json_escaped(b, s);
    put(b, "\"", 1);
}

static void emit_json(line_buf *b, const char *ts, log_level level, const char *msg,
                      const log_field *fields)
{
    putf(b, "{\"ts\":\"%s\",\"level\":\"%s\",\"program\":\"", ts, level_names[level]);
    put_json_escaped(b, log_program);
    puts_(b, "\",\"msg\":\"");
    put_json_escaped(b, msg);
    put(b, "\"", 1);
    for (const log_field *f = fields; f && f->key; f++) {
        puts_(b, ",\"");
        put_json_escaped(b, f->key);
        puts_(b, "\":");
        if (f->str) {
            put(b, "\"", 1);
            put_json_escaped(b, f->str);
            put(b, "\"", 1);
        } else {
            putf(b, "%lld", f->num);
        }
    }
    put(b, "}", 1);
}

static void emit_text(line_buf *b, const char *ts, log_level level, const char *msg,
                      const log_field *fields)
{
    putf(b, "%s %-5s ", ts, level_names[level]);
    puts_(b, log_program);
    puts_(b, ": ");
    puts_(b, msg);
    for (const log_field *f = fields; f && f->key; f++) {
        put(b, " ", 1);
        puts_(b, f->key);
        put(b, "=", 1);
        if (f->str)
            put_text_value(b, f->str);
        else
            putf(b, "%lld", f->num);
    }
}

void log_emit(log_level level, const char *msg, const log_field *fields)
{
    if (!log_enabled(level))
        return;
    line_buf b;
    b.len = 0;
    char ts[40];
    timing_format_rfc3339(timing_epoch_ms(), ts, sizeof ts);
    if (log_as_json)
        emit_json(&b, ts, level, msg, fields);
    else
        emit_text(&b, ts, level, msg, fields);
    b.buf[b.len++] = '\n';
    ssize_t w = write(STDERR_FILENO, b.buf, b.len);
    (void)w;
}

int log_limiter_allow(log_limiter *l, long *suppressed)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    pthread_mutex_lock(&l->lock);
    if (l->last_s > 0) {
        l->tokens += (now - l->last_s) * l->rate;
        if (l->tokens > l->burst)
            l->tokens = l->burst;
    }
    l->last_s = now;
    int allowed = l->tokens >= 1.0;
    if (allowed) {
        l->tokens -= 1.0;
        *suppressed = l->suppressed;
        l->suppressed = 0;
    } else {
        l->suppressed++;
    }
    pthread_mutex_unlock(&l->lock);
    return allowed;
}
