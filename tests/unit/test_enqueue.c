/* test_enqueue — unit tests for ingest/enqueue (XADD with group commit, spool fallback),
 * against the real test Redis.
 *
 * Covered: concurrent puts while Redis holds writes back (CLIENT PAUSE) share round trips
 * — fewer batches than entries — and every entry lands on the stream exactly once, each
 * caller told ENQUEUE_STREAM; thousands of puts in a row from eight threads, which pass
 * the lead from batch to batch, lose none and strand no caller, also while their Redis
 * connections are killed; with Redis unreachable every entry goes to the spool. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/metrics.h"
#include "ingest/enqueue.h"
#include "ingest/settings.h"
#include "tests/lib/redis_fixture.h"
#include "tests/lib/scratch_dir.h"

#define PUTS 8

/* The enqueuer under test and where its spool lives. */
static struct {
    ingest_settings s;
    char spool[64];
    char prefix[128];
    enqueuer *q;
} t;

/* Loads ingest settings for `redis_url` with a fresh spool and key prefix, and opens the
 * enqueuer. */
static void open_enqueuer(const char *redis_url)
{
    cr_assert_eq(scratch_dir_make(t.spool, sizeof t.spool, "enqueue"), 0);
    redis_fixture_name(t.prefix, sizeof t.prefix, "enqueue");
    const char *env[][2] = {{"PUBLIC_BASE_URL", "https://hooks.example.com"},
                            {"TWILIO_AUTH_TOKEN", "unit-test-auth-token"},
                            {"REDIS_URL", redis_url},
                            {"CALLLOG_KEY_PREFIX", t.prefix},
                            {"INGEST_SPOOL_DIR", t.spool}, /* never the working directory */
                            {"INGEST_THREADS", "16"}};
    for (size_t i = 0; i < sizeof env / sizeof *env; i++)
        cr_assert_eq(setenv(env[i][0], env[i][1], 1), 0, "setenv %s", env[i][0]);
    calllog_error err = {0};
    cr_assert_eq(ingest_settings_load(&t.s, &err), 0, "%s", err.message);
    t.q = enqueue_open(&t.s, &err);
    cr_assert_not_null(t.q, "enqueue_open: %s", err.message);
}

/* Closes the enqueuer, forgets the metrics and removes the spool directory. */
static void close_enqueuer(void)
{
    enqueue_close(t.q);
    t.q = NULL;
    metrics_reset();
    scratch_dir_remove(t.spool);
}

/* One caller: its entry and what enqueue_put answered. */
typedef struct put_job {
    char call_sid[40];
    stream_entry e;
    enqueue_result result;
} put_job;

/* Thread body: one enqueue_put. */
static void *put_main(void *arg)
{
    put_job *j = arg;
    j->result = enqueue_put(t.q, &j->e);
    return NULL;
}

/* Runs PUTS enqueue_puts at once, each from its own thread. A thread that cannot start
 * fails the test only after the started ones are joined: they use `jobs`. */
static void put_concurrently(put_job *jobs)
{
    pthread_t th[PUTS];
    int started = 0;
    for (int i = 0; i < PUTS; i++) {
        snprintf(jobs[i].call_sid, sizeof jobs[i].call_sid, "CA%032d", i);
        jobs[i].e = (stream_entry){.call_sid = jobs[i].call_sid,
                                   .status = "completed",
                                   .request_id = "req",
                                   .received_at = "2026-12-03T09:00:00.000Z",
                                   .event = "{\"v\":1}"};
    }
    while (started < PUTS && pthread_create(&th[started], NULL, put_main, &jobs[started]) == 0)
        started++;
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(started, PUTS, "only %d threads started", started);
}

/* The value of the `_count` line of histogram `name` in the metrics exposition. */
static double histogram_count(const char *name)
{
    char *text = metrics_render();
    char key[160];
    snprintf(key, sizeof key, "\n%s_count ", name);
    const char *at = text ? strstr(text, key) : NULL;
    double v = at ? strtod(at + strlen(key), NULL) : -1;
    free(text);
    return v;
}

/* Counts the stream entries whose call_sid field is `sid`. */
static int count_on_stream(redisContext *c, const char *stream, const char *sid)
{
    redisReply *r = redisCommand(c, "XRANGE %s - +", stream);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY);
    int n = 0;
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *fields = r->element[i]->element[1];
        for (size_t f = 0; f + 1 < fields->elements; f += 2)
            n += strcmp(fields->element[f]->str, "call_sid") == 0 &&
                 strcmp(fields->element[f + 1]->str, sid) == 0;
    }
    freeReplyObject(r);
    return n;
}

Test(enqueue, concurrent_puts_share_round_trips_and_land_once, .timeout = 60)
{
    redisContext *c = redis_fixture_connect();
    open_enqueuer(getenv(REDIS_FIXTURE_URL_ENV));
    /* Writes wait for half a second: the first caller's XADD is held back, and every
     * other caller queues behind it meanwhile. */
    redisReply *r = redisCommand(c, "CLIENT PAUSE 500 WRITE");
    cr_assert(r && r->type == REDIS_REPLY_STATUS, "CLIENT PAUSE refused");
    freeReplyObject(r);
    put_job jobs[PUTS];
    put_concurrently(jobs);
    for (int i = 0; i < PUTS; i++)
        cr_expect_eq(jobs[i].result, ENQUEUE_STREAM, "put %d answered %d", i, jobs[i].result);
    for (int i = 0; i < PUTS; i++)
        cr_expect_eq(count_on_stream(c, t.s.keys.events, jobs[i].call_sid), 1, "%s",
                     jobs[i].call_sid);
    double batches = histogram_count("calllog_ingest_enqueue_batch_entries");
    cr_expect(batches >= 1 && batches < PUTS, "%g round trips for %d entries", batches, PUTS);
    freeReplyObject(redisCommand(c, "DEL %s", t.s.keys.events));
    close_enqueuer();
    redisFree(c);
}

/* A caller that puts ROUNDS entries one after another (call_sid "CA<thread><round>"). */
#define ROUNDS 250
typedef struct loop_job {
    int thread;
    int stream; /* how many were answered ENQUEUE_STREAM */
} loop_job;

/* Thread body: ROUNDS enqueue_puts in a row. */
static void *put_loop_main(void *arg)
{
    loop_job *j = arg;
    for (int r = 0; r < ROUNDS; r++) {
        char sid[40];
        snprintf(sid, sizeof sid, "CA%02d%030d", j->thread, r);
        stream_entry e = {.call_sid = sid,
                          .status = "completed",
                          .request_id = "req",
                          .received_at = "2026-12-03T09:00:00.000Z",
                          .event = "{\"v\":1}"};
        j->stream += enqueue_put(t.q, &e) == ENQUEUE_STREAM;
    }
    return NULL;
}

/* Runs PUTS put_loop_main threads (and `beside`, when given) to the end. A thread that
 * cannot start fails the test only after the started ones are joined: they use `jobs`. */
static void put_loops(loop_job *jobs, void *(*beside)(void *))
{
    pthread_t th[PUTS], other;
    int started = 0, other_started = 0;
    for (; started < PUTS; started++) {
        jobs[started].thread = started;
        if (pthread_create(&th[started], NULL, put_loop_main, &jobs[started]) != 0)
            break;
    }
    if (beside)
        other_started = pthread_create(&other, NULL, beside, NULL) == 0;
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    if (other_started)
        pthread_join(other, NULL);
    cr_assert_eq(started, PUTS, "only %d threads started", started);
    cr_assert(!beside || other_started, "the thread beside the puts did not start");
}

/* The lead passes from batch to batch thousands of times: nobody is left waiting (the
 * test would time out), every entry lands once, and the batches add up to the entries. */
Test(enqueue, sustained_puts_hand_the_lead_on_and_lose_nothing, .timeout = 60)
{
    redisContext *c = redis_fixture_connect();
    open_enqueuer(getenv(REDIS_FIXTURE_URL_ENV));
    loop_job jobs[PUTS] = {0};
    put_loops(jobs, NULL);
    for (int i = 0; i < PUTS; i++)
        cr_expect_eq(jobs[i].stream, ROUNDS, "thread %d: %d of %d on the stream", i, jobs[i].stream,
                     ROUNDS);
    redisReply *r = redisCommand(c, "XLEN %s", t.s.keys.events);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER);
    cr_expect_eq(r->integer, PUTS * ROUNDS);
    freeReplyObject(r);
    char *text = metrics_render();
    const char *sum = text ? strstr(text, "\ncalllog_ingest_enqueue_batch_entries_sum ") : NULL;
    cr_expect(sum && strtod(strchr(sum + 1, ' ') + 1, NULL) == PUTS * ROUNDS,
              "the batches do not add up to %d entries", PUTS * ROUNDS);
    free(text);
    freeReplyObject(redisCommand(c, "DEL %s", t.s.keys.events));
    close_enqueuer();
    redisFree(c);
}

/* The peer port of socket `fd`, or -1 when it is not a connected IPv4 socket. */
static int peer_port(int fd)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    if (getpeername(fd, (struct sockaddr *)&a, &alen) != 0 || a.sin_family != AF_INET)
        return -1;
    return ntohs(a.sin_port);
}

/* Thread body: five times, 20 ms apart, shuts down every socket of this process that is
 * connected to the test Redis (the enqueuer's; other suites' connections to the shared
 * server are left alone), except its own. */
static void *kill_connections_main(void *arg)
{
    (void)arg;
    redisContext *c = redis_fixture_connect();
    int redis_port = peer_port(c->fd);
    for (int i = 0; i < 5; i++) {
        usleep(20 * 1000);
        for (int fd = 3; fd < 1024; fd++)
            if (fd != c->fd && peer_port(fd) == redis_port)
                shutdown(fd, SHUT_RDWR);
    }
    redisFree(c);
    return NULL;
}

/* Connections that break while batches are in flight (and one is already sent behind
 * the batch being read) lose nothing: every put is answered stream or spool, no caller
 * is stranded, and once the spool is replayed (enqueue_close) every entry is on the
 * stream at least once (twice is allowed: the worker's claim absorbs copies). */
Test(enqueue, broken_connections_mid_batch_lose_nothing, .timeout = 60)
{
    signal(SIGPIPE, SIG_IGN); /* as the ingest does (shutdown.h): writes to a cut socket fail */
    log_configure("test_enqueue", "error", "json"); /* hundreds of expected "xadd failed" */
    open_enqueuer(getenv(REDIS_FIXTURE_URL_ENV));
    loop_job jobs[PUTS] = {0};
    put_loops(jobs, kill_connections_main);
    enqueue_close(t.q); /* replays the spool into the stream */
    t.q = NULL;
    redisContext *c = redis_fixture_connect(); /* after the cuts, which would end it too */
    for (int i = 0; i < PUTS; i++)
        for (int r = 0; r < ROUNDS; r += 25) {
            char sid[40];
            snprintf(sid, sizeof sid, "CA%02d%030d", i, r);
            cr_expect(count_on_stream(c, t.s.keys.events, sid) >= 1, "%s lost", sid);
        }
    freeReplyObject(redisCommand(c, "DEL %s", t.s.keys.events));
    metrics_reset();
    scratch_dir_remove(t.spool);
    redisFree(c);
}

Test(enqueue, redis_unreachable_every_entry_is_spooled, .timeout = 60)
{
    open_enqueuer("redis://127.0.0.1:1/0"); /* nothing listens there */
    put_job jobs[PUTS];
    put_concurrently(jobs);
    for (int i = 0; i < PUTS; i++)
        cr_expect_eq(jobs[i].result, ENQUEUE_SPOOL, "put %d answered %d", i, jobs[i].result);
    cr_expect_eq(enqueue_spool_depth(t.q), PUTS);
    close_enqueuer();
}
