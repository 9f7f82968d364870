/* test_alert — unit tests for worker/alert: an alert that cannot be sent never puts the
 * webhook URL's secret parts (a Slack webhook's path, a query key, user info) into the
 * log, whether the webhook is unreachable, answers 404 with a page that echoes the path,
 * or answers 500; an alert that is sent logs nothing and reaches the webhook.
 *
 * The RD Station mock (tests/mocks/) stands in for the webhook: its fault rules answer
 * the webhook's path. The log goes to stderr, which each test captures in a file. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alert.h"
#include "mock_server.h"
#include "settings.h"

#define SECRET_PATH "/services/T000/B000/SECRETPATH0123456789"

static mock_server hook;
static worker_settings settings;
static char url[256];

/* Starts the stand-in webhook and points the alert settings at it. */
static void setup(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    cr_assert_eq(mock_start(&hook, "rdstation_mock.py", NULL), 0, "mock did not start");
    memset(&settings, 0, sizeof settings);
    settings.alert_window_s = 300;
    settings.alert_min_events = 10;
    settings.alert_failure_percent = 50;
}

static void teardown(void)
{
    mock_stop(&hook);
    curl_global_cleanup();
}

TestSuite(alert, .init = setup, .fini = teardown);

/* Sends one dead-letter alert to `target` and returns what it logged (caller frees). */
static char *alert_log(const char *target)
{
    char path[] = "/tmp/calllog-test-alert-XXXXXX";
    int fd = mkstemp(path), saved = dup(STDERR_FILENO);
    cr_assert(fd >= 0 && saved >= 0);
    snprintf(url, sizeof url, "%s", target);
    settings.alert_webhook_url = url;
    alert_init(&settings);
    dup2(fd, STDERR_FILENO);
    alert_dead_letter("CA00000000000000000000000000000001", "permanent_error", "POST /x: 422");
    dup2(saved, STDERR_FILENO);
    close(saved);
    off_t n = lseek(fd, 0, SEEK_END);
    char *text = calloc(1, (size_t)n + 1);
    cr_assert_not_null(text);
    cr_assert_eq(pread(fd, text, (size_t)n, 0), n);
    close(fd);
    unlink(path);
    return text;
}

/* The log names the failure but none of the URL's secret parts. */
static void expect_no_secret(const char *log)
{
    cr_expect_null(strstr(log, "SECRETPATH"), "%s", log);
    cr_expect_null(strstr(log, "/services"), "%s", log);
    cr_expect_null(strstr(log, "B000"), "%s", log);
    cr_expect_null(strstr(log, "QUERYKEY"), "%s", log);
    cr_expect_null(strstr(log, "PASSWORD"), "%s", log);
}

Test(alert, unreachable_webhook_logs_nothing_of_the_path)
{
    mock_server gone;
    char target[256];
    cr_assert_eq(mock_start(&gone, "rdstation_mock.py", NULL), 0);
    mock_stop(&gone);
    snprintf(target, sizeof target, "http://user:PASSWORD@127.0.0.1:%d" SECRET_PATH "?k=QUERYKEY",
             gone.port);
    char *log = alert_log(target);
    cr_expect_not_null(strstr(log, "alert not sent"), "%s", log);
    cr_expect_not_null(strstr(log, "Couldn't connect"), "the cause is kept: %s", log);
    expect_no_secret(log);
    free(log);
}

/* Arms `fault` on the stand-in webhook, alerts to its secret path plus `suffix`, and
 * expects the failure logged with HTTP status `status` and nothing secret. */
static void expect_failed_alert(const char *fault, const char *suffix, int status)
{
    char target[256], field[32];
    cr_assert_eq(mock_post(&hook, "/_mock/faults", fault, NULL), 201, "fault %s", fault);
    snprintf(target, sizeof target, "%s" SECRET_PATH "%s", hook.base, suffix);
    char *log = alert_log(target);
    snprintf(field, sizeof field, "\"http_status\":%d", status);
    cr_expect_not_null(strstr(log, "alert not sent"), "%s", log);
    cr_expect_not_null(strstr(log, field), "%s", log);
    expect_no_secret(log);
    free(log);
}

Test(alert, webhook_404_page_echoing_the_path_is_not_logged)
{
    expect_failed_alert("{\"path\":\"^/services/\",\"status\":404,\"body\":\"<html><p>The "
                        "requested URL " SECRET_PATH " was not found</p></html>\"}",
                        "", 404);
}

Test(alert, webhook_500_is_logged_without_the_path_or_query)
{
    expect_failed_alert("{\"path\":\"^/services/\",\"status\":500}", "?key=QUERYKEY", 500);
}

Test(alert, sent_alert_logs_nothing)
{
    char target[256];
    cr_assert_eq(mock_post(&hook, "/_mock/faults",
                           "{\"path\":\"^/services/\",\"status\":200,\"body\":\"ok\"}", NULL),
                 201);
    snprintf(target, sizeof target, "%s" SECRET_PATH, hook.base);
    char *log = alert_log(target);
    cr_expect_str_eq(log, "");
    json_t *reqs = mock_get(&hook, "/_mock/requests");
    json_t *e = json_array_get(json_object_get(reqs, "requests"), 0);
    cr_assert_not_null(e, "the webhook got nothing");
    cr_expect_str_eq(json_string_value(json_object_get(e, "path")), SECRET_PATH);
    const char *text = json_string_value(json_object_get(json_object_get(e, "body"), "text"));
    cr_assert_not_null(text, "no {\"text\": ...} body");
    cr_expect_not_null(strstr(text, "CA0000"), "%s", text);
    json_decref(reqs);
    free(log);
}
