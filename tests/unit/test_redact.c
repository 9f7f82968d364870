/* test_redact — common/redact, the one secret scrubber, on each case the three helpers it
 * replaced handled: RD Station's tokens in an API error (raw, percent-encoded as the v1
 * query string carries them, the OAuth access token; every occurrence; short values left
 * alone), libpq's multi-line messages quoting the database password (folded to one line,
 * both spellings of the password), and URLs with a password in their user info (Redis,
 * Postgres), plus truncation that never leaves part of a secret behind. */
#include <criterion/criterion.h>
#include <string.h>

#include "common/redact.h"

Test(redact_copy, every_occurrence_of_every_secret_is_masked)
{
    const char *secrets[] = {"tok-SECRET-1", "acc.ess/2"};
    char out[128];
    redact_copy(out, sizeof out, "GET /deals?token=tok-SECRET-1: 401 {\"token\":\"tok-SECRET-1\"}",
                secrets, 2, 0);
    cr_expect_str_eq(out, "GET /deals?token=***: 401 {\"token\":\"***\"}");
    redact_copy(out, sizeof out, "Bearer acc.ess/2 refused", secrets, 2, 0);
    cr_expect_str_eq(out, "Bearer *** refused");
    redact_copy(out, sizeof out, "nothing secret here", secrets, 2, 0);
    cr_expect_str_eq(out, "nothing secret here");
}

Test(redact_copy, null_empty_and_short_secrets)
{
    const char *secrets[] = {NULL, "", "tok"};
    char out[64];
    redact_copy(out, sizeof out, "token tok", secrets, 3, REDACT_SKIP_SHORT);
    cr_expect_str_eq(out, "token tok", "a 3-byte value would garble the message");
    redact_copy(out, sizeof out, "token tok", secrets, 3, 0);
    cr_expect_str_eq(out, "***en ***", "without the flag every secret counts");
    redact_copy(out, sizeof out, NULL, secrets, 3, 0);
    cr_expect_str_eq(out, "");
}

Test(redact_copy, the_longer_of_two_overlapping_secrets_wins)
{
    /* A token and its percent-encoded form share a prefix: the whole of the longer goes. */
    const char *secrets[] = {"ab+cd", "ab%2Bcd"};
    char out[64];
    redact_copy(out, sizeof out, "t=ab%2Bcd&u=ab+cd", secrets, 2, 0);
    cr_expect_str_eq(out, "t=***&u=***");
}

Test(redact_copy, libpq_messages_become_one_scrubbed_line)
{
    const char *secrets[] = {"p@ss w0rd", "p%40ss%20w0rd"};
    char out[256];
    redact_copy(out, sizeof out,
                "connection to server at \"db\" failed:\n\tFATAL:  password authentication "
                "failed for user \"calllog\" (password p@ss w0rd)\r\n  \n",
                secrets, 2, REDACT_ONE_LINE);
    cr_expect_str_eq(out, "connection to server at \"db\" failed: FATAL: password authentication "
                          "failed for user \"calllog\" (password ***)");
    redact_copy(out, sizeof out, "  invalid URI p%40ss%20w0rd", secrets, 2, REDACT_ONE_LINE);
    cr_expect_str_eq(out, "invalid URI ***", "leading blanks go, the URI spelling is masked");
}

Test(redact_copy, truncation_cuts_the_mask_never_the_secret)
{
    const char *secrets[] = {"SUPERSECRET"};
    char out[8];
    redact_copy(out, sizeof out, "pw=SUPERSECRET", secrets, 1, 0);
    cr_expect_str_eq(out, "pw=***");
    redact_copy(out, 5, "pw=SUPERSECRET", secrets, 1, 0);
    cr_expect_str_eq(out, "pw=*");
    out[0] = 'x';
    redact_copy(out, 0, "pw", secrets, 1, 0);
    cr_expect_eq(out[0], 'x', "nothing is written into no room");
}

Test(redact_error, masks_the_message_in_place)
{
    calllog_error err = {0};
    const char *secrets[] = {"rd-token-1234"};
    error_set(&err, CALLLOG_PERMANENT, "GET https://crm/api?token=%s: 401", "rd-token-1234");
    redact_error(&err, secrets, 1, REDACT_SKIP_SHORT);
    cr_expect_str_eq(err.message, "GET https://crm/api?token=***: 401");
    cr_expect_eq(err.code, CALLLOG_PERMANENT, "only the message changes");
    redact_error(NULL, secrets, 1, 0); /* accepted */
}

Test(redact_url, masks_the_password_of_the_user_info)
{
    static const char *const cases[][2] = {
        {"redis://:s3cret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"},
        {"postgresql://calllog:pw@db.example:5432/calllog?sslmode=require",
         "postgresql://calllog:***@db.example:5432/calllog?sslmode=require"},
        {"rediss://user:p@ss@host/1", "rediss://user:***@host/1"}, /* an unencoded '@' */
    };
    char out[128];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        redact_url(cases[i][0], out, sizeof out);
        cr_expect_str_eq(out, cases[i][1]);
    }
}

Test(redact_url, urls_without_a_password_are_unchanged)
{
    const char *same[] = {"redis://127.0.0.1:6379/0", "redis://user@host/0",
                          "postgresql://u:@host/db",  "https://host/a@b:c?x=y@z",
                          "host=db password=x",       ""};
    char out[128];
    for (size_t i = 0; i < sizeof same / sizeof *same; i++) {
        redact_url(same[i], out, sizeof out);
        cr_expect_str_eq(out, same[i]);
    }
    redact_url(NULL, out, sizeof out);
    cr_expect_str_eq(out, "");
}

Test(redact_url_password, finds_the_span)
{
    const char *url = "postgresql://calllog:Sup3r%40Pw@db/x", *pw = url;
    size_t n = redact_url_password(url, &pw);
    cr_assert_eq(n, strlen("Sup3r%40Pw"));
    cr_expect_eq(strncmp(pw, "Sup3r%40Pw", n), 0);
    cr_expect_eq(redact_url_password("redis://host/0", &pw), 0);
    cr_expect_null(pw);
    cr_expect_eq(redact_url_password(NULL, NULL), 0);
}
