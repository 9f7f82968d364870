/* test_alert — unit tests for worker/alert.
 *
 * Secrets: an alert that cannot be sent never puts the webhook URL's secret parts (a
 * Slack webhook's path, a query key, user info) into the log, whether the webhook is
 * unreachable, answers 404 with a page that echoes the path, or answers 500; an alert that
 * is sent logs nothing and reaches the webhook.
 *
 * The sender thread: a slow webhook does not hold up the caller (alert_dead_letter returns
 * while the webhook still has the post), what is queued is delivered by alert_stop, a full
 * queue drops its oldest message and counts it, and a stop whose deadline has passed
 * drops what is left and counts it. "Still pending" is read from the mock's state: a
 * fault rule is consumed when the request arrives, the request log written when it is
 * answered.
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

#include "common/metrics.h"
#include "tests/lib/mock_server.h"
#include "worker/alert.h"
#include "worker/settings.h"

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
    alert_stop(0);
    mock_stop(&hook);
    curl_global_cleanup();
}

TestSuite(alert, .init = setup, .fini = teardown);

/* Where stderr goes while a test captures it. */
typedef struct capture {
    char path[32];
    int fd, saved;
} capture;

/* Sends stderr to a scratch file until capture_end. */
static void capture_begin(capture *c)
{
    snprintf(c->path, sizeof c->path, "/tmp/calllog-test-alert-XXXXXX");
    c->fd = mkstemp(c->path);
    c->saved = dup(STDERR_FILENO);
    cr_assert(c->fd >= 0 && c->saved >= 0);
    dup2(c->fd, STDERR_FILENO);
}

/* Restores stderr and returns what was written to it (caller frees). */
static char *capture_end(capture *c)
{
    dup2(c->saved, STDERR_FILENO);
    close(c->saved);
    off_t n = lseek(c->fd, 0, SEEK_END);
    char *text = calloc(1, (size_t)n + 1);
    cr_assert_not_null(text);
    cr_assert_eq(pread(c->fd, text, (size_t)n, 0), n);
    close(c->fd);
    unlink(c->path);
    return text;
}

/* Points the alert settings at `target` and starts the sender. */
static void start_alerts(const char *target)
{
    calllog_error err;
    snprintf(url, sizeof url, "%s", target);
    settings.alert_webhook_url = url;
    cr_assert_eq(alert_start(&settings, &err), CALLLOG_OK, "%s", err.message);
}

/* Sends one dead-letter alert to `target`, waits for the sender to be done with it, and
 * returns what it logged (caller frees). */
static char *alert_log(const char *target)
{
    capture c;
    start_alerts(target);
    capture_begin(&c);
    alert_dead_letter("CA00000000000000000000000000000001", "permanent_error", "POST /x: 422");
    alert_stop(20000);
    return capture_end(&c);
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

/* ---- the sender thread ------------------------------------------------------------ */

/* The value of calllog_worker_alerts_total{kind="dead_letter",result=`result`}. */
static double sent_count(const char *result)
{
    char lbl[64];
    metric *m = metrics_register(METRIC_COUNTER, "calllog_worker_alerts_total", "", NULL, 0);
    cr_assert_not_null(m);
    snprintf(lbl, sizeof lbl, "kind=\"dead_letter\",result=\"%s\"", result);
    return metric_value(m, lbl);
}

/* The value of calllog_worker_alerts_dropped_total{kind="dead_letter"}. */
static double dropped_count(void)
{
    metric *m =
        metrics_register(METRIC_COUNTER, "calllog_worker_alerts_dropped_total", "", NULL, 0);
    cr_assert_not_null(m);
    return metric_value(m, "kind=\"dead_letter\"");
}

/* Arms the webhook: its first post is answered only after `delay_ms`, every later one
 * at once; all with 200. */
static void arm_slow_webhook(long delay_ms)
{
    char fault[160];
    snprintf(fault, sizeof fault,
             "{\"path\":\"^/services/\",\"delay_ms\":%ld,\"status\":200,\"body\":\"ok\"}",
             delay_ms);
    cr_assert_eq(mock_post(&hook, "/_mock/faults", fault, NULL), 201);
    cr_assert_eq(mock_post(&hook, "/_mock/faults",
                           "{\"path\":\"^/services/\",\"status\":200,\"body\":\"ok\",\"count\":-1}",
                           NULL),
                 201);
}

/* Number of fault rules still armed. */
static size_t armed_faults(void)
{
    json_t *f = mock_get(&hook, "/_mock/faults");
    size_t n = json_array_size(json_object_get(f, "faults"));
    json_decref(f);
    return n;
}

/* Waits until the slow first post has reached the webhook (its one-use rule is consumed)
 * and checks that it has not been answered (the request log is written on answering). */
static void wait_first_post_pending(void)
{
    for (int i = 0; i < 2000 && armed_faults() > 1; i++) /* a bound on start-up, not a test */
        mock_sleep_ms(10);
    cr_assert_eq(armed_faults(), 1, "the first post never reached the webhook");
    cr_assert_eq(mock_count_requests(&hook, NULL), 0, "the first post was already answered");
}

/* Queues the dead-letter alert for call number `n`. */
static void dead_letter_n(int n)
{
    char sid[40];
    snprintf(sid, sizeof sid, "CA%032d", n);
    alert_dead_letter(sid, "permanent_error", "POST /x: 422");
}

/* The CallSid numbers of the alerts the webhook received, in order, as "1,2,3". */
static void received_calls(char *out, size_t outlen)
{
    json_t *reqs = mock_get(&hook, "/_mock/requests"), *e;
    size_t i, used = 0;
    out[0] = '\0';
    json_array_foreach(json_object_get(reqs, "requests"), i, e)
    {
        const char *text = json_string_value(json_object_get(json_object_get(e, "body"), "text"));
        const char *sid = text ? strstr(text, "CA") : NULL;
        cr_assert_not_null(sid, "request %zu has no CallSid", i);
        used += (size_t)snprintf(out + used, outlen - used, "%s%d", used ? "," : "", atoi(sid + 2));
        cr_assert_lt(used, outlen);
    }
    json_decref(reqs);
}

Test(alert, slow_webhook_does_not_hold_the_caller_and_stop_delivers_the_queue)
{
    char target[256], got[256];
    arm_slow_webhook(2000);
    snprintf(target, sizeof target, "%s" SECRET_PATH, hook.base);
    start_alerts(target);
    dead_letter_n(1);
    /* Returned, and the post is not done: the webhook takes 2 s to answer it. */
    cr_expect_eq(sent_count("sent") + sent_count("failed"), 0);
    wait_first_post_pending();
    dead_letter_n(2); /* queued behind the pending post, returns as well */
    cr_expect_eq(sent_count("sent"), 0);
    alert_stop(20000);
    cr_expect_eq(sent_count("sent"), 2);
    cr_expect_eq(dropped_count(), 0);
    received_calls(got, sizeof got);
    cr_expect_str_eq(got, "1,2");
}

Test(alert, full_queue_drops_the_oldest_and_counts_it)
{
    char target[256], got[512], want[512];
    arm_slow_webhook(2000);
    snprintf(target, sizeof target, "%s" SECRET_PATH, hook.base);
    start_alerts(target);
    dead_letter_n(0);
    wait_first_post_pending(); /* the sender holds 0; the queue is empty */
    capture c;
    capture_begin(&c);
    for (int n = 1; n <= ALERT_QUEUE_SIZE + 1; n++)
        dead_letter_n(n);
    char *log = capture_end(&c);
    cr_expect_eq(dropped_count(), 1);
    cr_expect_not_null(strstr(log, "alert dropped"), "%s", log);
    cr_expect_null(strstr(log, "SECRETPATH"), "%s", log);
    free(log);
    alert_stop(20000);
    size_t used = (size_t)snprintf(want, sizeof want, "0"); /* 1, the oldest waiting, went */
    for (int n = 2; n <= ALERT_QUEUE_SIZE + 1; n++)
        used += (size_t)snprintf(want + used, sizeof want - used, ",%d", n);
    received_calls(got, sizeof got);
    cr_expect_str_eq(got, want);
    cr_expect_eq(sent_count("sent"), ALERT_QUEUE_SIZE + 1);
    cr_expect_eq(dropped_count(), 1);
}

Test(alert, stop_past_its_deadline_drops_what_is_left_and_counts_it)
{
    char target[256];
    arm_slow_webhook(60000); /* longer than the post's timeout: the first post fails */
    snprintf(target, sizeof target, "%s" SECRET_PATH, hook.base);
    start_alerts(target);
    dead_letter_n(1);
    wait_first_post_pending();
    dead_letter_n(2);
    dead_letter_n(3);
    capture c;
    capture_begin(&c);
    alert_stop(0); /* returns when the pending post gives up */
    char *log = capture_end(&c);
    cr_expect_eq(sent_count("failed"), 1);
    cr_expect_eq(sent_count("sent"), 0);
    cr_expect_eq(dropped_count(), 2);
    cr_expect_not_null(strstr(log, "alert dropped"), "%s", log);
    expect_no_secret(log);
    free(log);
}

Test(alert, without_a_webhook_nothing_starts_and_nothing_is_sent)
{
    calllog_error err;
    settings.alert_webhook_url = NULL;
    cr_assert_eq(alert_start(&settings, &err), CALLLOG_OK);
    dead_letter_n(1);
    alert_stop(1000);
    cr_expect_eq(sent_count("sent") + sent_count("failed"), 0);
    cr_expect_eq(dropped_count(), 0);
    cr_expect_eq(mock_count_requests(&hook, NULL), 0);
}
