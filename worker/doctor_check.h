/* doctor_check — what the check files of one doctor run share (internal to doctor*.c).
 *
 * doctor.c runs the checks in order: settings, Redis, Postgres (doctor.c), RD Station
 * (doctor_rd.c), Twilio (doctor_twilio.c). Each check adds its lines to `report`; a check
 * whose prerequisite failed is left out (no Redis: `redis` stays NULL). */
#ifndef CALLLOG_DOCTOR_CHECK_H
#define CALLLOG_DOCTOR_CHECK_H

#include <hiredis/hiredis.h>
#include <stddef.h>

#include "common/http_client.h"
#include "worker/doctor.h"
#include "worker/doctor_report.h"
#include "worker/ratelimit.h"
#include "worker/settings.h"

#define DOCTOR_HTTP_TIMEOUT_MS 10000L
#define DOCTOR_LOG_CALL_PATH "/twilio/log-call"
#define DOCTOR_RECOMMENDED_FRAGMENT "#rc=3&rp=all&ct=3000&rt=10000"

/* The shared state of one run. */
typedef struct doctor {
    const doctor_options *opt;
    worker_settings s;
    doctor_report *report;
    redisContext *redis; /* NULL when unreachable */
    ratelimit_policy limit;
    http_client *http;
} doctor;

/* Appends `word` to the list in `out` ("a, b"), up to ten words then "…". */
void doctor_list_add(char *out, size_t outlen, size_t *count, const char *word);

/* The RD Station checks: limiter budget, credentials and users, the optional test note. */
void doctor_check_rd(doctor *d);

/* The Twilio checks: REST credentials, auth token, incoming numbers' status callbacks. */
void doctor_check_twilio(doctor *d);

#endif
