/* test_demo — `calllog-admin demo call`'s options and its refusals without a sandbox.
 * The call itself (sandbox, ingest, workers, the note) runs in tests/e2e/test_demo.py. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

#include "worker/demo.h"

static void setup(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void teardown(void)
{
    curl_global_cleanup();
}

TestSuite(demo, .init = setup, .fini = teardown);

/* Parses a NULL-terminated list of arguments. */
static int parse(demo_call_options *o, calllog_error *err, const char **args)
{
    int argc = 0;
    while (args[argc])
        argc++;
    memset(o, 0, sizeof *o);
    return demo_parse_args(argc, (char **)args, o, err);
}

Test(demo, defaults_leave_the_call_to_the_sandbox)
{
    demo_call_options o;
    calllog_error err = {0};
    const char *args[] = {NULL};
    cr_assert_eq(parse(&o, &err, args), 0, "%s", err.message);
    cr_expect_null(o.from);
    cr_expect_null(o.status);
    cr_expect_eq(o.duration_s, -1);
    cr_expect_eq(o.wait_s, 30);
}

Test(demo, every_option_is_read)
{
    demo_call_options o;
    calllog_error err = {0};
    const char *args[] = {"--from",      "+5521988887777",
                          "--to",        "+551130001000",
                          "--direction", "outbound",
                          "--status",    "no-answer",
                          "--duration",  "0",
                          "--wait",      "5",
                          NULL};
    cr_assert_eq(parse(&o, &err, args), 0, "%s", err.message);
    cr_expect_str_eq(o.from, "+5521988887777");
    cr_expect_str_eq(o.to, "+551130001000");
    cr_expect_str_eq(o.direction, "outbound");
    cr_expect_str_eq(o.status, "no-answer");
    cr_expect_eq(o.duration_s, 0);
    cr_expect_eq(o.wait_s, 5);
}

Test(demo, bad_options_are_refused_with_a_reason)
{
    demo_call_options o;
    calllog_error err;
    const char *unknown[] = {"--colour", "red", NULL};
    const char *status[] = {"--status", "ringing", NULL};
    const char *missing[] = {"--from", NULL};
    const char *duration[] = {"--duration", "-3", NULL};
    const char *direction[] = {"--direction", "sideways", NULL};
    cr_expect_eq(parse(&o, &err, unknown), -1);
    cr_expect_not_null(strstr(err.message, "--colour"), "%s", err.message);
    cr_expect_eq(parse(&o, &err, status), -1, "only final statuses make a note");
    cr_expect_eq(parse(&o, &err, missing), -1);
    cr_expect_eq(parse(&o, &err, duration), -1);
    cr_expect_eq(parse(&o, &err, direction), -1);
}

Test(demo, without_a_sandbox_it_refuses_and_never_calls_anything)
{
    demo_call_options o = {0};
    o.wait_s = 1;
    FILE *out = tmpfile();
    cr_expect_eq(demo_call(&o, out), 1);
    o.sandbox_url = "http://127.0.0.1:1";
    cr_expect_eq(demo_call(&o, out), 1, "nothing listens there");
    fclose(out);
}
