/* doctor_report — the report `calllog-admin doctor` prints: one line per check.
 *
 * Each result is ok, warn (it could not be checked, or works but is not what the docs
 * recommend) or FAIL, with the reason and the fix. The checks (doctor.h) and the signature
 * diagnosis (doctor_signature.h) both fill one and print it as text or JSON. */
#ifndef CALLLOG_DOCTOR_REPORT_H
#define CALLLOG_DOCTOR_REPORT_H

#include <stddef.h>
#include <stdio.h>

typedef enum { DOCTOR_OK = 0, DOCTOR_WARN, DOCTOR_FAIL } doctor_level;

/* One line of the report. */
typedef struct doctor_result {
    char check[48]; /* "redis.aof", "twilio.numbers", ... */
    doctor_level level;
    char reason[2048];
    char fix[1024]; /* "" when ok */
} doctor_result;

typedef struct doctor_report doctor_report;

/* An empty report (caller owns; doctor_report_free), or NULL out of memory. */
doctor_report *doctor_report_new(void);
void doctor_report_free(doctor_report *r);

/* Appends a result; `fix` may be NULL. Returns 0, or -1 out of memory. */
__attribute__((format(printf, 5, 6))) int doctor_report_add(doctor_report *r, const char *check,
                                                            doctor_level level, const char *fix,
                                                            const char *fmt, ...);

size_t doctor_report_count(const doctor_report *r);
/* The i-th result (borrowed from the report), or NULL past the end. */
const doctor_result *doctor_report_item(const doctor_report *r, size_t i);

/* 1 when some result is FAIL. */
int doctor_report_failed(const doctor_report *r);

/* Prints one line per result ("ok    check  reason" / "FAIL  check  reason — fix: …"),
 * or with `json` one object {"ok":bool,"checks":[{check,status,reason,fix}]}. */
void doctor_report_print(const doctor_report *r, int json, FILE *out);

#endif
