/* test_shutdown — the process-wide stop flag, and the ingest stopping in a safe order.
 *
 * The flag: clear at start, set by shutdown_request (also from a signal handler and seen
 * by other threads), kept set, cleared by shutdown_reset, and set by shutdown_wait when
 * SIGTERM arrives. The ingest: /readyz turns 503 once a stop is requested, stopping the
 * server requests it, and the spool-depth collect hook is off the metrics registry once
 * ingest_server_stop returns, so a scrape during or after the stop never reads the freed
 * server or enqueuer (run under ASan, those would be use-after-free reports). Redis is
 * not needed: REDIS_URL points at a closed port and the spool takes over. Each criterion
 * test runs in its own process, so the flag never leaks from one test into another. */
#include "common/metrics.h"
#include "common/shutdown.h"
#include "ingest/enqueue.h"
#include "ingest/server.h"
#include "ingest/settings.h"
#include "tests/lib/free_port.h"
#include "tests/lib/scratch_dir.h"

#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SCRAPERS 4

/* Clears the flag before each test. */
static void flag_setup(void)
{
    shutdown_reset();
}

/* No .timeout here: criterion's runner leaks when two suites of a file both set one. */
TestSuite(shutdown_flag, .init = flag_setup);

Test(shutdown_flag, request_sets_and_reset_clears)
{
    cr_expect_eq(shutdown_requested(), 0, "clear at start");
    shutdown_request();
    cr_expect_neq(shutdown_requested(), 0);
    shutdown_request();
    cr_expect_neq(shutdown_requested(), 0, "a second request keeps it set");
    shutdown_reset();
    cr_expect_eq(shutdown_requested(), 0);
}

/* Polls the flag until it is set, for up to ten seconds; stores whether it saw it (a
 * thread body). */
static void *wait_for_flag(void *arg)
{
    int *seen = arg;
    for (int i = 0; i < 10000 && !shutdown_requested(); i++)
        usleep(1000);
    *seen = shutdown_requested();
    return NULL;
}

Test(shutdown_flag, another_thread_sees_the_request)
{
    pthread_t th;
    int seen = 0;
    cr_assert_eq(pthread_create(&th, NULL, wait_for_flag, &seen), 0);
    usleep(20 * 1000);
    shutdown_request();
    pthread_join(th, NULL);
    cr_expect_neq(seen, 0);
}

/* Signal handler: requests the stop (shutdown_request is async-signal-safe). */
static void on_usr1(int sig)
{
    (void)sig;
    shutdown_request();
}

Test(shutdown_flag, request_from_a_signal_handler)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    cr_assert_eq(sigaction(SIGUSR1, &sa, NULL), 0);
    cr_assert_eq(raise(SIGUSR1), 0);
    cr_expect_neq(shutdown_requested(), 0);
}

Test(shutdown_flag, wait_sets_the_flag_on_sigterm)
{
    shutdown_block_signals();
    /* Pending on this thread already, so sigwait returns at once; the watchdog's budget
     * is far longer than the test. */
    cr_assert_eq(pthread_kill(pthread_self(), SIGTERM), 0);
    cr_expect_eq(shutdown_requested(), 0, "a blocked signal alone does not set it");
    shutdown_wait(600000);
    cr_expect_neq(shutdown_requested(), 0);
}

/* One running ingest: its settings, enqueuer, server and port. */
static struct {
    ingest_settings s;
    char spool[64];
    enqueuer *q;
    ingest_server *srv;
    int port;
} ing;

/* Sets an environment variable for the settings loader; fails the test when setenv
 * cannot (out of memory), rather than let the ingest start with a default (a spool in
 * the current directory). */
static void set_env(const char *name, const char *value)
{
    cr_assert_eq(setenv(name, value, 1), 0, "setenv %s: out of memory", name);
}

/* Loads settings for a loopback ingest with a fresh spool and starts the enqueuer and
 * the server (a few ports, in case of a race). */
static void ingest_setup(void)
{
    shutdown_reset();
    cr_assert_eq(scratch_dir_make(ing.spool, sizeof ing.spool, "shutdown"), 0);
    set_env("PUBLIC_BASE_URL", "https://hooks.example.com");
    set_env("TWILIO_AUTH_TOKEN", "unit-test-auth-token");
    set_env("REDIS_URL", "redis://127.0.0.1:1/0"); /* nothing listens: the spool is used */
    set_env("INGEST_SPOOL_DIR", ing.spool);
    set_env("INGEST_THREADS", "4");
    calllog_error err = {0};
    for (int attempt = 0; attempt < 5 && ing.srv == NULL; attempt++) {
        ing.port = free_port();
        cr_assert_gt(ing.port, 0);
        char listen[64];
        snprintf(listen, sizeof listen, "127.0.0.1:%d", ing.port);
        set_env("INGEST_LISTEN", listen);
        calllog_error cerr;
        cr_assert_eq(ingest_settings_load(&ing.s, &cerr), 0, "%s", cerr.message);
        if (ing.q == NULL)
            ing.q = enqueue_open(&ing.s, &err);
        cr_assert_not_null(ing.q, "enqueue_open: %s", err.message);
        ing.srv = ingest_server_start(&ing.s, ing.q, &err);
    }
    cr_assert_not_null(ing.srv, "ingest_server_start: %s", err.message);
    cr_assert_eq(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
}

/* Stops whatever the test left running and removes the spool directory. */
static void ingest_teardown(void)
{
    ingest_server_stop(ing.srv);
    enqueue_close(ing.q);
    metrics_reset();
    curl_global_cleanup();
    scratch_dir_remove(ing.spool);
}

TestSuite(ingest_stop, .init = ingest_setup, .fini = ingest_teardown, .timeout = 60);

/* GETs 127.0.0.1:port/path and returns the HTTP status (0 when no answer came). */
static long http_get_status(int port, const char *path)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    CURL *h = curl_easy_init();
    cr_assert_not_null(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOBODY, 0L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, fwrite);
    FILE *sink = fopen("/dev/null", "w");
    cr_assert_not_null(sink);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, sink);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 20L);
    long status = 0;
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    fclose(sink);
    return status;
}

Test(ingest_stop, readyz_turns_503_once_a_stop_is_requested)
{
    cr_expect_eq(http_get_status(ing.port, "/readyz"), 200, "spool writable: ready");
    shutdown_request();
    cr_expect_eq(http_get_status(ing.port, "/readyz"), 503);
    cr_expect_eq(http_get_status(ing.port, "/healthz"), 200, "still up while draining");
}

Test(ingest_stop, stopping_the_server_requests_the_stop)
{
    cr_expect_eq(shutdown_requested(), 0);
    ingest_server_stop(ing.srv);
    ing.srv = NULL;
    cr_expect_neq(shutdown_requested(), 0, "a stop without a signal drains the same way");
}

Test(ingest_stop, no_hook_reads_the_server_after_stop)
{
    char *text = metrics_render();
    cr_assert_not_null(text);
    cr_expect_not_null(strstr(text, "calllog_ingest_spool_depth 0\n"), "%s", text);
    free(text);
    ingest_server_stop(ing.srv);
    ing.srv = NULL;
    enqueue_close(ing.q);
    ing.q = NULL;
    text = metrics_render(); /* the hook would read the freed server and enqueuer */
    cr_assert_not_null(text);
    cr_expect_not_null(strstr(text, "calllog_ingest_spool_depth 0\n"), "gauge keeps its value");
    free(text);
}

/* Scrapes until told to stop (a thread body). */
static void *scrape_until(void *arg)
{
    atomic_int *stop = arg;
    while (!atomic_load(stop))
        free(metrics_render());
    return NULL;
}

Test(ingest_stop, scrapes_during_stop_are_safe)
{
    atomic_int stop = 0;
    pthread_t th[SCRAPERS];
    for (int i = 0; i < SCRAPERS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, scrape_until, &stop), 0);
    usleep(20 * 1000);
    ingest_server_stop(ing.srv);
    ing.srv = NULL;
    enqueue_close(ing.q);
    ing.q = NULL;
    usleep(20 * 1000); /* keep scraping after everything is freed */
    atomic_store(&stop, 1);
    for (int i = 0; i < SCRAPERS; i++)
        pthread_join(th[i], NULL);
}
