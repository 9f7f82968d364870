/* test_signature — unit tests for X-Twilio-Signature verification (common/signature.c).
 *
 * The first group is every official vector from ../shared/reference/twilio.md (the Twilio
 * SDKs' published test data). The rest pin down behaviour the SDKs agree on but publish no
 * vector for: token rotation, body hashes, raw queries, fragments, userinfo and IPv6 ports.
 * Expected values outside the official table were computed independently of this code with
 * Python's hmac module, never with signature_compute:
 *
 *   import hmac, hashlib, base64
 *   def sig(url, params, tok=b"12345"):   # params: {key: [values]}
 *       s = url
 *       for k in sorted(params):
 *           for v in sorted(set(params[k])):
 *               s += k + v
 *       return base64.b64encode(hmac.new(tok, s.encode(), hashlib.sha1).digest()).decode()
 */
#include <string.h>

#include <criterion/criterion.h>

#include "common/form.h"
#include "common/signature.h"

#define U "https://mycompany.com/myapp.php?foo=1&bar=2"
#define BODY_HASH "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
#define JSON_BODY "{\"property\": \"value\", \"boolean\": true}"

static const char *const tok1[] = {"12345"};

static form_param p_params[] = {
    {"CallSid", "CA1234567890ABCDE"}, {"Caller", "+14158675309"}, {"Digits", "1234"},
    {"From", "+14158675309"},         {"To", "+18005551212"},
};
static const form P = {p_params, 5};

/* Checks a form request signed for the single official token. */
static sig_result check1(const char *url, const form *params, const char *header)
{
    return signature_check_form(tok1, 1, url, params, header);
}

/* ---- official vectors ---- */

Test(signature_official, valid_u_p)
{
    cr_assert_eq(check1(U, &P, "RSOYDt4T1cUTdK1PDd93/VVr8B8="), SIG_OK);
}

Test(signature_official, port_stripped)
{
    cr_assert_eq(check1("https://mycompany.com:1234/myapp.php?foo=1&bar=2", &P,
                        "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
                 SIG_OK);
}

Test(signature_official, https_443_form_accepted_for_u)
{
    /* kvaj… is the signature of https://mycompany.com:443/myapp.php?foo=1&bar=2 + P. */
    cr_assert_eq(check1(U, &P, "kvajT1Ptam85bY51eRf/AJRuM3w="), SIG_OK);
    cr_assert_eq(check1("https://mycompany.com:443/myapp.php?foo=1&bar=2", &P,
                        "kvajT1Ptam85bY51eRf/AJRuM3w="),
                 SIG_OK);
}

Test(signature_official, http_80_form)
{
    cr_assert_eq(
        check1("http://mycompany.com/myapp.php?foo=1&bar=2", &P, "0ZXoZLH/DfblKGATFgpif+LLRf4="),
        SIG_OK);
}

Test(signature_official, repeated_key_dedupe_and_sort)
{
    form_param kv[] = {{"Sid", "CA123"},
                       {"SidAccount", "AC123"},
                       {"Digits", "5678"},
                       {"Digits", "1234"},
                       {"Digits", "1234"}};
    form f = {kv, 5};
    cr_assert_eq(check1(U, &f, "IK+Dwps556ElfBT0I3Rgjkr1wJU="), SIG_OK);
}

Test(signature_official, sort_by_key_not_key_plus_value)
{
    form_param kv[] = {
        {"CallSid", "CA1234567890ABCDE"},
        {"Caller", "+14158675309"},
        {"Digits", "1234"},
        {"From", "+14158675309"},
        {"To", "+18005551212"},
        {"ReasonConferenceEnded", "test"},
        {"Reason", "Participant"},
    };
    form f = {kv, 7};
    cr_assert_eq(check1(U, &f, "vOEb5UThFn24KEfnOFLQY2AE5FY="), SIG_OK);
    cr_assert_eq(check1(U, &f, "95+Bu0JVPi0r/SsESZCVf0dWAjw="), SIG_MISMATCH);
}

Test(signature_official, json_body_sha256)
{
    cr_assert_eq(signature_check_json(tok1, 1, U "&bodySHA256=" BODY_HASH, JSON_BODY,
                                      strlen(JSON_BODY), "a9nBmqA0ju/hNViExpshrM61xv4="),
                 SIG_OK);
}

Test(signature_official, wrong_and_empty)
{
    cr_assert_eq(check1(U, &P, "WRONG_SIGNATURE"), SIG_MISMATCH);
    cr_assert_eq(check1(U, &P, ""), SIG_MISSING);
    cr_assert_eq(check1(U, &P, NULL), SIG_MISSING);
    cr_assert_eq(signature_check_json(tok1, 1, U, "{}", 2, ""), SIG_MISSING);
}

/* ---- signature_compute ---- */

Test(signature_compute, reproduces_official_vectors)
{
    char out[SIGNATURE_LEN + 1];
    cr_assert_eq(signature_compute("12345", U, &P, out), 0);
    cr_assert_str_eq(out, "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
    cr_assert_eq(
        signature_compute("12345", "https://mycompany.com:443/myapp.php?foo=1&bar=2", &P, out), 0);
    cr_assert_str_eq(out, "kvajT1Ptam85bY51eRf/AJRuM3w=");
    cr_assert_eq(signature_compute("12345", U "&bodySHA256=" BODY_HASH, NULL, out), 0);
    cr_assert_str_eq(out, "a9nBmqA0ju/hNViExpshrM61xv4=");
    cr_assert_eq(signature_compute(NULL, U, NULL, out), -1);
    cr_assert_eq(signature_compute("12345", NULL, NULL, out), -1);
}

Test(signature_compute, empty_form_same_as_null)
{
    char a[SIGNATURE_LEN + 1], b[SIGNATURE_LEN + 1];
    form empty = {NULL, 0};
    cr_assert_eq(signature_compute("12345", U, NULL, a), 0);
    cr_assert_eq(signature_compute("12345", U, &empty, b), 0);
    cr_assert_str_eq(a, b);
    cr_assert_str_eq(a, "zYQTYrRWXE7LtzbG4PfP7/bkkGo="); /* python: sig(U, {}) */
}

/* ---- behaviour beyond the table ---- */

Test(signature, parsed_body_matches_official_vector)
{
    const char *body = "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234"
                       "&From=%2B14158675309&To=%2B18005551212";
    form f;
    cr_assert_eq(form_parse(body, strlen(body), 512, &f), FORM_OK);
    cr_assert_eq(check1(U, &f, "RSOYDt4T1cUTdK1PDd93/VVr8B8="), SIG_OK);
    form_free(&f);
}

Test(signature, secondary_token_accepted)
{
    /* python: sig(U, P, b"secondary-token-abc") */
    const char *hdr = "3ZjsKPptE+PwAI/+poyn8ncs4OE=";
    const char *const both[] = {"12345", "secondary-token-abc"};
    const char *const swapped[] = {"secondary-token-abc", "12345"};
    cr_assert_eq(signature_check_form(both, 2, U, &P, hdr), SIG_OK);
    cr_assert_eq(signature_check_form(swapped, 2, U, &P, "RSOYDt4T1cUTdK1PDd93/VVr8B8="), SIG_OK);
    cr_assert_eq(check1(U, &P, hdr), SIG_MISMATCH, "not accepted without the secondary token");
    cr_assert_eq(signature_check_form(both, 0, U, &P, hdr), SIG_MISMATCH, "no tokens");
}

Test(signature, tampered_params_refused)
{
    form_param kv[] = {
        {"CallSid", "CA1234567890ABCDE"}, {"Caller", "+14158675309"}, {"Digits", "1234"},
        {"From", "+14158675309"},         {"To", "+18005551299"},
    };
    form f = {kv, 5};
    cr_assert_eq(check1(U, &f, "RSOYDt4T1cUTdK1PDd93/VVr8B8="), SIG_MISMATCH);
    cr_assert_eq(check1(U "&x=1", &P, "RSOYDt4T1cUTdK1PDd93/VVr8B8="), SIG_MISMATCH);
    cr_assert_eq(check1(U, &P, "RSOYDt4T1cUTdK1PDd93/VVr8B8"), SIG_MISMATCH, "27 chars");
    cr_assert_eq(check1(U, &P, "RSOYDt4T1cUTdK1PDd93/VVr8B8=="), SIG_MISMATCH, "29 chars");
    cr_assert_eq(check1(U, &P, "rSOYDt4T1cUTdK1PDd93/VVr8B8="), SIG_MISMATCH, "one byte off");
}

Test(signature, body_hash_mismatch_refused)
{
    const char *other = "{\"property\": \"value\", \"boolean\": false}";
    cr_assert_eq(signature_check_json(tok1, 1, U "&bodySHA256=" BODY_HASH, other, strlen(other),
                                      "a9nBmqA0ju/hNViExpshrM61xv4="),
                 SIG_BODY_HASH_MISMATCH);
}

Test(signature, body_hash_missing_or_malformed)
{
    /* python: sig(U, {}) — validly signed, but no bodySHA256 in the query. */
    cr_assert_eq(signature_check_json(tok1, 1, U, JSON_BODY, strlen(JSON_BODY),
                                      "zYQTYrRWXE7LtzbG4PfP7/bkkGo="),
                 SIG_BODY_HASH_MISSING);
    /* A bad signature is reported before the body is looked at. */
    cr_assert_eq(signature_check_json(tok1, 1, U, JSON_BODY, strlen(JSON_BODY),
                                      "a9nBmqA0ju/hNViExpshrM61xv4="),
                 SIG_MISMATCH);
}

Test(signature, body_hash_uppercase_and_port_variant)
{
    char url[256];
    size_t n;
    /* python: sig(U + "&bodySHA256=" + h.upper(), {}) */
    strcpy(url, U "&bodySHA256=" BODY_HASH);
    n = strlen(url);
    for (size_t i = n - strlen(BODY_HASH); i < n; i++) {
        if (url[i] >= 'a' && url[i] <= 'f')
            url[i] = (char)(url[i] - 'a' + 'A');
    }
    cr_assert_eq(signature_check_json(tok1, 1, url, JSON_BODY, strlen(JSON_BODY),
                                      "KF9uuYbODKamvlRt1B1bFONb+Q8="),
                 SIG_OK);
    /* python: sig("https://mycompany.com:443/myapp.php?foo=1&bar=2&bodySHA256=" + h, {}) */
    cr_assert_eq(signature_check_json(tok1, 1, U "&bodySHA256=" BODY_HASH, JSON_BODY,
                                      strlen(JSON_BODY), "uzN7O1319XdYoYMfTT2eUM1PJT0="),
                 SIG_OK);
}

Test(signature, body_hash_percent_encoded_key)
{
    /* The query is percent-decoded before comparing: %62 is 'b'. Same signed URL bytes. */
    const char *url = U "&%62odySHA256=" BODY_HASH;
    char hdr[SIGNATURE_LEN + 1];
    cr_assert_eq(signature_compute("12345", url, NULL, hdr), 0);
    cr_assert_eq(signature_check_json(tok1, 1, url, JSON_BODY, strlen(JSON_BODY), hdr), SIG_OK);
    cr_assert_eq(signature_check_json(tok1, 1, url, "{}", 2, hdr), SIG_BODY_HASH_MISMATCH);
}

#define RAW_Q "https://calllog.example.com/twilio/log-call?name=O'Brien&tag=a+b%2Bc"
static form_param raw_kv[] = {{"CallSid", "CA1"}, {"CallStatus", "completed"}};
static const form RAW_P = {raw_kv, 2};

Test(signature, raw_query_signed_raw)
{
    /* python: sig(RAW_Q, {"CallSid": ["CA1"], "CallStatus": ["completed"]}) */
    cr_assert_eq(check1(RAW_Q, &RAW_P, "9Pd/fiF4egPlH2gnKE11uEF1c+Q="), SIG_OK);
    /* The re-encoded URL (what twilio-node issues #1059/#1183 did) is a different string:
     * python: sig("...?name=O%27Brien&tag=a%20b%2Bc", same params). */
    cr_assert_eq(check1(RAW_Q, &RAW_P, "dB9V/GtF4gSMXzKWcsApAX4A62E="), SIG_MISMATCH);
}

Test(signature, fragment_never_signed)
{
    cr_assert_eq(check1(RAW_Q "#rc=3&rp=all&ct=2000", &RAW_P, "9Pd/fiF4egPlH2gnKE11uEF1c+Q="),
                 SIG_OK);
    cr_assert_eq(check1(U "#rc=3", &P, "kvajT1Ptam85bY51eRf/AJRuM3w="), SIG_OK,
                 ":443 inserted before the path, fragment dropped");
    char out[SIGNATURE_LEN + 1];
    cr_assert_eq(signature_compute("12345", RAW_Q "#rt=5000", &RAW_P, out), 0);
    cr_assert_str_eq(out, "9Pd/fiF4egPlH2gnKE11uEF1c+Q=");
}

static form_param a1_kv[] = {{"A", "1"}};
static const form A1 = {a1_kv, 1};

Test(signature, ipv6_literal_port)
{
    /* python: sig(url, {"A": ["1"]}) for each URL named below. */
    const char *with_port = "https://[2001:db8::1]:8443/hook?x=a:b";
    const char *no_port = "https://[2001:db8::1]/hook?x=a:b";
    cr_assert_eq(check1(with_port, &A1, "78LdaSOLTKzwL5K5i1v735DOMcA="), SIG_OK, "as given");
    cr_assert_eq(check1(with_port, &A1, "tTWcOGvddVIRlCXtRuxiF5+045A="), SIG_OK, "stripped");
    cr_assert_eq(check1(no_port, &A1, "tTWcOGvddVIRlCXtRuxiF5+045A="), SIG_OK, "as given");
    cr_assert_eq(check1(no_port, &A1, "tUT7bOtlkQX6J2blEdKyvaHKIyQ="), SIG_OK, ":443 added");
    cr_assert_eq(check1(no_port, &A1, "78LdaSOLTKzwL5K5i1v735DOMcA="), SIG_MISMATCH,
                 "a port never given is never guessed");
}

Test(signature, userinfo_and_colons_outside_authority)
{
    /* python: sig("https://user:pw@example.com/p:q?t=1:2", A1) and the same with :443. */
    const char *plain = "https://user:pw@example.com/p:q?t=1:2";
    const char *with443 = "https://user:pw@example.com:443/p:q?t=1:2";
    cr_assert_eq(check1(plain, &A1, "fu/5QYaRHO/T1aL/Obx5Ld7/4yA="), SIG_OK);
    cr_assert_eq(check1(plain, &A1, "qP5tdwt4Ztx5s0EcdahJelBQ1xI="), SIG_OK);
    cr_assert_eq(check1(with443, &A1, "fu/5QYaRHO/T1aL/Obx5Ld7/4yA="), SIG_OK);
    cr_assert_eq(check1(with443, &A1, "qP5tdwt4Ztx5s0EcdahJelBQ1xI="), SIG_OK);
}

Test(signature, authority_only_url)
{
    /* python: sig("https://example.com:443", {}) */
    cr_assert_eq(check1("https://example.com", NULL, "fREkL35/aD4LpcsnbmSobI/G0Xw="), SIG_OK);
}

Test(signature, unparseable_url_tried_as_given_only)
{
    char out[SIGNATURE_LEN + 1];
    const char *odd[] = {"not a url", "https://[::1/x", "https://h:8x/p", "https://[::1]x/p", ""};
    for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
        cr_assert_eq(signature_compute("12345", odd[i], &P, out), 0);
        cr_assert_eq(check1(odd[i], &P, out), SIG_OK, "url %s", odd[i]);
        cr_assert_eq(check1(odd[i], &P, "RSOYDt4T1cUTdK1PDd93/VVr8B8="), SIG_MISMATCH);
    }
}

Test(signature, strerror_names_each_result)
{
    cr_assert_str_eq(signature_strerror(SIG_OK), "ok");
    cr_assert_str_eq(signature_strerror(SIG_MISMATCH), "signature mismatch");
    cr_assert_str_neq(signature_strerror(SIG_BODY_HASH_MISSING),
                      signature_strerror(SIG_BODY_HASH_MISMATCH));
    cr_assert_str_neq(signature_strerror(SIG_MISSING), signature_strerror(SIG_ERROR));
}
