/* metrics — a small Prometheus registry: counters, gauges and histograms with labels.
 *
 * Metrics are registered once at start-up and live until exit (the registry owns them).
 * A series is selected by a pre-rendered label string such as `code="204"` (or NULL for
 * none). All updates are thread-safe. `metrics_render` produces the text exposition
 * format (version 0.0.4); collect hooks run first so gauges such as stream depths can be
 * refreshed at scrape time, and a hook is removed before whatever it reads is freed. */
#ifndef CALLLOG_METRICS_H
#define CALLLOG_METRICS_H

#include <stddef.h>

typedef struct metric metric;

typedef enum { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM } metric_type;

/* Registers a metric. `buckets` (ascending upper bounds, +Inf implied) is used only for
 * histograms; NULL there means the default latency buckets in seconds.
 * Returns the registry-owned metric, or NULL on a bad name or out of memory. */
metric *metrics_register(metric_type type, const char *name, const char *help,
                         const double *buckets, size_t nbuckets);

/* Counter or gauge: adds `v` to the series `labels`. */
void metric_add(metric *m, const char *labels, double v);
/* Gauge: sets the series `labels` to `v`. */
void metric_set(metric *m, const char *labels, double v);
/* Histogram: records one observation. */
void metric_observe(metric *m, const char *labels, double v);
/* Current value of a counter/gauge series (0 when absent); for tests and health. */
double metric_value(metric *m, const char *labels);

/* A hook called before each render (e.g. to set depth gauges). It may call metric_set and
 * metrics_add_collect_hook, but not metrics_remove_collect_hook. Returns 0 or -1. */
int metrics_add_collect_hook(void (*hook)(void *arg), void *arg);

/* Removes one registration of `hook` with `arg` (an unknown pair is ignored). When it
 * returns, no render is running the hook and none will again, so `arg` may be freed.
 * It waits for a render's hooks in progress; never call it from inside a hook. */
void metrics_remove_collect_hook(void (*hook)(void *arg), void *arg);

/* Renders every metric. Returns a malloc'ed NUL-terminated text the caller frees,
 * or NULL out of memory (or past 64 MiB of text, which only a runaway label set reaches). */
char *metrics_render(void);

/* Frees every metric and hook (at exit, and between unit tests). */
void metrics_reset(void);

#endif
