/* test_form — unit tests for the form-encoded body parser (common/form.c).
 *
 * Covers a real Twilio status callback, decoding rules (`+`, `%XX` in both cases), arrival
 * order and repeated keys, skipped empty segments, every error code, and sizes an attacker
 * would try (10,000 parameters against a limit of 512, a 1 MiB value). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "common/form.h"

/* Parses a NUL-terminated literal with a limit of 512 parameters. */
static form_status parse_str(const char *s, form *f)
{
    return form_parse(s, strlen(s), 512, f);
}

Test(form, twilio_status_callback)
{
    const char *body = "AccountSid=AC0123456789abcdef0123456789abcdef&ApiVersion=2010-04-01"
                       "&CallSid=CA0123456789abcdef0123456789abcdef&CallStatus=completed"
                       "&Called=%2B5511999998888&Caller=%2B14158675309&CallDuration=42"
                       "&Direction=outbound-api&From=%2B14158675309&To=%2B5511999998888"
                       "&Timestamp=Sun%2C+25+Mar+2018+09%3A53%3A19+%2B0000"
                       "&CallbackSource=call-progress-events&SequenceNumber=3";
    form f;
    cr_assert_eq(parse_str(body, &f), FORM_OK);
    cr_assert_eq(f.count, 13);
    cr_assert_str_eq(f.params[0].key, "AccountSid");
    cr_assert_str_eq(f.params[12].key, "SequenceNumber");
    cr_assert_str_eq(form_get(&f, "CallSid"), "CA0123456789abcdef0123456789abcdef");
    cr_assert_str_eq(form_get(&f, "CallStatus"), "completed");
    cr_assert_str_eq(form_get(&f, "From"), "+14158675309");
    cr_assert_str_eq(form_get(&f, "To"), "+5511999998888");
    cr_assert_str_eq(form_get(&f, "Timestamp"), "Sun, 25 Mar 2018 09:53:19 +0000");
    cr_assert_str_eq(form_get(&f, "CallDuration"), "42");
    cr_assert_null(form_get(&f, "RecordingUrl"));
    form_free(&f);
    cr_assert_null(f.params);
    cr_assert_eq(f.count, 0);
}

Test(form, repeated_keys_keep_arrival_order)
{
    form f;
    cr_assert_eq(parse_str("Digits=5678&Sid=CA123&Digits=1234&Digits=1234", &f), FORM_OK);
    cr_assert_eq(f.count, 4);
    cr_assert_str_eq(f.params[0].key, "Digits");
    cr_assert_str_eq(f.params[0].value, "5678");
    cr_assert_str_eq(f.params[1].key, "Sid");
    cr_assert_str_eq(f.params[2].value, "1234");
    cr_assert_str_eq(f.params[3].value, "1234");
    cr_assert_str_eq(form_get(&f, "Digits"), "5678", "form_get returns the first value");
    form_free(&f);
}

Test(form, plus_and_percent_2b)
{
    form f;
    cr_assert_eq(parse_str("a=1+2&b=1%2B2&c=%2b&d+e=x%20y&f=%41%4a%4A%6a", &f), FORM_OK);
    cr_assert_eq(f.count, 5);
    cr_assert_str_eq(form_get(&f, "a"), "1 2");
    cr_assert_str_eq(form_get(&f, "b"), "1+2");
    cr_assert_str_eq(form_get(&f, "c"), "+", "lowercase hex digits decode");
    cr_assert_str_eq(form_get(&f, "d e"), "x y", "keys are decoded too");
    cr_assert_str_eq(form_get(&f, "f"), "AJJj");
    form_free(&f);
}

Test(form, value_keeps_later_equals_and_utf8)
{
    form f;
    cr_assert_eq(parse_str("q=a=b=c&n=Jos%C3%A9", &f), FORM_OK);
    cr_assert_str_eq(form_get(&f, "q"), "a=b=c");
    cr_assert_str_eq(form_get(&f, "n"), "Jos\xc3\xa9");
    form_free(&f);
}

Test(form, empty_segments_skipped)
{
    form f;
    cr_assert_eq(parse_str("&&a=1&&&b=2&", &f), FORM_OK);
    cr_assert_eq(f.count, 2);
    cr_assert_str_eq(f.params[0].key, "a");
    cr_assert_str_eq(f.params[1].key, "b");
    form_free(&f);

    cr_assert_eq(parse_str("&&&", &f), FORM_OK);
    cr_assert_eq(f.count, 0);
    cr_assert_null(f.params);
    form_free(&f);

    cr_assert_eq(form_parse("", 0, 512, &f), FORM_OK);
    cr_assert_eq(f.count, 0);
    cr_assert_eq(form_parse(NULL, 0, 512, &f), FORM_OK);
    cr_assert_eq(f.count, 0);
}

Test(form, key_without_equals_gets_empty_value)
{
    form f;
    cr_assert_eq(parse_str("flag&a=&b=2", &f), FORM_OK);
    cr_assert_eq(f.count, 3);
    cr_assert_str_eq(f.params[0].key, "flag");
    cr_assert_str_eq(f.params[0].value, "");
    cr_assert_str_eq(f.params[1].value, "");
    cr_assert_str_eq(f.params[2].value, "2");
    form_free(&f);
}

Test(form, length_is_respected)
{
    form f;
    const char body[] = "a=1&b=2GARBAGE%";
    cr_assert_eq(form_parse(body, 7, 512, &f), FORM_OK);
    cr_assert_eq(f.count, 2);
    cr_assert_str_eq(form_get(&f, "b"), "2");
    form_free(&f);
}

Test(form, bad_escapes)
{
    const char *bad[] = {"a=%", "a=%4", "a=%zz", "a=%g1", "a=%1g", "%=1", "a%2=1", "a=1&b=x%"};
    form f;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        f.params = (form_param *)&f; /* garbage in: must come back empty */
        f.count = 99;
        cr_assert_eq(parse_str(bad[i], &f), FORM_ERR_ESCAPE, "input %s", bad[i]);
        cr_assert_null(f.params, "input %s", bad[i]);
        cr_assert_eq(f.count, 0, "input %s", bad[i]);
    }
}

Test(form, empty_key)
{
    form f;
    cr_assert_eq(parse_str("=x", &f), FORM_ERR_EMPTY_KEY);
    cr_assert_null(f.params);
    cr_assert_eq(parse_str("a=1&=x", &f), FORM_ERR_EMPTY_KEY);
    cr_assert_eq(parse_str("a=1&=", &f), FORM_ERR_EMPTY_KEY);
    cr_assert_eq(f.count, 0);
}

Test(form, nul_bytes)
{
    form f;
    const char raw[] = "a=x\0y";
    cr_assert_eq(parse_str("a=%00", &f), FORM_ERR_NUL);
    cr_assert_eq(parse_str("k%00=1", &f), FORM_ERR_NUL);
    cr_assert_eq(form_parse(raw, sizeof(raw) - 1, 512, &f), FORM_ERR_NUL);
    cr_assert_null(f.params);
}

Test(form, max_params_boundary)
{
    form f;
    cr_assert_eq(form_parse("a=1&b=2&c=3", 11, 3, &f), FORM_OK);
    cr_assert_eq(f.count, 3);
    form_free(&f);
    cr_assert_eq(form_parse("a=1&b=2&c=3", 11, 2, &f), FORM_ERR_TOO_MANY);
    cr_assert_null(f.params);
    cr_assert_eq(form_parse("a=1&&&", 6, 1, &f), FORM_OK, "empty segments do not count");
    form_free(&f);
    cr_assert_eq(form_parse("a", 1, 0, &f), FORM_ERR_TOO_MANY);
}

Test(form, ten_thousand_params_over_limit)
{
    const size_t n = 10000;
    char *body = malloc(n * 16);
    size_t len = 0;
    form f;
    cr_assert_not_null(body);
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(body + len, "%sk%zu=v%zu", i ? "&" : "", i, i);
    cr_assert_eq(form_parse(body, len, 512, &f), FORM_ERR_TOO_MANY);
    cr_assert_null(f.params);
    cr_assert_eq(f.count, 0);

    cr_assert_eq(form_parse(body, len, n, &f), FORM_OK, "the same body fits a limit of n");
    cr_assert_eq(f.count, n);
    cr_assert_str_eq(f.params[9999].key, "k9999");
    cr_assert_str_eq(f.params[9999].value, "v9999");
    form_free(&f);
    free(body);
}

Test(form, one_mib_value)
{
    const size_t vlen = 1024 * 1024;
    char *body = malloc(vlen + 16);
    form f;
    cr_assert_not_null(body);
    memcpy(body, "CallSid=CA1&big=", 16);
    for (size_t i = 0; i < vlen; i++)
        body[16 + i] = (i % 3 == 0) ? '+' : 'x';
    cr_assert_eq(form_parse(body, vlen + 16, 512, &f), FORM_OK);
    cr_assert_eq(f.count, 2);
    const char *big = form_get(&f, "big");
    cr_assert_not_null(big);
    cr_assert_eq(strlen(big), vlen);
    cr_assert_eq(big[0], ' ');
    cr_assert_eq(big[1], 'x');
    cr_assert_eq(big[vlen - 1], ((vlen - 1) % 3 == 0) ? ' ' : 'x');
    form_free(&f);
    free(body);
}

Test(form, decode_function)
{
    char out[16];
    cr_assert_eq(form_decode("a+b%2B", 6, 1, out), 4);
    cr_assert_str_eq(out, "a b+");
    cr_assert_eq(form_decode("a+b%2B", 6, 0, out), 4);
    cr_assert_str_eq(out, "a+b+");
    cr_assert_eq(form_decode("%4", 2, 1, out), -1);
    cr_assert_eq(form_decode("%00", 3, 1, out), -1);
    cr_assert_eq(form_decode("", 0, 1, out), 0);
    cr_assert_str_eq(out, "");
}

Test(form, free_is_idempotent_and_strerror)
{
    form f = {0};
    form_free(&f);
    form_free(&f);
    form_free(NULL);
    cr_assert_null(form_get(&f, "x"));
    cr_assert_str_eq(form_strerror(FORM_ERR_ESCAPE), "bad percent-escape");
    cr_assert_str_eq(form_strerror(FORM_ERR_TOO_MANY), "too many parameters");
    cr_assert_str_neq(form_strerror(FORM_ERR_NUL), form_strerror(FORM_ERR_EMPTY_KEY));
}
