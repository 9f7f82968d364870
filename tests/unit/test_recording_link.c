/* test_recording_link — common/recording_link, the signed recording links of notes: the
 * token against an independently computed HMAC-SHA256 (Python's hmac + urlsafe base64),
 * with and without expiry; what the check refuses (missing, truncated, extended, forged
 * by one character, another CallSid, another secret, an edited expiry, an expired link)
 * and the CallSid shape; and the whole URL. */
#include <criterion/criterion.h>
#include <string.h>

#include "common/recording_link.h"

#define SECRET "test-secret-0123456789abcdef"
#define SID "CA0123456789abcdef0123456789abcdef"
#define OTHER_SID "CA0123456789abcdef0123456789abcdee"
/* base64url(HMAC-SHA256(SECRET, SID)), computed with Python's hmac module. */
#define MAC_NO_EXPIRY "uckPURonJRjd5EJsBlxNe7Y7lV6-Du9J4jrfZQClF_E"
/* base64url(HMAC-SHA256(SECRET, SID ".1900000000")). */
#define MAC_EXPIRY "IBDxm9q5RT9oY3cD4gZRxb7-CNPy-e8KbeHZK_yWKc0"

Test(recording_link, token_without_expiry_is_the_urlsafe_hmac_of_the_call_sid)
{
    char t[RECORDING_LINK_TOKEN_MAX];
    cr_assert_eq(recording_link_token(SECRET, SID, 0, t, sizeof t), RECORDING_LINK_MAC_LEN);
    cr_expect_str_eq(t, MAC_NO_EXPIRY);
    cr_expect_eq(recording_link_check(SECRET, SID, t, 2000000000), RECORDING_LINK_VALID,
                 "a link without expiry is valid at any time");
}

Test(recording_link, token_with_expiry_carries_it_and_signs_it)
{
    char t[RECORDING_LINK_TOKEN_MAX];
    cr_assert_gt(recording_link_token(SECRET, SID, 1900000000, t, sizeof t), 0);
    cr_expect_str_eq(t, "1900000000." MAC_EXPIRY);
    cr_expect_eq(recording_link_check(SECRET, SID, t, 1899999999), RECORDING_LINK_VALID);
    cr_expect_eq(recording_link_check(SECRET, SID, t, 1900000000), RECORDING_LINK_EXPIRED);
    cr_expect_eq(recording_link_check(SECRET, SID, "1999999999." MAC_EXPIRY, 1900000001),
                 RECORDING_LINK_FORGED, "moving the expiry breaks the MAC");
    cr_expect_eq(recording_link_check(SECRET, SID, MAC_EXPIRY, 1), RECORDING_LINK_FORGED,
                 "the MAC of an expiring link is not a link without expiry");
}

Test(recording_link, refuses_missing_truncated_and_malformed_tokens)
{
    cr_expect_eq(recording_link_check(SECRET, SID, NULL, 1), RECORDING_LINK_MISSING);
    cr_expect_eq(recording_link_check(SECRET, SID, "", 1), RECORDING_LINK_MISSING);
    char truncated[] = MAC_NO_EXPIRY;
    truncated[RECORDING_LINK_MAC_LEN - 1] = '\0';
    cr_expect_eq(recording_link_check(SECRET, SID, truncated, 1), RECORDING_LINK_MALFORMED);
    cr_expect_eq(recording_link_check(SECRET, SID, MAC_NO_EXPIRY "A", 1), RECORDING_LINK_MALFORMED);
    cr_expect_eq(
        recording_link_check(SECRET, SID, "uckPURonJRjd5EJsBlxNe7Y7lV6+Du9J4jrfZQClF/E", 1),
        RECORDING_LINK_MALFORMED, "standard base64 is not the link alphabet");
    cr_expect_eq(recording_link_check(SECRET, SID, "." MAC_NO_EXPIRY, 1), RECORDING_LINK_MALFORMED);
    cr_expect_eq(recording_link_check(SECRET, SID, "19x0000000." MAC_EXPIRY, 1),
                 RECORDING_LINK_MALFORMED);
    cr_expect_eq(recording_link_check(SECRET, SID, "01900000000." MAC_EXPIRY, 1),
                 RECORDING_LINK_MALFORMED, "no leading zeros: one expiry, one spelling");
    cr_expect_eq(recording_link_check(SECRET, SID, "1234567890123." MAC_EXPIRY, 1),
                 RECORDING_LINK_MALFORMED);
}

Test(recording_link, refuses_forged_tokens_and_other_calls)
{
    char forged[] = MAC_NO_EXPIRY;
    forged[10] = forged[10] == 'A' ? 'B' : 'A';
    cr_expect_eq(recording_link_check(SECRET, SID, forged, 1), RECORDING_LINK_FORGED);
    cr_expect_eq(recording_link_check(SECRET, OTHER_SID, MAC_NO_EXPIRY, 1), RECORDING_LINK_FORGED,
                 "a link is for one CallSid only");
    cr_expect_eq(recording_link_check("another-secret-0123456789", SID, MAC_NO_EXPIRY, 1),
                 RECORDING_LINK_FORGED, "a new secret revokes the old links");
    cr_expect_eq(recording_link_check("short", SID, MAC_NO_EXPIRY, 1), RECORDING_LINK_FORGED,
                 "an unusable secret accepts nothing");
    cr_expect_eq(recording_link_check(SECRET, "CA../../etc", MAC_NO_EXPIRY, 1),
                 RECORDING_LINK_FORGED);
}

Test(recording_link, call_sid_shape)
{
    cr_expect(recording_link_call_sid_ok(SID));
    cr_expect(recording_link_call_sid_ok("CA0123456789ABCDEF0123456789ABCDEF"));
    cr_expect_not(recording_link_call_sid_ok(NULL));
    cr_expect_not(recording_link_call_sid_ok("RE0123456789abcdef0123456789abcdef"));
    cr_expect_not(recording_link_call_sid_ok("CA0123456789abcdef0123456789abcde"));
    cr_expect_not(recording_link_call_sid_ok("CA0123456789abcdef0123456789abcdef0"));
    cr_expect_not(recording_link_call_sid_ok("CA0123456789abcdef0123456789abcdeg"));
}

Test(recording_link, refuses_to_sign_with_a_short_secret_or_into_a_small_buffer)
{
    char t[RECORDING_LINK_TOKEN_MAX];
    cr_expect_eq(recording_link_token("short", SID, 0, t, sizeof t), -1);
    cr_expect_eq(recording_link_token(SECRET, "CA12", 0, t, sizeof t), -1);
    cr_expect_eq(recording_link_token(SECRET, SID, 0, t, RECORDING_LINK_MAC_LEN), -1);
}

Test(recording_link, url_is_the_base_the_path_and_the_token)
{
    char url[256];
    int n = recording_link_url("https://calllog.example.com", SECRET, SID, 0, url, sizeof url);
    cr_assert_gt(n, 0);
    cr_expect_str_eq(url, "https://calllog.example.com/recordings/" SID "?t=" MAC_NO_EXPIRY);
    cr_expect_eq((size_t)n, strlen(url));
    cr_expect_eq(recording_link_url("https://calllog.example.com", SECRET, SID, 0, url, 40), -1);
}
