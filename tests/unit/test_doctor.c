/* test_doctor — unit tests for the pure parts of calllog-admin doctor (worker/doctor.c):
 * the signature variant diagnosis and the report. Signatures come from the Twilio SDKs'
 * official vectors (token 12345, ../shared/reference/twilio.md) and from
 * signature_compute over variants the tests build. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "common/form.h"
#include "common/signature.h"
#include "worker/doctor_report.h"
#include "worker/doctor_signature.h"

static const char VECTOR_PARAMS[] = "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&"
                                    "From=%2B14158675309&To=%2B18005551212";
static const char *const TOKEN[] = {"12345"};

/* Diagnoses `sig` for `url` against PUBLIC_BASE_URL `base` with the vector params. */
static doctor_sig_diagnosis diagnose(const char *base, const char *url, const char *sig)
{
    form f;
    doctor_sig_diagnosis d;
    cr_assert_eq(form_parse(VECTOR_PARAMS, strlen(VECTOR_PARAMS), 100, &f), FORM_OK);
    cr_assert_eq(doctor_signature_diagnose(TOKEN, 1, base, url, &f, sig, &d), 0);
    form_free(&f);
    return d;
}

/* The signature of `url` with the vector params and token 12345. */
static void sign(const char *url, char *out)
{
    form f;
    cr_assert_eq(form_parse(VECTOR_PARAMS, strlen(VECTOR_PARAMS), 100, &f), FORM_OK);
    cr_assert_eq(signature_compute("12345", url, &f, out), 0);
    form_free(&f);
}

Test(doctor_signature, official_vector_is_found_for_its_query_url)
{
    /* The vector's URL is not /twilio/log-call: the ingest would not accept it, but the
     * diagnosis finds the variant and says the path differs. */
    doctor_sig_diagnosis d =
        diagnose("https://mycompany.com", "https://mycompany.com/myapp.php?foo=1&bar=2",
                 "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
    cr_assert_eq(d.verified, 0);
    cr_assert_eq(d.matched, 1);
    cr_assert_str_eq(d.signed_url, "https://mycompany.com/myapp.php?foo=1&bar=2");
    cr_assert(strstr(d.differences, "path /myapp.php, not /twilio/log-call"), "%s", d.differences);
    cr_assert_str_eq(d.expected_url, "https://mycompany.com/twilio/log-call?foo=1&bar=2");
}

Test(doctor_signature, official_http_vector_reports_the_scheme)
{
    doctor_sig_diagnosis d =
        diagnose("https://mycompany.com", "https://mycompany.com/myapp.php?foo=1&bar=2",
                 "0ZXoZLH/DfblKGATFgpif+LLRf4=");
    cr_assert_eq(d.matched, 1);
    cr_assert(strncmp(d.signed_url, "http://mycompany.com", 20) == 0, "%s", d.signed_url);
    cr_assert(strstr(d.differences, "scheme http, not https"), "%s", d.differences);
}

Test(doctor_signature, verified_when_the_ingest_would_accept)
{
    char sig[SIGNATURE_LEN + 1];
    sign("https://calls.example.com/twilio/log-call", sig);
    doctor_sig_diagnosis d =
        diagnose("https://calls.example.com/", "https://calls.example.com/twilio/log-call", sig);
    cr_assert_eq(d.verified, 1);
    cr_assert_str_eq(d.base_url, "https://calls.example.com");
    cr_assert_str_eq(d.differences, "");
}

Test(doctor_signature, port_variants_are_accepted_like_the_ingest)
{
    char sig[SIGNATURE_LEN + 1];
    sign("https://calls.example.com:443/twilio/log-call", sig);
    doctor_sig_diagnosis d =
        diagnose("https://calls.example.com", "https://calls.example.com/twilio/log-call", sig);
    cr_assert_eq(d.verified, 1);
}

Test(doctor_signature, http_when_base_is_https)
{
    char sig[SIGNATURE_LEN + 1];
    sign("http://calls.example.com/twilio/log-call", sig);
    doctor_sig_diagnosis d =
        diagnose("https://calls.example.com", "https://calls.example.com/twilio/log-call", sig);
    cr_assert_eq(d.verified, 0);
    cr_assert_eq(d.matched, 1);
    cr_assert_str_eq(d.signed_url, "http://calls.example.com/twilio/log-call");
    cr_assert_str_eq(d.base_url, "http://calls.example.com");
    cr_assert_str_eq(d.differences, "scheme http, not https");
}

Test(doctor_signature, internal_host_and_port_behind_a_proxy)
{
    char sig[SIGNATURE_LEN + 1];
    sign("http://10.0.0.5:8080/twilio/log-call", sig);
    doctor_sig_diagnosis d =
        diagnose("http://10.0.0.5:8080", "https://calls.example.com/twilio/log-call", sig);
    cr_assert_eq(d.matched, 1);
    cr_assert_eq(d.verified, 1, "the base names the host and port that were signed");
    d = diagnose("https://calls.example.com", "http://10.0.0.5:8080/twilio/log-call", sig);
    cr_assert_eq(d.verified, 0);
    cr_assert_str_eq(d.base_url, "http://10.0.0.5:8080");
    cr_assert(strstr(d.differences, "host 10.0.0.5, not calls.example.com"), "%s", d.differences);
}

Test(doctor_signature, trailing_slash_and_dropped_query)
{
    char sig[SIGNATURE_LEN + 1];
    sign("https://calls.example.com/twilio/log-call/", sig);
    doctor_sig_diagnosis d =
        diagnose("https://calls.example.com", "https://calls.example.com/twilio/log-call", sig);
    cr_assert_eq(d.matched, 1);
    cr_assert(strstr(d.differences, "path /twilio/log-call/"), "%s", d.differences);
    sign("https://calls.example.com/twilio/log-call", sig);
    d = diagnose("https://calls.example.com", "https://calls.example.com/twilio/log-call?x=1", sig);
    cr_assert_eq(d.matched, 1);
    cr_assert_str_eq(d.differences, "query dropped");
}

Test(doctor_signature, a_path_alone_borrows_the_base_origin)
{
    char sig[SIGNATURE_LEN + 1];
    sign("https://calls.example.com/twilio/log-call", sig);
    doctor_sig_diagnosis d = diagnose("https://calls.example.com", "/twilio/log-call", sig);
    cr_assert_eq(d.verified, 1);
}

Test(doctor_signature, nothing_matches_another_token)
{
    doctor_sig_diagnosis d =
        diagnose("https://calls.example.com", "https://calls.example.com/twilio/log-call",
                 "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
    cr_assert_eq(d.matched, 0);
    cr_assert_eq(d.verified, 0);
}

Test(doctor_signature, secondary_token_is_named)
{
    const char *const tokens[] = {"other", "12345"};
    char sig[SIGNATURE_LEN + 1];
    form f;
    doctor_sig_diagnosis d;
    sign("http://calls.example.com/twilio/log-call", sig);
    cr_assert_eq(form_parse(VECTOR_PARAMS, strlen(VECTOR_PARAMS), 100, &f), FORM_OK);
    cr_assert_eq(doctor_signature_diagnose(tokens, 2, "https://calls.example.com",
                                           "https://calls.example.com/twilio/log-call", &f, sig,
                                           &d),
                 0);
    form_free(&f);
    cr_assert_eq(d.token, 1);
    cr_assert_eq(d.matched, 1);
}

Test(doctor_signature, unreadable_urls_are_refused)
{
    doctor_sig_diagnosis d;
    cr_assert_eq(doctor_signature_diagnose(TOKEN, 1, "calls.example.com", "/x", NULL, "s", &d), -1);
    cr_assert_eq(doctor_signature_diagnose(TOKEN, 1, "https://a", "no-scheme", NULL, "s", &d), -1);
    cr_assert_eq(doctor_signature_diagnose(TOKEN, 1, "https://a", "https://[::1/x", NULL, "s", &d),
                 -1);
}

Test(doctor_report, text_and_json)
{
    doctor_report *r = doctor_report_new();
    cr_assert(r);
    cr_assert_eq(doctor_report_add(r, "redis.aof", DOCTOR_OK, "ignored", "appendonly %s", "yes"),
                 0);
    cr_assert_eq(doctor_report_failed(r), 0);
    cr_assert_eq(doctor_report_add(r, "redis.eviction", DOCTOR_FAIL, "set noeviction", "lru"), 0);
    cr_assert_eq(doctor_report_failed(r), 1);
    cr_assert_eq(doctor_report_count(r), 2);
    cr_assert_str_eq(doctor_report_item(r, 0)->fix, "", "an ok line has no fix");
    cr_assert_null(doctor_report_item(r, 2));
    char buf[4096] = "";
    FILE *f = fmemopen(buf, sizeof buf, "w");
    cr_assert_not_null(f, "fmemopen: out of memory");
    doctor_report_print(r, 0, f);
    fclose(f);
    cr_assert(strstr(buf, "ok    redis.aof            appendonly yes\n"), "%s", buf);
    cr_assert(strstr(buf, "FAIL  redis.eviction       lru — fix: set noeviction\n"), "%s", buf);
    memset(buf, 0, sizeof buf);
    f = fmemopen(buf, sizeof buf, "w");
    cr_assert_not_null(f, "fmemopen: out of memory");
    doctor_report_print(r, 1, f);
    fclose(f);
    cr_assert(strstr(buf, "\"ok\": false"), "%s", buf);
    cr_assert(strstr(buf, "\"status\": \"fail\""), "%s", buf);
    doctor_report_free(r);
}
