/* doctor_report — the result lines of a doctor run, printed as text or JSON (see
 * doctor_report.h). A growable array of fixed-size lines: a reason or fix longer than its
 * field is cut, never lost into an allocation failure halfway through a report. */
#include "worker/doctor_report.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
struct doctor_report {
    doctor_result *items;
    size_t n, cap;
};

doctor_report *doctor_report_new(void)
{
    return calloc(1, sizeof(doctor_report));
}

void doctor_report_free(doctor_report *r)
{
    if (r)
        free(r->items);
    free(r);
}

int doctor_report_add(doctor_report *r, const char *check, doctor_level level, const char *fix,
                      const char *fmt, ...)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 16;
        doctor_result *items = realloc(r->items, cap * sizeof *items);
        if (!items)
            return -1;
        r->items = items;
        r->cap = cap;
    }
    doctor_result *d = &r->items[r->n++];
    snprintf(d->check, sizeof d->check, "%s", check);
    d->level = level;
    snprintf(d->fix, sizeof d->fix, "%s", fix && level != DOCTOR_OK ? fix : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->reason, sizeof d->reason, fmt, ap);
    va_end(ap);
    return 0;
}

size_t doctor_report_count(const doctor_report *r)
{
    return r->n;
}

const doctor_result *doctor_report_item(const doctor_report *r, size_t i)
{
    return i < r->n ? &r->items[i] : NULL;
}

int doctor_report_failed(const doctor_report *r)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->items[i].level == DOCTOR_FAIL)
            return 1;
    return 0;
}

static const char *const LEVEL_NAMES[] = {"ok", "warn", "FAIL"};

void doctor_report_print(const doctor_report *r, int json, FILE *out)
{
    if (!json) {
        for (size_t i = 0; i < r->n; i++) {
            const doctor_result *d = &r->items[i];
            fprintf(out, "%-5s %-20s %s%s%s\n", LEVEL_NAMES[d->level], d->check, d->reason,
                    d->fix[0] ? " — fix: " : "", d->fix);
        }
        return;
    }
    json_t *checks = json_array();
    for (size_t i = 0; i < r->n; i++) {
        const doctor_result *d = &r->items[i];
        json_array_append_new(checks, json_pack("{s:s, s:s, s:s, s:s}", "check", d->check, "status",
                                                d->level == DOCTOR_FAIL   ? "fail"
                                                : d->level == DOCTOR_WARN ? "warn"
                                                                          : "ok",
                                                "reason", d->reason, "fix", d->fix));
    }
    json_t *doc = json_pack("{s:b, s:o}", "ok", !doctor_report_failed(r), "checks", checks);
    char *text = doc ? json_dumps(doc, JSON_INDENT(2)) : NULL;
    fprintf(out, "%s\n", text ? text : "{\"ok\": false, \"checks\": []}");
    free(text);
    json_decref(doc);
}
