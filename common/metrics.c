/* metrics — the process-wide Prometheus registry behind metrics.h.
 *
 * The registry is the one piece of global mutable state the design allows besides the
 * configuration: both programs register their metrics at start-up and update them from
 * any thread. A single mutex guards everything; metrics keep registration order so the
 * exposition is stable, and each metric holds a short linked list of series keyed by a
 * pre-rendered label string (`code="204"`, or "" for none). Series are created on first
 * use; afterwards an update is a lock, a linear strcmp walk and an add — no allocation.
 *
 * Histograms store per-bucket (non-cumulative) counts and render them cumulatively, with
 * `le` merged into the series' own labels. Collect hooks run before each render, outside
 * the registry lock (so they may call metric_set) but under a second lock, `hooks_run`,
 * which metrics_remove_collect_hook also takes: once it returns, no render is inside the
 * removed hook, so its owner may free what the hook reads. Lock order: hooks_run, then
 * lock. Renders therefore run their hooks one at a time; scrapes are rare. */
#include "common/metrics.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buffer.h"

/* Most bytes one exposition may take: far above any real registry (labels are bounded),
 * so only a runaway label set hits it, and then the scrape fails instead of the process. */
#define METRICS_RENDER_MAX ((size_t)64 * 1024 * 1024)

/* One labelled time series of a metric. */
typedef struct series {
    char *labels;      /* pre-rendered label pairs, "" for none; owned */
    double value;      /* counter or gauge value */
    uint64_t *buckets; /* histogram: per-bucket counts, nbounds + 1 (last = +Inf); owned */
    uint64_t count;    /* histogram: observations */
    double sum;        /* histogram: sum of observations */
    struct series *next;
} series;

struct metric {
    metric_type type;
    char *name;     /* owned */
    char *help;     /* owned, unescaped */
    double *bounds; /* histogram upper bounds, ascending, finite; owned */
    size_t nbounds;
    series *first, *last; /* in creation order */
    struct metric *next;
};

/* A function run before each render. */
typedef struct hook {
    void (*fn)(void *arg);
    void *arg;
} hook;

/* The registry: every metric and hook, guarded by `lock`; `hooks_run` is held while a
 * render runs its hooks, and by hook removal. */
static struct {
    pthread_mutex_t lock;
    pthread_mutex_t hooks_run;
    metric *first, *last;
    hook *hooks;
    size_t nhooks, caphooks;
} reg = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, NULL, NULL, NULL, 0, 0};

/* Default histogram buckets, in seconds (sub-millisecond up to ten seconds). */
static const double default_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                        0.1,    0.25,  0.5,    1,     2.5,  5,     10};

/* 1 when `name` matches [a-zA-Z_:][a-zA-Z0-9_:]*. */
static int name_is_valid(const char *name)
{
    if (name == NULL || *name == '\0')
        return 0;
    for (const char *p = name; *p; p++) {
        char c = *p;
        int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (!alpha && !(p != name && c >= '0' && c <= '9'))
            return 0;
    }
    return 1;
}

/* Copies and checks histogram bounds into `m`: strictly ascending, finite; a trailing
 * +Inf is dropped because it is implied. Returns 0, or -1 on bad bounds or no memory. */
static int metric_set_bounds(metric *m, const double *buckets, size_t nbuckets)
{
    if (buckets == NULL) {
        buckets = default_bounds;
        nbuckets = sizeof default_bounds / sizeof default_bounds[0];
    }
    if (nbuckets > 0 && isinf(buckets[nbuckets - 1]) && buckets[nbuckets - 1] > 0)
        nbuckets--;
    for (size_t i = 0; i < nbuckets; i++) {
        if (!isfinite(buckets[i]) || (i > 0 && !(buckets[i] > buckets[i - 1])))
            return -1;
    }
    if (nbuckets > 0) {
        m->bounds = malloc(nbuckets * sizeof *m->bounds);
        if (m->bounds == NULL)
            return -1;
        memcpy(m->bounds, buckets, nbuckets * sizeof *m->bounds);
    }
    m->nbounds = nbuckets;
    return 0;
}

/* Frees one series. */
static void series_free(series *s)
{
    free(s->labels);
    free(s->buckets);
    free(s);
}

/* Frees a metric and all its series. */
static void metric_free(metric *m)
{
    series *s = m->first;
    while (s != NULL) {
        series *next = s->next;
        series_free(s);
        s = next;
    }
    free(m->name);
    free(m->help);
    free(m->bounds);
    free(m);
}

/* Finds a registered metric by name; caller holds the lock. */
static metric *registry_find(const char *name)
{
    for (metric *m = reg.first; m != NULL; m = m->next) {
        if (strcmp(m->name, name) == 0)
            return m;
    }
    return NULL;
}

/* Builds a new, unlinked metric. Returns it (caller owns), or NULL. */
static metric *metric_new(metric_type type, const char *name, const char *help,
                          const double *buckets, size_t nbuckets)
{
    metric *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    m->type = type;
    m->name = strdup(name);
    m->help = strdup(help != NULL ? help : "");
    if (m->name == NULL || m->help == NULL ||
        (type == METRIC_HISTOGRAM && metric_set_bounds(m, buckets, nbuckets) != 0)) {
        metric_free(m);
        return NULL;
    }
    return m;
}

/* Registers a metric, or returns the existing one of that name when the type matches
 * (its help and buckets are kept). Returns NULL on a bad name, bad buckets, a type
 * clash or no memory. The registry owns the result until metrics_reset. */
metric *metrics_register(metric_type type, const char *name, const char *help,
                         const double *buckets, size_t nbuckets)
{
    if (!name_is_valid(name) ||
        (type != METRIC_COUNTER && type != METRIC_GAUGE && type != METRIC_HISTOGRAM))
        return NULL;
    pthread_mutex_lock(&reg.lock);
    metric *m = registry_find(name);
    if (m != NULL) {
        if (m->type != type)
            m = NULL;
        pthread_mutex_unlock(&reg.lock);
        return m;
    }
    m = metric_new(type, name, help, buckets, nbuckets);
    if (m != NULL) {
        if (reg.last != NULL)
            reg.last->next = m;
        else
            reg.first = m;
        reg.last = m;
    }
    pthread_mutex_unlock(&reg.lock);
    return m;
}

/* Returns the series `labels` of `m` (NULL labels = none), creating it when `create`.
 * Returns NULL when absent (and not created) or out of memory. Caller holds the lock. */
static series *metric_series(metric *m, const char *labels, int create)
{
    if (labels == NULL)
        labels = "";
    for (series *s = m->first; s != NULL; s = s->next) {
        if (strcmp(s->labels, labels) == 0)
            return s;
    }
    if (!create)
        return NULL;
    series *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->labels = strdup(labels);
    if (m->type == METRIC_HISTOGRAM)
        s->buckets = calloc(m->nbounds + 1, sizeof *s->buckets);
    if (s->labels == NULL || (m->type == METRIC_HISTOGRAM && s->buckets == NULL)) {
        series_free(s);
        return NULL;
    }
    if (m->last != NULL)
        m->last->next = s;
    else
        m->first = s;
    m->last = s;
    return s;
}

/* Adds `v` to a counter or gauge series. Counters only go up: a negative or NaN `v` on
 * a counter is ignored. Histograms and a NULL metric are ignored; so is an update that
 * cannot allocate its new series. */
void metric_add(metric *m, const char *labels, double v)
{
    if (m == NULL || m->type == METRIC_HISTOGRAM)
        return;
    if (m->type == METRIC_COUNTER && !(v >= 0))
        return;
    pthread_mutex_lock(&reg.lock);
    series *s = metric_series(m, labels, 1);
    if (s != NULL)
        s->value += v;
    pthread_mutex_unlock(&reg.lock);
}

/* Sets a gauge series to `v`; anything but a gauge is ignored. */
void metric_set(metric *m, const char *labels, double v)
{
    if (m == NULL || m->type != METRIC_GAUGE)
        return;
    pthread_mutex_lock(&reg.lock);
    series *s = metric_series(m, labels, 1);
    if (s != NULL)
        s->value = v;
    pthread_mutex_unlock(&reg.lock);
}

/* Index of the first bucket whose upper bound is >= v (nbounds = the +Inf bucket). */
static size_t bucket_index(const metric *m, double v)
{
    size_t i = 0;
    while (i < m->nbounds && !(v <= m->bounds[i]))
        i++;
    return i;
}

/* Records one observation in a histogram series; anything but a histogram is ignored. */
void metric_observe(metric *m, const char *labels, double v)
{
    if (m == NULL || m->type != METRIC_HISTOGRAM)
        return;
    size_t i = bucket_index(m, v);
    pthread_mutex_lock(&reg.lock);
    series *s = metric_series(m, labels, 1);
    if (s != NULL) {
        s->buckets[i]++;
        s->count++;
        s->sum += v;
    }
    pthread_mutex_unlock(&reg.lock);
}

/* Value of a counter/gauge series, or the observation count of a histogram series;
 * 0 when the series (or the metric) is absent. */
double metric_value(metric *m, const char *labels)
{
    if (m == NULL)
        return 0;
    pthread_mutex_lock(&reg.lock);
    series *s = metric_series(m, labels, 0);
    double v = 0;
    if (s != NULL)
        v = m->type == METRIC_HISTOGRAM ? (double)s->count : s->value;
    pthread_mutex_unlock(&reg.lock);
    return v;
}

/* Adds a collect hook, run before every render in registration order. Returns 0 or -1. */
int metrics_add_collect_hook(void (*fn)(void *arg), void *arg)
{
    if (fn == NULL)
        return -1;
    int rc = 0;
    pthread_mutex_lock(&reg.lock);
    if (reg.nhooks == reg.caphooks) {
        size_t cap = reg.caphooks ? reg.caphooks * 2 : 4;
        hook *h = realloc(reg.hooks, cap * sizeof *h);
        if (h == NULL) {
            rc = -1;
        } else {
            reg.hooks = h;
            reg.caphooks = cap;
        }
    }
    if (rc == 0)
        reg.hooks[reg.nhooks++] = (hook){fn, arg};
    pthread_mutex_unlock(&reg.lock);
    return rc;
}

/* Removes the first registration of (fn, arg), keeping the others in order. Holding
 * `hooks_run` first means a render that copied the list before the removal has finished
 * its hooks by the time this returns. An unknown pair changes nothing. */
void metrics_remove_collect_hook(void (*fn)(void *arg), void *arg)
{
    pthread_mutex_lock(&reg.hooks_run);
    pthread_mutex_lock(&reg.lock);
    for (size_t i = 0; i < reg.nhooks; i++) {
        if (reg.hooks[i].fn == fn && reg.hooks[i].arg == arg) {
            memmove(&reg.hooks[i], &reg.hooks[i + 1], (reg.nhooks - i - 1) * sizeof *reg.hooks);
            reg.nhooks--;
            break;
        }
    }
    pthread_mutex_unlock(&reg.lock);
    pthread_mutex_unlock(&reg.hooks_run);
}

/* Runs every collect hook under `hooks_run` but not the registry lock (hooks update
 * metrics themselves). The hook list is copied first so a hook may even register
 * another. Returns 0 or -1. */
static int registry_run_hooks(void)
{
    pthread_mutex_lock(&reg.hooks_run);
    pthread_mutex_lock(&reg.lock);
    size_t n = reg.nhooks;
    hook *copy = n ? malloc(n * sizeof *copy) : NULL;
    if (copy != NULL)
        memcpy(copy, reg.hooks, n * sizeof *copy);
    pthread_mutex_unlock(&reg.lock);
    for (size_t i = 0; copy != NULL && i < n; i++)
        copy[i].fn(copy[i].arg);
    pthread_mutex_unlock(&reg.hooks_run);
    free(copy);
    return n > 0 && copy == NULL ? -1 : 0;
}

/* Formats `v` as the exposition format spells it: "+Inf", "-Inf", "NaN", else the
 * shortest %g text that reads back as the same double (so 3 is "3" and 0.1 is "0.1"). */
static void format_value(char *out, size_t outlen, double v)
{
    if (isnan(v)) {
        snprintf(out, outlen, "NaN");
    } else if (isinf(v)) {
        snprintf(out, outlen, v > 0 ? "+Inf" : "-Inf");
    } else {
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(out, outlen, "%.*g", prec, v);
            if (strtod(out, NULL) == v)
                break;
        }
    }
}

/* Appends help text with backslash and newline escaped. */
static void render_help(buffer *b, const char *help)
{
    for (const char *p = help; *p; p++) {
        if (*p == '\\')
            buffer_add_str(b, "\\\\");
        else if (*p == '\n')
            buffer_add_str(b, "\\n");
        else
            buffer_add(b, p, 1);
    }
}

/* Appends `name<suffix>{labels} value` (no braces when there are no labels). */
static void render_sample(buffer *b, const char *name, const char *suffix, const char *labels,
                          const char *value)
{
    if (*labels)
        buffer_printf(b, "%s%s{%s} %s\n", name, suffix, labels, value);
    else
        buffer_printf(b, "%s%s %s\n", name, suffix, value);
}

/* Appends the bucket, sum and count lines of one histogram series. */
static void render_histogram_series(buffer *b, const metric *m, const series *s)
{
    const char *sep = *s->labels ? "," : "";
    uint64_t cumulative = 0;
    char le[32], num[32];
    for (size_t i = 0; i <= m->nbounds; i++) {
        cumulative += s->buckets[i];
        if (i < m->nbounds)
            format_value(le, sizeof le, m->bounds[i]);
        else
            snprintf(le, sizeof le, "+Inf");
        buffer_printf(b, "%s_bucket{%s%sle=\"%s\"} %" PRIu64 "\n", m->name, s->labels, sep, le,
                      cumulative);
    }
    format_value(num, sizeof num, s->sum);
    render_sample(b, m->name, "_sum", s->labels, num);
    snprintf(num, sizeof num, "%" PRIu64, s->count);
    render_sample(b, m->name, "_count", s->labels, num);
}

/* Appends the HELP and TYPE lines and every series of one metric. */
static void render_metric(buffer *b, const metric *m)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    buffer_printf(b, "# HELP %s ", m->name);
    render_help(b, m->help);
    buffer_printf(b, "\n# TYPE %s %s\n", m->name, type_names[m->type]);
    for (const series *s = m->first; s != NULL; s = s->next) {
        if (m->type == METRIC_HISTOGRAM) {
            render_histogram_series(b, m, s);
        } else {
            char num[32];
            format_value(num, sizeof num, s->value);
            render_sample(b, m->name, "", s->labels, num);
        }
    }
}

/* Runs the collect hooks, then renders every metric in registration order. A metric
 * with no series yet renders only its HELP and TYPE lines. Returns malloc'ed text the
 * caller frees, or NULL out of memory. */
char *metrics_render(void)
{
    if (registry_run_hooks() != 0)
        return NULL;
    buffer b;
    buffer_init(&b, METRICS_RENDER_MAX);
    pthread_mutex_lock(&reg.lock);
    for (const metric *m = reg.first; m != NULL; m = m->next)
        render_metric(&b, m);
    pthread_mutex_unlock(&reg.lock);
    return buffer_take(&b);
}

/* Frees every metric and hook, after any render's hooks in progress; pointers from
 * metrics_register become invalid. */
void metrics_reset(void)
{
    pthread_mutex_lock(&reg.hooks_run);
    pthread_mutex_lock(&reg.lock);
    metric *m = reg.first;
    while (m != NULL) {
        metric *next = m->next;
        metric_free(m);
        m = next;
    }
    reg.first = reg.last = NULL;
    free(reg.hooks);
    reg.hooks = NULL;
    reg.nhooks = reg.caphooks = 0;
    pthread_mutex_unlock(&reg.lock);
    pthread_mutex_unlock(&reg.hooks_run);
}
