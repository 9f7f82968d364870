/* doctor_twilio — the Twilio checks of `calllog-admin doctor` (see doctor_check.h).
 *
 * The REST credentials (an API key or the auth token) open the account of
 * TWILIO_ACCOUNT_SID, the ingest's auth token belongs to that account (Twilio's answer to
 * a key of another account is marked unverified in the reference: 404 and 401 are both
 * taken), and every incoming number sends its status callback to
 * PUBLIC_BASE_URL/twilio/log-call with the recommended retry fragment. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/config.h"
#include "worker/doctor_check.h"

#define MAX_NUMBER_PAGES 50
/* GET `path` on Twilio's API with Basic `user:pass`. Returns the parsed 2xx answer
 * (caller frees), or NULL with `*status` (0: transport) and `why` filled. */
static json_t *twilio_get(doctor *d, const char *path, const char *user, const char *pass,
                          long *status, char *why, size_t whylen)
{
    char url[2048], auth[512];
    http_response res = {0};
    calllog_error err;
    snprintf(url, sizeof url, "%s%s", d->s.twilio.base_url, path);
    snprintf(auth, sizeof auth, "%s:%s", user, pass);
    const char *headers[] = {"Accept: application/json", NULL};
    int rc = http_request(d->http, "GET", url, headers, auth, NULL, 0, &res, &err);
    memset(auth, 0, sizeof auth);
    *status = rc == 0 ? res.status : 0;
    if (rc != 0) {
        snprintf(why, whylen, "%s", err.message);
        return NULL;
    }
    json_t *doc = res.status / 100 == 2 ? json_loads(res.body, 0, NULL) : NULL;
    if (!doc) {
        json_t *e = json_loads(res.body, 0, NULL);
        const char *m = json_string_value(json_object_get(e, "message"));
        snprintf(why, whylen, "answered %ld%s%s", res.status, m ? ": " : "", m ? m : "");
        json_decref(e);
    }
    http_response_free(&res);
    return doc;
}

/* Checks one credential pair against the Account resource. Returns 1 when accepted. */
static int check_twilio_account(doctor *d, const char *check, const char *user, const char *pass,
                                const char *what, const char *fix)
{
    char path[256], why[512];
    long status;
    snprintf(path, sizeof path, "/2010-04-01/Accounts/%s.json", d->s.twilio.account_sid);
    json_t *doc = twilio_get(d, path, user, pass, &status, why, sizeof why);
    if (!doc) {
        doctor_report_add(d->report, check, DOCTOR_FAIL, fix, "%s: GET Accounts/%s.json %s%s", what,
                          d->s.twilio.account_sid, why,
                          status == 404 ? " (Twilio answers 404 or 401 when the credentials "
                                          "belong to another account)"
                                        : "");
        return 0;
    }
    const char *sid = json_string_value(json_object_get(doc, "sid"));
    const char *st = json_string_value(json_object_get(doc, "status"));
    const char *name = json_string_value(json_object_get(doc, "friendly_name"));
    int ok = sid && strcmp(sid, d->s.twilio.account_sid) == 0 && (!st || strcmp(st, "active") == 0);
    doctor_report_add(d->report, check, ok ? DOCTOR_OK : DOCTOR_FAIL, fix,
                      "%s: account %s (%s), status %s", what, sid ? sid : "?", name ? name : "",
                      st ? st : "not reported");
    json_decref(doc);
    return ok;
}

/* One number's status callback against the expected URL; adds it to the lists. */
static void classify_number(const json_t *n, const char *expected, char *bad, size_t badlen,
                            size_t *nbad, char *nofrag, size_t nofraglen, size_t *nnofrag)
{
    const char *number = json_string_value(json_object_get(n, "phone_number"));
    const char *cb = json_string_value(json_object_get(n, "status_callback"));
    const char *method = json_string_value(json_object_get(n, "status_callback_method"));
    char w[700];
    number = number ? number : "?";
    size_t len = cb ? strcspn(cb, "#") : 0;
    if (!cb || len != strlen(expected) || strncmp(cb, expected, len) != 0) {
        snprintf(w, sizeof w, "%s → %.*s", number, cb && *cb ? (int)len : 6,
                 cb && *cb ? cb : "(none)");
        doctor_list_add(bad, badlen, nbad, w);
    } else if (method && strcasecmp(method, "POST") != 0) {
        snprintf(w, sizeof w, "%s → %.300s with %.16s (the ingest takes POST only)", number,
                 expected, method);
        doctor_list_add(bad, badlen, nbad, w);
    } else if (cb[len] != '#') {
        doctor_list_add(nofrag, nofraglen, nnofrag, number);
    }
}

/* Pages the account's incoming numbers and compares their status callbacks. */
static void check_twilio_numbers(doctor *d)
{
    const char *base = config_str("PUBLIC_BASE_URL", NULL);
    char expected[1200], path[2048], why[512], bad[1024] = "", nofrag[512] = "", prefix[256];
    size_t nbad = 0, nnofrag = 0, total = 0, blen = base ? strlen(base) : 0;
    while (blen > 0 && base[blen - 1] == '/')
        blen--;
    snprintf(expected, sizeof expected, "%.*s%s", (int)blen, base ? base : "",
             DOCTOR_LOG_CALL_PATH);
    snprintf(prefix, sizeof prefix, "/2010-04-01/Accounts/%s/IncomingPhoneNumbers.json",
             d->s.twilio.account_sid);
    snprintf(path, sizeof path, "%s?PageSize=100", prefix);
    for (int page = 0; page < MAX_NUMBER_PAGES; page++) {
        long status;
        json_t *doc = twilio_get(d, path, d->s.twilio.username, d->s.twilio.password, &status, why,
                                 sizeof why);
        const json_t *list = json_object_get(doc, "incoming_phone_numbers");
        if (!json_is_array(list)) {
            doctor_report_add(d->report, "twilio.numbers", DOCTOR_FAIL, NULL,
                              "cannot list the incoming numbers: GET IncomingPhoneNumbers.json %s",
                              doc ? "answered without incoming_phone_numbers" : why);
            json_decref(doc);
            return;
        }
        size_t i;
        const json_t *n;
        json_array_foreach(list, i, n)
        {
            classify_number(n, expected, bad, sizeof bad, &nbad, nofrag, sizeof nofrag, &nnofrag);
            total++;
        }
        const char *next = json_string_value(json_object_get(doc, "next_page_uri"));
        int more = next && strncmp(next, prefix, strlen(prefix)) == 0;
        if (more)
            snprintf(path, sizeof path, "%s", next);
        json_decref(doc);
        if (!more)
            break;
    }
    char fix[1400];
    snprintf(fix, sizeof fix,
             "set each number's status callback (POST) to %s" DOCTOR_RECOMMENDED_FRAGMENT
             " (docs/twilio-setup.md)",
             expected);
    if (!base)
        doctor_report_add(d->report, "twilio.numbers", DOCTOR_WARN,
                          "set PUBLIC_BASE_URL (the ingest's setting) where doctor runs",
                          "PUBLIC_BASE_URL not set: cannot tell where %zu number(s) should "
                          "point",
                          total);
    else if (nbad > 0)
        doctor_report_add(d->report, "twilio.numbers", DOCTOR_FAIL, fix,
                          "%zu of %zu number(s) do not send status callbacks to %s: %s", nbad,
                          total, expected, bad);
    else if (total == 0)
        doctor_report_add(d->report, "twilio.numbers", DOCTOR_WARN, "buy or port a number",
                          "the account has no incoming phone numbers");
    else if (nnofrag > 0)
        doctor_report_add(d->report, "twilio.numbers", DOCTOR_WARN, fix,
                          "%zu number(s) point at %s, but without the connection-override "
                          "fragment Twilio does not retry a 5xx or a timeout: %s",
                          total, expected, nofrag);
    else
        doctor_report_add(d->report, "twilio.numbers", DOCTOR_OK, NULL,
                          "%zu number(s) send status callbacks to %s with retries", total,
                          expected);
}

void doctor_check_twilio(doctor *d)
{
    const twilio_settings *t = &d->s.twilio;
    const char *auth_token = config_str("TWILIO_AUTH_TOKEN", NULL);
    if (!t->account_sid || !t->username || !t->password) {
        doctor_report_add(d->report, "twilio.credentials", DOCTOR_WARN,
                          "set TWILIO_ACCOUNT_SID and TWILIO_API_KEY_SID/TWILIO_API_KEY_SECRET",
                          "Twilio REST credentials not set: no enrichment, and no reconciler to "
                          "read back calls whose webhook never arrived");
        return;
    }
    int api_key = strcmp(t->username, t->account_sid) != 0;
    if (!check_twilio_account(d, "twilio.credentials", t->username, t->password,
                              api_key ? "TWILIO_API_KEY_SID/SECRET" : "TWILIO_AUTH_TOKEN",
                              "create an API key in the account of TWILIO_ACCOUNT_SID and set "
                              "TWILIO_API_KEY_SID/TWILIO_API_KEY_SECRET"))
        return;
    if (api_key && auth_token)
        check_twilio_account(d, "twilio.auth_token", t->account_sid, auth_token,
                             "TWILIO_AUTH_TOKEN (signs webhooks)",
                             "copy the auth token of TWILIO_ACCOUNT_SID from the Twilio console: "
                             "with another one every webhook gets 403");
    else if (!auth_token)
        doctor_report_add(d->report, "twilio.auth_token", DOCTOR_WARN,
                          "run doctor with the ingest's TWILIO_AUTH_TOKEN too",
                          "TWILIO_AUTH_TOKEN not set here: cannot check the token the ingest "
                          "verifies signatures with");
    check_twilio_numbers(d);
}
