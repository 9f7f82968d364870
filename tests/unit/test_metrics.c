/* test_metrics — the Prometheus registry and its /metrics listener.
 *
 * Checks values, the exact text exposition of a small registry (so a scraper-visible
 * format change shows up here first), label merging with `le`, name validation,
 * duplicate registration, collect hooks and their removal (also while other threads
 * scrape: run under ASan, a hook still running after removal reads freed memory), exact
 * totals under concurrent updates, and a real scrape over loopback with libcurl. Each criterion
 * test runs in its own process; the fini hook still resets the registry so valgrind sees no leaks.
 */
#include "common/metrics.h"
#include "common/metrics_server.h"
#include "tests/lib/free_port.h"

#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Frees the registry after each test. */
static void reset_registry(void)
{
    metrics_reset();
}

TestSuite(metrics, .fini = reset_registry, .timeout = 60);

/* Renders the registry, failing the test on NULL. Caller frees. */
static char *render(void)
{
    char *text = metrics_render();
    cr_assert_not_null(text);
    return text;
}

/* Counts the occurrences of `needle` in `hay`. */
static int count_substr(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

Test(metrics, counter_and_gauge_values)
{
    metric *c = metrics_register(METRIC_COUNTER, "t_requests_total", "Requests.", NULL, 0);
    metric *g = metrics_register(METRIC_GAUGE, "t_depth", "Depth.", NULL, 0);
    cr_assert_not_null(c);
    cr_assert_not_null(g);

    cr_expect_eq(metric_value(c, "code=\"204\""), 0.0);
    metric_add(c, "code=\"204\"", 1);
    metric_add(c, "code=\"204\"", 2.5);
    metric_add(c, "code=\"403\"", 1);
    metric_add(c, NULL, 7);
    metric_add(c, "code=\"204\"", -10); /* counters never go down: ignored */
    metric_add(c, "code=\"204\"", NAN); /* ignored as well */
    metric_set(c, "code=\"204\"", 100); /* set is for gauges only */
    cr_expect_eq(metric_value(c, "code=\"204\""), 3.5);
    cr_expect_eq(metric_value(c, "code=\"403\""), 1.0);
    cr_expect_eq(metric_value(c, NULL), 7.0);
    cr_expect_eq(metric_value(c, ""), 7.0, "NULL and \"\" are the same unlabelled series");

    metric_set(g, NULL, 5);
    metric_add(g, NULL, -2);
    cr_expect_eq(metric_value(g, NULL), 3.0);
    metric_set(g, "stream=\"dead\"", -1.25);
    cr_expect_eq(metric_value(g, "stream=\"dead\""), -1.25);
}

Test(metrics, null_metric_is_ignored)
{
    metric_add(NULL, NULL, 1);
    metric_set(NULL, NULL, 1);
    metric_observe(NULL, NULL, 1);
    cr_expect_eq(metric_value(NULL, NULL), 0.0);
}

Test(metrics, exact_exposition_of_small_registry)
{
    static const double lat[] = {0.125, 1};
    metric *c = metrics_register(METRIC_COUNTER, "calllog_http_requests_total",
                                 "HTTP requests by status code.", NULL, 0);
    metric *g = metrics_register(METRIC_GAUGE, "calllog_spool_depth", "Spooled events.", NULL, 0);
    metric *h =
        metrics_register(METRIC_HISTOGRAM, "calllog_enqueue_seconds", "Enqueue latency.", lat, 2);
    metric *empty =
        metrics_register(METRIC_COUNTER, "calllog_unused_total", "Never used.", NULL, 0);
    cr_assert(c && g && h && empty);

    metric_add(c, "code=\"204\"", 2);
    metric_add(c, "code=\"403\"", 1);
    metric_set(g, NULL, 3);
    metric_observe(h, "code=\"204\"", 0.0625);
    metric_observe(h, "code=\"204\"", 0.125); /* le is inclusive */
    metric_observe(h, "code=\"204\"", 0.5);
    metric_observe(h, "code=\"204\"", 2);
    metric_observe(h, NULL, 0.25);

    char *text = render();
    cr_expect_str_eq(text, "# HELP calllog_http_requests_total HTTP requests by status code.\n"
                           "# TYPE calllog_http_requests_total counter\n"
                           "calllog_http_requests_total{code=\"204\"} 2\n"
                           "calllog_http_requests_total{code=\"403\"} 1\n"
                           "# HELP calllog_spool_depth Spooled events.\n"
                           "# TYPE calllog_spool_depth gauge\n"
                           "calllog_spool_depth 3\n"
                           "# HELP calllog_enqueue_seconds Enqueue latency.\n"
                           "# TYPE calllog_enqueue_seconds histogram\n"
                           "calllog_enqueue_seconds_bucket{code=\"204\",le=\"0.125\"} 2\n"
                           "calllog_enqueue_seconds_bucket{code=\"204\",le=\"1\"} 3\n"
                           "calllog_enqueue_seconds_bucket{code=\"204\",le=\"+Inf\"} 4\n"
                           "calllog_enqueue_seconds_sum{code=\"204\"} 2.6875\n"
                           "calllog_enqueue_seconds_count{code=\"204\"} 4\n"
                           "calllog_enqueue_seconds_bucket{le=\"0.125\"} 0\n"
                           "calllog_enqueue_seconds_bucket{le=\"1\"} 1\n"
                           "calllog_enqueue_seconds_bucket{le=\"+Inf\"} 1\n"
                           "calllog_enqueue_seconds_sum 0.25\n"
                           "calllog_enqueue_seconds_count 1\n"
                           "# HELP calllog_unused_total Never used.\n"
                           "# TYPE calllog_unused_total counter\n");
    cr_expect_eq(metric_value(h, "code=\"204\""), 4.0, "histogram value is its count");
    free(text);
}

Test(metrics, histogram_default_buckets_and_label_merge)
{
    metric *h = metrics_register(METRIC_HISTOGRAM, "crm_request_seconds", "", NULL, 0);
    cr_assert_not_null(h);
    metric_observe(h, "endpoint=\"activities\",status=\"200\"", 0.003);
    char *text = render();
    cr_expect_eq(count_substr(text, "crm_request_seconds_bucket{"), 15,
                 "14 default buckets plus +Inf:\n%s", text);
    const char *expect[] = {
        "# HELP crm_request_seconds \n",
        "crm_request_seconds_bucket{endpoint=\"activities\",status=\"200\",le=\"0.0005\"} 0\n",
        "crm_request_seconds_bucket{endpoint=\"activities\",status=\"200\",le=\"0.0025\"} 0\n",
        "crm_request_seconds_bucket{endpoint=\"activities\",status=\"200\",le=\"0.005\"} 1\n",
        "crm_request_seconds_bucket{endpoint=\"activities\",status=\"200\",le=\"10\"} 1\n",
        "crm_request_seconds_bucket{endpoint=\"activities\",status=\"200\",le=\"+Inf\"} 1\n",
        "crm_request_seconds_sum{endpoint=\"activities\",status=\"200\"} 0.003\n",
        "crm_request_seconds_count{endpoint=\"activities\",status=\"200\"} 1\n",
    };
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++)
        cr_expect_not_null(strstr(text, expect[i]), "missing %s in\n%s", expect[i], text);
    free(text);
}

Test(metrics, histogram_bucket_checks)
{
    static const double descending[] = {1, 0.5};
    static const double with_inf[] = {1, INFINITY};
    static const double with_nan[] = {NAN};
    cr_expect_null(metrics_register(METRIC_HISTOGRAM, "h_desc", "", descending, 2));
    cr_expect_null(metrics_register(METRIC_HISTOGRAM, "h_nan", "", with_nan, 1));
    metric *h = metrics_register(METRIC_HISTOGRAM, "h_inf", "", with_inf, 2);
    cr_assert_not_null(h, "a trailing +Inf is implied and accepted");
    metric_observe(h, NULL, 5);
    char *text = render();
    cr_expect_eq(count_substr(text, "le=\"+Inf\""), 1, "+Inf rendered once:\n%s", text);
    cr_expect_not_null(strstr(text, "h_inf_bucket{le=\"1\"} 0\n"));
    cr_expect_not_null(strstr(text, "h_inf_bucket{le=\"+Inf\"} 1\n"));
    free(text);
}

Test(metrics, bad_names_are_refused)
{
    const char *bad[] = {"", "1abc", "a-b", "a b", "caf\xc3\xa9", "a{b}", "x\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_null(metrics_register(METRIC_COUNTER, bad[i], "", NULL, 0), "accepted '%s'",
                       bad[i]);
    cr_expect_null(metrics_register(METRIC_GAUGE, NULL, "", NULL, 0));
    const char *good[] = {"a", "_x", ":x", "calllog:rate_5m", "A1_b2"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        cr_expect_not_null(metrics_register(METRIC_COUNTER, good[i], "", NULL, 0), "refused '%s'",
                           good[i]);
}

Test(metrics, duplicate_registration)
{
    metric *a = metrics_register(METRIC_COUNTER, "dup_total", "First help.", NULL, 0);
    cr_assert_not_null(a);
    metric *b = metrics_register(METRIC_COUNTER, "dup_total", "Second help.", NULL, 0);
    cr_expect_eq(a, b, "same name and type returns the existing metric");
    cr_expect_null(metrics_register(METRIC_GAUGE, "dup_total", "", NULL, 0));
    cr_expect_null(metrics_register(METRIC_HISTOGRAM, "dup_total", "", NULL, 0));
    char *text = render();
    cr_expect_str_eq(text, "# HELP dup_total First help.\n# TYPE dup_total counter\n");
    free(text);
}

Test(metrics, help_escaping_and_special_values)
{
    metric *g = metrics_register(METRIC_GAUGE, "g", "back\\slash\nnew \"line\"", NULL, 0);
    cr_assert_not_null(g);
    metric_set(g, "v=\"pinf\"", INFINITY);
    metric_set(g, "v=\"ninf\"", -INFINITY);
    metric_set(g, "v=\"nan\"", NAN);
    metric_set(g, "v=\"tenth\"", 0.1);
    metric_set(g, "v=\"big\"", 1234567890123.0);
    metric_set(g, "v=\"neg\"", -42);
    metric_set(g, "v=\"tiny\"", 1e-7);
    char *text = render();
    cr_expect_str_eq(text, "# HELP g back\\\\slash\\nnew \"line\"\n"
                           "# TYPE g gauge\n"
                           "g{v=\"pinf\"} +Inf\n"
                           "g{v=\"ninf\"} -Inf\n"
                           "g{v=\"nan\"} NaN\n"
                           "g{v=\"tenth\"} 0.1\n"
                           "g{v=\"big\"} 1234567890123\n"
                           "g{v=\"neg\"} -42\n"
                           "g{v=\"tiny\"} 1e-07\n");
    free(text);
}

/* Hook state: a gauge to refresh and how often the hook ran. */
struct hook_state {
    metric *gauge;
    int calls;
};

/* Collect hook: sets the gauge to the number of renders so far (calls metric_set, which
 * would deadlock if hooks ran under the registry lock). */
static void depth_hook(void *arg)
{
    struct hook_state *st = arg;
    st->calls++;
    metric_set(st->gauge, "stream=\"events\"", st->calls * 10);
}

/* Collect hook that only counts its calls. */
static void count_hook(void *arg)
{
    (*(int *)arg)++;
}

Test(metrics, collect_hooks_run_before_render)
{
    struct hook_state st = {metrics_register(METRIC_GAUGE, "depth", "Depth.", NULL, 0), 0};
    int plain = 0;
    cr_assert_not_null(st.gauge);
    cr_assert_eq(metrics_add_collect_hook(count_hook, &plain), 0);
    cr_expect_eq(metrics_add_collect_hook(NULL, NULL), -1);
    cr_expect_eq(metric_value(st.gauge, "stream=\"events\""), 0.0);
    cr_assert_eq(metrics_add_collect_hook(depth_hook, &st), 0);

    char *text = render();
    cr_expect_not_null(strstr(text, "depth{stream=\"events\"} 10\n"), "%s", text);
    free(text);
    cr_expect_eq(plain, 1);
    text = render();
    cr_expect_not_null(strstr(text, "depth{stream=\"events\"} 20\n"), "%s", text);
    free(text);
    cr_expect_eq(plain, 2);
}

Test(metrics, removed_hook_is_no_longer_called)
{
    int first = 0, second = 0, third = 0;
    cr_assert_eq(metrics_add_collect_hook(count_hook, &first), 0);
    cr_assert_eq(metrics_add_collect_hook(count_hook, &second), 0);
    cr_assert_eq(metrics_add_collect_hook(count_hook, &third), 0);
    free(render());
    cr_expect(first == 1 && second == 1 && third == 1);

    metrics_remove_collect_hook(count_hook, &second);
    free(render());
    cr_expect_eq(first, 2);
    cr_expect_eq(second, 1, "a removed hook is not called again");
    cr_expect_eq(third, 2, "the hooks after the removed one still run");

    cr_assert_eq(metrics_add_collect_hook(count_hook, &second), 0, "can be added again");
    free(render());
    cr_expect(first == 3 && second == 2 && third == 3);
}

Test(metrics, removing_unknown_hook_is_harmless)
{
    int calls = 0, other = 0;
    metrics_remove_collect_hook(count_hook, &calls); /* empty list */
    metrics_remove_collect_hook(NULL, NULL);
    cr_assert_eq(metrics_add_collect_hook(count_hook, &calls), 0);
    metrics_remove_collect_hook(count_hook, &other); /* same function, other argument */
    metrics_remove_collect_hook(depth_hook, &calls); /* other function */
    free(render());
    cr_expect_eq(calls, 1, "an unknown pair removes nothing");
    metrics_remove_collect_hook(count_hook, &calls);
    metrics_remove_collect_hook(count_hook, &calls); /* twice */
    free(render());
    cr_expect_eq(calls, 1);
}

Test(metrics, hook_added_twice_is_removed_once_per_call)
{
    int calls = 0;
    cr_assert_eq(metrics_add_collect_hook(count_hook, &calls), 0);
    cr_assert_eq(metrics_add_collect_hook(count_hook, &calls), 0);
    free(render());
    cr_expect_eq(calls, 2);
    metrics_remove_collect_hook(count_hook, &calls);
    free(render());
    cr_expect_eq(calls, 3, "one registration is left");
    metrics_remove_collect_hook(count_hook, &calls);
    free(render());
    cr_expect_eq(calls, 3);
}

/* A hook that parks until told to go on, so a test can hold a render inside it. */
struct parked_hook {
    atomic_int entered; /* the hook is running */
    atomic_int release; /* the hook may return */
    atomic_int calls;
};

/* Collect hook: says it entered, then waits for `release`. */
static void parking_hook(void *arg)
{
    struct parked_hook *p = arg;
    atomic_fetch_add(&p->calls, 1);
    atomic_store(&p->entered, 1);
    while (!atomic_load(&p->release))
        usleep(1000);
}

/* Renders once, then says so through `arg` (an atomic_int; a thread body). */
static void *render_once(void *arg)
{
    free(metrics_render());
    atomic_store((atomic_int *)arg, 1);
    return NULL;
}

/* A thread removing the parking hook, and whether its removal has returned. */
struct remover {
    struct parked_hook *hook;
    atomic_int done;
};

/* Removes the parking hook, then records that removal returned (a thread body). */
static void *remove_parking_hook(void *arg)
{
    struct remover *r = arg;
    metrics_remove_collect_hook(parking_hook, r->hook);
    atomic_store(&r->done, 1);
    return NULL;
}

Test(metrics, remove_waits_for_a_render_inside_the_hook)
{
    struct parked_hook p = {0, 0, 0};
    struct remover r = {&p, 0};
    atomic_int rendered = 0;
    cr_assert_eq(metrics_add_collect_hook(parking_hook, &p), 0);
    pthread_t renderer, remover;
    cr_assert_eq(pthread_create(&renderer, NULL, render_once, &rendered), 0);
    while (!atomic_load(&p.entered) && !atomic_load(&rendered))
        usleep(1000);
    if (!atomic_load(&p.entered)) { /* the render failed before its hooks (out of memory) */
        pthread_join(renderer, NULL);
        cr_assert_fail("the render ended without running the hook");
    }
    if (pthread_create(&remover, NULL, remove_parking_hook, &r) != 0) {
        atomic_store(&p.release, 1); /* else the parked render holds the registry forever */
        pthread_join(renderer, NULL);
        cr_assert_fail("cannot start the remover thread");
    }
    usleep(100 * 1000);
    cr_expect_eq(atomic_load(&r.done), 0, "remove returned while a render ran the hook");
    atomic_store(&p.release, 1);
    pthread_join(remover, NULL);
    pthread_join(renderer, NULL);
    cr_expect_eq(atomic_load(&r.done), 1);
    free(render());
    cr_expect_eq(atomic_load(&p.calls), 1, "not called after removal");
}

#define SCRAPERS 4
#define HOOK_ROUNDS 300
#define HOOK_MAGIC 0x5ca1ab1eu

/* What a short-lived hook reads; freed right after its removal. */
struct owned_state {
    unsigned magic;
    metric *gauge;
    long calls;
};

/* Collect hook: checks its state is still alive and touches it. */
static void owned_hook(void *arg)
{
    struct owned_state *st = arg;
    if (st->magic != HOOK_MAGIC)
        abort(); /* Release builds: freed and reused; ASan reports the read itself */
    st->calls++;
    metric_set(st->gauge, NULL, (double)st->calls);
}

/* Scrapes until told to stop (a thread body). */
static void *scrape_until(void *arg)
{
    atomic_int *stop = arg;
    while (!atomic_load(stop))
        free(metrics_render());
    return NULL;
}

Test(metrics, remove_during_concurrent_scrapes)
{
    metric *g = metrics_register(METRIC_GAUGE, "owned_calls", "", NULL, 0);
    cr_assert_not_null(g);
    atomic_int stop = 0;
    pthread_t th[SCRAPERS];
    for (int i = 0; i < SCRAPERS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, scrape_until, &stop), 0);
    long total = 0;
    for (int round = 0; round < HOOK_ROUNDS; round++) {
        struct owned_state *st = malloc(sizeof *st);
        cr_assert_not_null(st);
        *st = (struct owned_state){HOOK_MAGIC, g, 0};
        cr_assert_eq(metrics_add_collect_hook(owned_hook, st), 0);
        usleep(200);
        metrics_remove_collect_hook(owned_hook, st);
        total += st->calls;
        st->magic = 0;
        free(st);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < SCRAPERS; i++)
        pthread_join(th[i], NULL);
    cr_expect_gt(total, 0, "the scrapers ran the hooks at all");
}

Test(metrics, reset_frees_everything)
{
    int calls = 0;
    metric *c = metrics_register(METRIC_COUNTER, "r_total", "", NULL, 0);
    metric_add(c, NULL, 5);
    cr_assert_eq(metrics_add_collect_hook(count_hook, &calls), 0);
    metrics_reset();
    char *text = render();
    cr_expect_str_eq(text, "");
    cr_expect_eq(calls, 0, "hooks are gone after reset");
    free(text);
    metric *g = metrics_register(METRIC_GAUGE, "r_total", "", NULL, 0);
    cr_expect_not_null(g, "the name is free again, even for another type");
    cr_expect_eq(metric_value(g, NULL), 0.0);
}

#define ADD_THREADS 8
#define ADDS_PER_THREAD 50000

/* Shared by the adding threads. */
struct add_job {
    metric *counter;
    metric *hist;
    int id;
};

/* Adds 1 to a shared series many times, each thread also creating its own series. */
static void *add_many(void *arg)
{
    struct add_job *job = arg;
    char own[32];
    snprintf(own, sizeof own, "thread=\"%d\"", job->id);
    for (int i = 0; i < ADDS_PER_THREAD; i++) {
        metric_add(job->counter, "shared=\"yes\"", 1);
        metric_add(job->counter, own, 1);
        metric_observe(job->hist, NULL, 0.001);
    }
    return NULL;
}

/* Renders repeatedly while the adders run, to race rendering against series creation. */
static void *render_many(void *arg)
{
    (void)arg;
    for (int i = 0; i < 200; i++)
        free(metrics_render());
    return NULL;
}

Test(metrics, concurrent_adds_give_exact_totals)
{
    metric *c = metrics_register(METRIC_COUNTER, "conc_total", "", NULL, 0);
    metric *h = metrics_register(METRIC_HISTOGRAM, "conc_seconds", "", NULL, 0);
    cr_assert(c && h);
    pthread_t th[ADD_THREADS], renderer;
    struct add_job jobs[ADD_THREADS];
    cr_assert_eq(pthread_create(&renderer, NULL, render_many, NULL), 0);
    for (int i = 0; i < ADD_THREADS; i++) {
        jobs[i] = (struct add_job){c, h, i};
        cr_assert_eq(pthread_create(&th[i], NULL, add_many, &jobs[i]), 0);
    }
    for (int i = 0; i < ADD_THREADS; i++)
        pthread_join(th[i], NULL);
    pthread_join(renderer, NULL);

    cr_expect_eq(metric_value(c, "shared=\"yes\""), (double)ADD_THREADS * ADDS_PER_THREAD);
    cr_expect_eq(metric_value(h, NULL), (double)ADD_THREADS * ADDS_PER_THREAD);
    for (int i = 0; i < ADD_THREADS; i++) {
        char own[32];
        snprintf(own, sizeof own, "thread=\"%d\"", i);
        cr_expect_eq(metric_value(c, own), (double)ADDS_PER_THREAD, "series %s", own);
    }
    char *text = render();
    cr_expect_not_null(strstr(text, "conc_total{shared=\"yes\"} 400000\n"), "%s", text);
    cr_expect_not_null(strstr(text, "conc_seconds_bucket{le=\"0.001\"} 400000\n"));
    cr_expect_not_null(strstr(text, "conc_seconds_bucket{le=\"0.0005\"} 0\n"));
    cr_expect_not_null(strstr(text, "conc_seconds_count 400000\n"));
    free(text);
}

/* A response as seen by libcurl. */
struct http_reply {
    long status;
    char content_type[128];
    char allow[64];
    char body[8192];
    size_t len;
};

/* libcurl body callback: appends into the reply, refusing overflow. */
static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    struct http_reply *r = arg;
    size_t len = size * n;
    if (r->len + len >= sizeof r->body)
        return 0;
    memcpy(r->body + r->len, data, len);
    r->len += len;
    r->body[r->len] = '\0';
    return len;
}

/* libcurl header callback: keeps the Allow header. */
static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    struct http_reply *r = arg;
    size_t len = size * n;
    if (len > 7 && strncasecmp(data, "Allow: ", 7) == 0 && len - 7 < sizeof r->allow) {
        memcpy(r->allow, data + 7, len - 7);
        r->allow[strcspn(r->allow, "\r\n")] = '\0';
    }
    return len;
}

/* Sends one request to 127.0.0.1:port/path. Returns the curl code. */
static CURLcode http_do(int port, const char *method, const char *path, struct http_reply *r)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    memset(r, 0, sizeof *r);
    CURL *h = curl_easy_init();
    cr_assert_not_null(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "POST") == 0)
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "x=1");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 20L);
    CURLcode rc = curl_easy_perform(h);
    char *ct = NULL;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    if (curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct != NULL)
        snprintf(r->content_type, sizeof r->content_type, "%s", ct);
    curl_easy_cleanup(h);
    return rc;
}

/* Starts a server on a free loopback port (a few tries, in case of a race). */
static metrics_server *start_on_free_port(int *port)
{
    calllog_error err = {0};
    for (int attempt = 0; attempt < 5; attempt++) {
        *port = free_port();
        cr_assert_gt(*port, 0);
        metrics_server *s = metrics_server_start("127.0.0.1", *port, &err);
        if (s != NULL)
            return s;
    }
    cr_assert_fail("metrics_server_start: %s", err.message);
    return NULL;
}

Test(metrics, server_serves_metrics_over_http)
{
    metric *c = metrics_register(METRIC_COUNTER, "srv_requests_total", "Requests.", NULL, 0);
    cr_assert_not_null(c);
    metric_add(c, "code=\"204\"", 3);
    cr_assert_eq(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
    int port = 0;
    metrics_server *s = start_on_free_port(&port);
    struct http_reply r;

    cr_assert_eq(http_do(port, "GET", "/metrics", &r), CURLE_OK);
    cr_expect_eq(r.status, 200);
    cr_expect_str_eq(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
    cr_expect_str_eq(r.body, "# HELP srv_requests_total Requests.\n"
                             "# TYPE srv_requests_total counter\n"
                             "srv_requests_total{code=\"204\"} 3\n");

    cr_assert_eq(http_do(port, "POST", "/metrics", &r), CURLE_OK);
    cr_expect_eq(r.status, 405);
    cr_expect_str_eq(r.allow, "GET, HEAD");
    cr_assert_eq(http_do(port, "GET", "/metrics/extra", &r), CURLE_OK);
    cr_expect_eq(r.status, 404);
    cr_assert_eq(http_do(port, "GET", "/", &r), CURLE_OK);
    cr_expect_eq(r.status, 404);

    calllog_error err = {0};
    cr_expect_null(metrics_server_start("127.0.0.1", port, &err),
                   "a second listener on a used port must fail");
    char prefix[64];
    snprintf(prefix, sizeof prefix, "cannot listen on 127.0.0.1:%d: ", port);
    cr_expect_eq(strncmp(err.message, prefix, strlen(prefix)), 0, "err was '%s'", err.message);
    cr_expect_not_null(strstr(err.message, "in use"), "err gives the cause: '%s'", err.message);

    metrics_server_stop(s);
    metrics_server_stop(NULL);
    curl_global_cleanup();
}

Test(metrics, server_refuses_bad_port)
{
    calllog_error err = {0};
    cr_expect_null(metrics_server_start("127.0.0.1", 0, &err));
    cr_expect_str_eq(err.message, "cannot listen on 127.0.0.1:0: bad address");
    cr_expect_null(metrics_server_start("127.0.0.1", 70000, &err));
}
