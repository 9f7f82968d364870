/* test_error — unit tests for common/error: the transient/permanent table of
 * error_classify (the one place that decides what is worth retrying), the sign convention
 * of the code space, and error_set/error_clear. */
#include <criterion/criterion.h>
#include <string.h>

#include "common/error.h"

Test(error_classify, table)
{
    static const struct {
        int curl;
        long status;
        calllog_code want;
    } cases[] = {
        {6, 0, CALLLOG_TRANSIENT},    /* could not resolve host */
        {7, 0, CALLLOG_TRANSIENT},    /* could not connect */
        {28, 0, CALLLOG_TRANSIENT},   /* timeout */
        {35, 0, CALLLOG_TRANSIENT},   /* TLS handshake */
        {56, 0, CALLLOG_TRANSIENT},   /* connection reset while receiving */
        {28, 200, CALLLOG_TRANSIENT}, /* a curl error wins over a partial status */
        {0, 200, CALLLOG_OK},         {0, 201, CALLLOG_OK},        {0, 204, CALLLOG_OK},
        {0, 299, CALLLOG_OK},         {0, 401, CALLLOG_PERMANENT}, {0, 408, CALLLOG_TRANSIENT},
        {0, 429, CALLLOG_TRANSIENT},  {0, 500, CALLLOG_TRANSIENT}, {0, 502, CALLLOG_TRANSIENT},
        {0, 503, CALLLOG_TRANSIENT},  {0, 504, CALLLOG_TRANSIENT}, {0, 599, CALLLOG_TRANSIENT},
        {0, 0, CALLLOG_TRANSIENT},    {0, 400, CALLLOG_PERMANENT}, {0, 403, CALLLOG_PERMANENT},
        {0, 404, CALLLOG_PERMANENT},  {0, 409, CALLLOG_PERMANENT}, {0, 422, CALLLOG_PERMANENT},
        {0, 499, CALLLOG_PERMANENT},  {0, 100, CALLLOG_PERMANENT}, {0, 301, CALLLOG_PERMANENT},
        {0, 302, CALLLOG_PERMANENT},  {0, 600, CALLLOG_PERMANENT},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_expect_eq(error_classify(cases[i].curl, cases[i].status), cases[i].want,
                     "curl %d status %ld", cases[i].curl, cases[i].status);
}

/* A 2xx the caller judged a failure is permanent; everything else as error_classify. */
Test(error_classify, failure_is_never_ok)
{
    cr_assert_eq(error_classify_failure(0, 200), CALLLOG_PERMANENT);
    cr_assert_eq(error_classify_failure(0, 201), CALLLOG_PERMANENT);
    cr_assert_eq(error_classify_failure(0, 503), CALLLOG_TRANSIENT);
    cr_assert_eq(error_classify_failure(7, 0), CALLLOG_TRANSIENT);
    cr_assert_eq(error_classify_failure(0, 422), CALLLOG_PERMANENT);
}

Test(error_code, sign_says_failure)
{
    cr_expect_eq(CALLLOG_OK, 0);
    cr_expect_gt(CALLLOG_NOT_FOUND, 0, "a normal answer, not a failure");
    cr_expect_gt(CALLLOG_LEASE_LOST, 0, "a normal answer, not a failure");
    cr_expect_lt(CALLLOG_TRANSIENT, 0);
    cr_expect_lt(CALLLOG_PERMANENT, 0);
    cr_expect_lt(CALLLOG_NOMEM, 0);
    cr_expect_lt(CALLLOG_INVALID, 0);
    cr_expect_eq(CALLLOG_TRANSIENT, -1, "old `== -1` call sites keep their meaning");
    cr_expect(error_is_transient(CALLLOG_TRANSIENT));
    cr_expect(error_is_transient(CALLLOG_NOMEM));
    cr_expect_not(error_is_transient(CALLLOG_PERMANENT));
    cr_expect_not(error_is_transient(CALLLOG_INVALID));
    cr_expect_not(error_is_transient(CALLLOG_OK));
}

Test(error_code, names)
{
    cr_expect_str_eq(error_code_name(CALLLOG_OK), "ok");
    cr_expect_str_eq(error_code_name(CALLLOG_NOT_FOUND), "not_found");
    cr_expect_str_eq(error_code_name(CALLLOG_LEASE_LOST), "lease_lost");
    cr_expect_str_eq(error_code_name(CALLLOG_TRANSIENT), "transient");
    cr_expect_str_eq(error_code_name(CALLLOG_PERMANENT), "permanent");
    cr_expect_str_eq(error_code_name(CALLLOG_NOMEM), "no_memory");
    cr_expect_str_eq(error_code_name(CALLLOG_INVALID), "invalid");
    cr_expect_str_eq(error_code_name((calllog_code)42), "unknown");
}

Test(error_set, fills_and_clears)
{
    calllog_error e;
    memset(&e, 0x5a, sizeof e);
    cr_expect_eq(error_set(&e, CALLLOG_INVALID, "bad %s %d", "value", 7), CALLLOG_INVALID);
    cr_expect_eq(e.code, CALLLOG_INVALID);
    cr_expect_str_eq(e.message, "bad value 7");
    cr_expect_eq(e.http_status, 0, "transport fields cleared");
    cr_expect_eq(e.curl_code, 0);
    cr_expect_eq(e.retry_after_ms, -1, "no Retry-After");
    error_clear(&e);
    cr_expect_eq(e.code, CALLLOG_OK);
    cr_expect_str_eq(e.message, "");
    cr_expect_eq(error_set(NULL, CALLLOG_NOMEM, "ignored"), CALLLOG_NOMEM, "NULL is accepted");
    error_clear(NULL);
    calllog_error copy;
    error_set(&e, CALLLOG_PERMANENT, "kept");
    error_copy(&copy, &e);
    cr_expect_str_eq(copy.message, "kept");
    error_copy(NULL, &e);
    error_copy(&copy, NULL);
}

Test(error_set, long_messages_are_clipped)
{
    char big[2000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    calllog_error e;
    error_set(&e, CALLLOG_TRANSIENT, "%s", big);
    cr_expect_eq(strlen(e.message), sizeof e.message - 1);
}
