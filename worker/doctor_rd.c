/* doctor_rd — the RD Station checks of `calllog-admin doctor` (see doctor_check.h).
 *
 * The token (v1) or OAuth access token (v2) works, the configured user ids exist, the
 * shared limiter's budget left, and with --write-test one clearly marked note. The v2
 * check uses the access token the workers stored in Redis: a refresh would rotate the
 * refresh token, so it happens only with --oauth-refresh (through rd_oauth, which stores
 * the new tokens for the workers). Requests go through the shared limiter, like a
 * worker's; v1 /token/check's answer, which the reference marks unverified, is accepted
 * either way and the line says what was seen. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/timing.h"
#include "worker/doctor_check.h"
#include "worker/rd_oauth.h"
#include "worker/rdstation.h"
/* Waits for the shared limiter, like a worker's request (rd_acquire_fn). */
static int doctor_acquire(void *arg, ratelimit_lane lane)
{
    doctor *d = arg;
    return d->redis ? ratelimit_acquire(d->redis, &d->limit, lane, NULL) : 0;
}

/* GET `path` on the RD API (v1 with ?token=, v2 with `bearer`). Returns 0 with `res`
 * filled (any status), or -1 with `err` filled. */
static int rd_get(doctor *d, const char *path, const char *bearer, http_response *res,
                  calllog_error *err)
{
    char url[2048], auth[RD_OAUTH_TOKEN_MAX + 32];
    const char *headers[] = {"Accept: application/json", NULL, NULL};
    char *tok = d->s.rd.api == RD_API_V1 ? http_escape(d->s.rd.token) : NULL;
    if (d->s.rd.api == RD_API_V1 && !tok)
        return -1;
    if (tok)
        snprintf(url, sizeof url, "%s%s?token=%s", d->s.rd.base_url, path, tok);
    else
        snprintf(url, sizeof url, "%s%s", d->s.rd.base_url, path);
    free(tok);
    if (bearer) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", bearer);
        headers[1] = auth;
    }
    doctor_acquire(d, RATELIMIT_LOOKUP);
    int rc = http_request(d->http, "GET", url, headers, NULL, NULL, 0, res, err);
    if (rc != 0)
        http_error_relabel(err, path);
    return rc;
}

/* A JSON object's id as text: `_id`, else `id` (string or integer); "" when neither. */
static void object_id(const json_t *o, char *out, size_t outlen)
{
    const json_t *v = json_object_get(o, "_id");
    if (!v || json_is_null(v))
        v = json_object_get(o, "id");
    if (json_is_string(v))
        snprintf(out, outlen, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(out, outlen, "%lld", (long long)json_integer_value(v));
    else
        out[0] = '\0';
}

/* The user array of a /users answer: v1 {"users":[…]}, v2 {"data":[…]}, or a bare array. */
static const json_t *users_array(const json_t *doc)
{
    if (json_is_array(doc))
        return doc;
    const json_t *a = json_object_get(doc, "users");
    return json_is_array(a)                              ? a
           : json_is_array(json_object_get(doc, "data")) ? json_object_get(doc, "data")
                                                         : NULL;
}

/* 1 when `who` (an id or an e-mail) is among `users`. */
static int user_known(const json_t *users, const char *who)
{
    size_t i;
    const json_t *u;
    json_array_foreach(users, i, u)
    {
        char id[128];
        object_id(u, id, sizeof id);
        const char *email = json_string_value(json_object_get(u, "email"));
        if (strcmp(id, who) == 0 || (email && strcasecmp(email, who) == 0))
            return 1;
    }
    return 0;
}

/* The rd.users line from a parsed GET /users answer. */
static void check_rd_users(doctor *d, const json_t *doc)
{
    const json_t *users = users_array(doc);
    if (!users) {
        doctor_report_add(d->report, "rd.users", DOCTOR_WARN, NULL,
                          "cannot check: GET /users answered 2xx without a list of users");
        return;
    }
    char missing[512] = "", known[512] = "";
    size_t nmissing = 0, nknown = 0, i;
    const json_t *u;
    if (d->s.rd_user_id && !user_known(users, d->s.rd_user_id)) {
        char w[128];
        snprintf(w, sizeof w, "RDSTATION_USER_ID=%s", d->s.rd_user_id);
        doctor_list_add(missing, sizeof missing, &nmissing, w);
    }
    for (size_t k = 0; k < d->s.user_map_len; k++) {
        if (!user_known(users, d->s.user_map[k].user_id)) {
            char w[128];
            snprintf(w, sizeof w, "RDSTATION_USER_MAP %s=%s", d->s.user_map[k].number,
                     d->s.user_map[k].user_id);
            doctor_list_add(missing, sizeof missing, &nmissing, w);
        }
    }
    json_array_foreach(users, i, u)
    {
        char id[128], w[256];
        const char *email = json_string_value(json_object_get(u, "email"));
        object_id(u, id, sizeof id);
        snprintf(w, sizeof w, "%s (%s)", id, email ? email : "no e-mail");
        doctor_list_add(known, sizeof known, &nknown, w);
    }
    if (nmissing == 0) {
        doctor_report_add(d->report, "rd.users", DOCTOR_OK, NULL,
                          "%zu configured user id(s) found among the account's %zu user(s)",
                          (d->s.rd_user_id ? 1 : 0) + d->s.user_map_len, json_array_size(users));
        return;
    }
    char fix[600];
    snprintf(fix, sizeof fix, "use ids the account has: %s", known[0] ? known : "(none listed)");
    doctor_report_add(d->report, "rd.users", DOCTOR_FAIL, fix,
                      "not users of this RD Station account: %s", missing);
}

/* GET /users with the credentials; adds rd.credentials (when `judge`) and rd.users. */
static void rd_users_and_credentials(doctor *d, const char *bearer, int judge, const char *seen)
{
    http_response res = {0};
    calllog_error err;
    const char *what = d->s.rd.api == RD_API_V1 ? "RDSTATION_TOKEN" : "the OAuth access token";
    if (rd_get(d, "/users", bearer, &res, &err) != 0) {
        doctor_report_add(d->report, judge ? "rd.credentials" : "rd.users", DOCTOR_FAIL,
                          "check RDSTATION_API_BASE_URL and the network", "%s", err.message);
        return;
    }
    json_t *doc = res.status / 100 == 2 ? json_loads(res.body, 0, NULL) : NULL;
    if (res.status == 401 || res.status == 403) {
        doctor_report_add(d->report, "rd.credentials", DOCTOR_FAIL,
                          d->s.rd.api == RD_API_V1
                              ? "copy the instance token again from RD Station CRM (docs/"
                                "rdstation-setup.md) into RDSTATION_TOKEN"
                              : "authorize the app again and put the new refresh token in "
                                "RDSTATION_REFRESH_TOKEN (docs/rdstation-setup.md)",
                          "RD Station refused %s: GET /users answered %ld%s%s", what, res.status,
                          seen ? "; " : "", seen ? seen : "");
    } else if (res.status / 100 != 2) {
        doctor_report_add(d->report, "rd.users", DOCTOR_FAIL, "check RDSTATION_API_BASE_URL",
                          "GET /users answered %ld", res.status);
    } else {
        if (judge)
            doctor_report_add(d->report, "rd.credentials", DOCTOR_OK, NULL,
                              "%s accepted by GET /users%s%s", what, seen ? "; " : "",
                              seen ? seen : "");
        check_rd_users(d, doc);
    }
    json_decref(doc);
    http_response_free(&res);
}

/* v1: GET /token/check, then GET /users. A 404 on /token/check (its answer is not
 * verified on real accounts) leaves the verdict to GET /users. */
static void check_rd_v1(doctor *d)
{
    http_response res = {0};
    calllog_error err;
    char seen[160];
    if (rd_get(d, "/token/check", NULL, &res, &err) != 0) {
        doctor_report_add(d->report, "rd.credentials", DOCTOR_FAIL,
                          "check RDSTATION_API_BASE_URL and the network", "%s", err.message);
        return;
    }
    long status = res.status;
    http_response_free(&res);
    if (status == 401 || status == 403) {
        doctor_report_add(d->report, "rd.credentials", DOCTOR_FAIL,
                          "copy the instance token again from RD Station CRM (docs/"
                          "rdstation-setup.md) into RDSTATION_TOKEN",
                          "RD Station refused RDSTATION_TOKEN: GET /token/check answered %ld",
                          status);
        return;
    }
    if (status / 100 == 2) {
        doctor_report_add(d->report, "rd.credentials", DOCTOR_OK, NULL,
                          "RDSTATION_TOKEN accepted: GET /token/check answered %ld", status);
        rd_users_and_credentials(d, NULL, 0, NULL);
        return;
    }
    snprintf(seen, sizeof seen, "GET /token/check answered %ld, so GET /users decided", status);
    rd_users_and_credentials(d, NULL, 1, seen);
}

/* v2: the access token the workers stored, else (only with --oauth-refresh) a refresh
 * through rd_oauth, which stores the rotated tokens for the workers. */
static void check_rd_v2(doctor *d)
{
    char access[RD_OAUTH_TOKEN_MAX] = "";
    long long expires = 0;
    redisReply *r = d->redis ? redisCommand(d->redis, "HMGET %s access_token access_expires_at_ms",
                                            d->s.keys.oauth)
                             : NULL;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[0]->str &&
        r->element[1]->str) {
        snprintf(access, sizeof access, "%s", r->element[0]->str);
        expires = atoll(r->element[1]->str);
    }
    if (r)
        freeReplyObject(r);
    if (access[0] && expires > timing_epoch_ms() + RD_OAUTH_MIN_TTL_MS) {
        rd_users_and_credentials(d, access, 1, "stored access token from Redis");
        return;
    }
    if (!d->opt->oauth_refresh || !d->redis) {
        doctor_report_add(
            d->report, "rd.credentials", DOCTOR_WARN,
            "start a worker (it refreshes and stores the token) and run doctor again, or run "
            "`calllog-admin doctor --oauth-refresh` (the rotated token is stored for the workers)",
            "cannot check v2 credentials: no valid access token in %s, and a refresh would "
            "spend (rotate) the refresh token",
            d->s.keys.oauth);
        return;
    }
    rd_oauth_settings os = {d->s.rd.oauth_url,     d->s.rd.client_id, d->s.rd.client_secret,
                            d->s.rd.refresh_token, d->s.keys.oauth,   DOCTOR_HTTP_TIMEOUT_MS};
    rd_oauth *o = rd_oauth_new(&os, d->http, d->redis, NULL, NULL);
    calllog_error err;
    if (!o || rd_oauth_token(o, access, sizeof access, &err) != 0) {
        doctor_report_add(d->report, "rd.credentials", DOCTOR_FAIL,
                          "authorize the app again, put the new refresh token in "
                          "RDSTATION_REFRESH_TOKEN and DEL the oauth hash (docs/"
                          "rdstation-setup.md)",
                          "OAuth refresh failed: %s", o ? err.message : "out of memory");
        rd_oauth_free(o);
        return;
    }
    rd_oauth_free(o);
    rd_users_and_credentials(d, access, 1, "access token just refreshed (and stored)");
}

/* The limiter's budget, read without taking from it. */
static void check_rd_ratelimit(doctor *d)
{
    long available = 0, wait_ms = 0;
    if (!d->redis || ratelimit_peek(d->redis, &d->limit, &available, &wait_ms) != 0) {
        doctor_report_add(d->report, "rd.ratelimit", DOCTOR_WARN, NULL,
                          "cannot read the limiter %s", d->s.keys.ratelimit);
        return;
    }
    doctor_report_add(d->report, "rd.ratelimit", DOCTOR_OK, NULL,
                      "%ld of %ld requests available now%s%.0ld%s (limit %ld/min for all "
                      "workers, key %s)",
                      available, d->s.rate_burst, wait_ms ? ", next in " : "", wait_ms,
                      wait_ms ? " ms" : "", d->s.rate_per_minute, d->s.keys.ratelimit);
}

/* --write-test DEAL: one marked note through the normal client. */
static void check_rd_write(doctor *d)
{
    rd_settings rs = d->s.rd;
    rs.acquire = doctor_acquire;
    rs.acquire_arg = d;
    rd_client *c = d->redis ? rd_client_new(&rs, d->redis, &d->s.keys) : NULL;
    char note_id[128] = "", when[40], text[512];
    calllog_error err = {0};
    timing_format_rfc3339(timing_epoch_ms(), when, sizeof when);
    snprintf(text, sizeof text,
             "[calllog doctor] Nota de teste escrita por calllog-admin doctor --write-test em %s; "
             "pode ser ignorada. (Test note, safe to ignore.)",
             when);
    char owner[64] = ""; /* without RDSTATION_USER_ID notes are the deal owner's */
    calllog_code st =
        c ? CALLLOG_OK : error_set(&err, CALLLOG_NOMEM, "cannot create the RD client");
    if (st == CALLLOG_OK && !d->s.rd_user_id)
        st = rd_deal_owner(c, d->opt->write_test_deal, owner, sizeof owner, &err);
    if (st == CALLLOG_OK)
        st = rd_post_note(c, d->opt->write_test_deal, d->s.rd_user_id ? d->s.rd_user_id : owner,
                          text, note_id, sizeof note_id, &err);
    if (st == CALLLOG_OK)
        doctor_report_add(d->report, "rd.write_test", DOCTOR_OK, NULL,
                          "test note %s posted on deal %s", note_id, d->opt->write_test_deal);
    else
        doctor_report_add(
            d->report, "rd.write_test", DOCTOR_FAIL,
            "check the deal id and that RDSTATION_USER_ID's user (or the deal's owner) may see it",
            "posting the test note on deal %s failed: %s", d->opt->write_test_deal,
            c ? err.message : "no client (Redis unreachable?)");
    rd_client_free(c);
}

void doctor_check_rd(doctor *d)
{
    check_rd_ratelimit(d);
    if (d->s.rd.api == RD_API_V1)
        check_rd_v1(d);
    else
        check_rd_v2(d);
    if (d->opt->write_test_deal)
        check_rd_write(d);
}
