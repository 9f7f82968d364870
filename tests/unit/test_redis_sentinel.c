/* test_redis_sentinel — unit tests for common/redis_sentinel and the Sentinel path of
 * common/redis_client (REDIS_SENTINELS, REDIS_SENTINEL_MASTER, redis_open via sentinels).
 *
 * List parsing and the settings are pure. Discovery runs against real daemons this file
 * starts on free loopback ports for each test (criterion runs every test in its own
 * process): a redis-server master, a redis-server replica of it, and one redis-sentinel
 * (`redis-server --sentinel`, the binary Debian's redis-sentinel package links) watching
 * the master. They die with the test process (PR_SET_PDEATHSIG) and are stopped in .fini.
 * The end-to-end failover test is tests/e2e/test_redis_sentinel.py. */
#include <criterion/criterion.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/redis_client.h"
#include "common/redis_sentinel.h"
#include "tests/lib/free_port.h"

#define MASTER_NAME "unit-master"

/* ---- REDIS_SENTINELS parsing ----------------------------------------------------------------- */

Test(sentinel_parse, list_with_default_port_spaces_and_v6)
{
    redis_sentinels s;
    calllog_error err = {0};
    cr_assert_eq(redis_sentinel_parse("10.0.0.1:26380, sentinel-b ,[::1]:5000", &s, &err), 0, "%s",
                 err.message);
    cr_assert_eq(s.n, 3);
    cr_assert_str_eq(s.addr[0].host, "10.0.0.1");
    cr_assert_eq(s.addr[0].port, 26380);
    cr_assert_str_eq(s.addr[1].host, "sentinel-b");
    cr_assert_eq(s.addr[1].port, 26379);
    cr_assert_str_eq(s.addr[2].host, "::1");
    cr_assert_eq(s.addr[2].port, 5000);
}

Test(sentinel_parse, refuses_malformed_lists)
{
    const char *bad[] = {"", "a:0", "a:70000", "a:12x", "a,,b", ",", "[::1", "a:1,", NULL};
    for (int i = 0; bad[i]; i++) {
        redis_sentinels s;
        calllog_error err = {0};
        cr_assert_eq(redis_sentinel_parse(bad[i], &s, &err), -1, "accepted '%s'", bad[i]);
        cr_assert(err.message[0], "no reason for '%s'", bad[i]);
    }
    redis_sentinels s;
    calllog_error err = {0};
    cr_assert_eq(redis_sentinel_parse("a,b,c,d,e,f,g,h,i", &s, &err), -1, "nine accepted");
}

/* ---- the settings ---------------------------------------------------------------------------- */

Test(sentinel_settings, unset_means_direct)
{
    unsetenv("REDIS_SENTINELS");
    redis_target t;
    calllog_keys k;
    calllog_error err = {0};
    cr_assert_eq(redis_settings_load(&t, &k, &err), 0, "%s", err.message);
    cr_assert_eq(t.sentinels.n, 0);
}

Test(sentinel_settings, master_name_is_required)
{
    setenv("REDIS_SENTINELS", "127.0.0.1:26379", 1);
    unsetenv("REDIS_SENTINEL_MASTER");
    redis_target t;
    calllog_keys k;
    calllog_error err = {0};
    cr_assert_eq(redis_settings_load(&t, &k, &err), -1);
    cr_assert(strstr(err.message, "REDIS_SENTINEL_MASTER"), "%s", err.message);
}

Test(sentinel_settings, reads_every_setting_and_keeps_the_url_password)
{
    setenv("REDIS_URL", "redis://:master-pw@ignored.example:1/2", 1);
    setenv("REDIS_SENTINELS", "s1:26379,s2", 1);
    setenv("REDIS_SENTINEL_MASTER", "calllog", 1);
    setenv("REDIS_SENTINEL_PASSWORD", "sentinel-pw", 1);
    redis_target t;
    calllog_keys k;
    calllog_error err = {0};
    cr_assert_eq(redis_settings_load(&t, &k, &err), 0, "%s", err.message);
    cr_assert_eq(t.sentinels.n, 2);
    cr_assert_str_eq(t.sentinels.master, "calllog");
    cr_assert_str_eq(t.sentinels.password, "sentinel-pw");
    cr_assert_str_eq(t.password, "master-pw");
    cr_assert_eq(t.db, 2);
    setenv("REDIS_SENTINELS", "s1:notaport", 1);
    cr_assert_eq(redis_settings_load(&t, &k, &err), -1);
    cr_assert(strstr(err.message, "REDIS_SENTINELS"), "%s", err.message);
}

/* ---- discovery against real daemons ---------------------------------------------------------- */

static struct daemons {
    char dir[64];
    pid_t pid[3];
    int master_port, replica_port, sentinel_port;
} d;

/* Starts `argv` with its output in the test directory; it dies with the test. */
static pid_t spawn(char *const argv[])
{
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execvp(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* Waits until `port` answers PING (sentinels answer it too). */
static void wait_answers(int port, pid_t pid)
{
    for (int i = 0; i < 200; i++) {
        redisContext *c = redisConnect("127.0.0.1", port);
        redisReply *r = c && !c->err ? redisCommand(c, "PING") : NULL;
        int up = r && r->type == REDIS_REPLY_STATUS;
        if (r)
            freeReplyObject(r);
        redisFree(c);
        if (up)
            return;
        int status;
        cr_assert_eq(waitpid(pid, &status, WNOHANG), 0, "a daemon on port %d exited (%d)", port,
                     WEXITSTATUS(status));
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    cr_assert_fail("nothing answered on port %d", port);
}

/* Starts a redis-server on `port` (a replica of the master when `replicaof` > 0). */
static pid_t start_redis(int port, int replicaof)
{
    char p[16], of[16], log[128];
    snprintf(p, sizeof p, "%d", port);
    snprintf(of, sizeof of, "%d", replicaof);
    snprintf(log, sizeof log, "%s/redis-%d.log", d.dir, port);
    char *argv[20] = {"redis-server", "--port", p,           "--bind", "127.0.0.1",    "--save", "",
                      "--dir",        d.dir,    "--logfile", log,      "--appendonly", "no"};
    if (replicaof > 0) {
        argv[13] = "--replicaof";
        argv[14] = "127.0.0.1";
        argv[15] = of;
    }
    pid_t pid = spawn(argv);
    wait_answers(port, pid);
    return pid;
}

/* Starts one sentinel watching the master, from a config file it may rewrite. */
static pid_t start_sentinel(void)
{
    char conf[128];
    snprintf(conf, sizeof conf, "%s/sentinel.conf", d.dir);
    FILE *f = fopen(conf, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "port %d\nbind 127.0.0.1\ndir %s\nlogfile %s/sentinel.log\n"
            "sentinel monitor " MASTER_NAME " 127.0.0.1 %d 1\n",
            d.sentinel_port, d.dir, d.dir, d.master_port);
    fclose(f);
    char *argv[] = {"redis-server", conf, "--sentinel", NULL};
    pid_t pid = spawn(argv);
    wait_answers(d.sentinel_port, pid);
    return pid;
}

static void daemons_start(void)
{
    snprintf(d.dir, sizeof d.dir, "/tmp/calllog-test-sentinel-XXXXXX");
    cr_assert_not_null(mkdtemp(d.dir));
    d.master_port = free_port();
    d.replica_port = free_port();
    d.sentinel_port = free_port();
    d.pid[0] = start_redis(d.master_port, 0);
    d.pid[1] = start_redis(d.replica_port, d.master_port);
    d.pid[2] = start_sentinel();
}

static void daemons_stop(void)
{
    for (int i = 0; i < 3; i++)
        if (d.pid[i] > 0) {
            kill(d.pid[i], SIGTERM);
            waitpid(d.pid[i], NULL, 0);
        }
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d.dir);
    if (d.dir[0] && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", d.dir);
}

TestSuite(sentinel_discovery, .init = daemons_start, .fini = daemons_stop, .timeout = 30);

/* A target that reaches Redis only through the sentinels: a dead one first, then ours. */
static redis_target sentinel_target(const char *master)
{
    redis_target t;
    calllog_error err = {0};
    cr_assert_eq(redis_url_parse("redis://127.0.0.1:1/0", &t, &err), 0);
    char list[96];
    snprintf(list, sizeof list, "127.0.0.1:%d,127.0.0.1:%d", free_port(), d.sentinel_port);
    cr_assert_eq(redis_sentinel_parse(list, &t.sentinels, &err), 0, "%s", err.message);
    snprintf(t.sentinels.master, sizeof t.sentinels.master, "%s", master);
    return t;
}

Test(sentinel_discovery, asks_in_turn_and_connects_to_the_master)
{
    redis_target t = sentinel_target(MASTER_NAME);
    char host[256];
    int port = 0;
    calllog_error err = {0};
    cr_assert_eq(redis_sentinel_ask(&t.sentinels, 0, 500, host, sizeof host, &port, &err), -1);
    cr_assert(strstr(err.message, "sentinel 127.0.0.1:"), "%s", err.message);
    cr_assert_eq(redis_sentinel_ask(&t.sentinels, 1, 500, host, sizeof host, &port, &err), 0, "%s",
                 err.message);
    cr_assert_eq(port, d.master_port);
    redisContext *c = redis_open(&t, 1000, &err);
    cr_assert_not_null(c, "%s", err.message);
    cr_assert_geq(redis_sentinel_master_replicas(c, &err), 0, "%s", err.message);
    redisReply *r = redisCommand(c, "SET unit-sentinel-key 1");
    cr_assert(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    redisFree(c);
}

Test(sentinel_discovery, unknown_master_name_is_an_error)
{
    redis_target t = sentinel_target("no-such-master");
    calllog_error err = {0};
    redisContext *c = redis_open(&t, 500, &err);
    cr_assert_null(c);
    cr_assert(strstr(err.message, "does not know master 'no-such-master'"), "%s", err.message);
}

Test(sentinel_discovery, role_tells_a_replica_and_readonly_drops_the_connection)
{
    redisContext *m = redisConnect("127.0.0.1", d.master_port);
    redisContext *c = redisConnect("127.0.0.1", d.replica_port);
    cr_assert(m && !m->err && c && !c->err);
    calllog_error err = {0};
    for (int i = 0; i < 100 && redis_sentinel_master_replicas(m, &err) < 1; i++) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    cr_assert_eq(redis_sentinel_master_replicas(m, &err), 1, "%s", err.message);
    cr_assert_eq(redis_sentinel_master_replicas(c, &err), -1);
    cr_assert(strstr(err.message, "not a master (role slave)"), "%s", err.message);
    redisReply *r = redisCommand(c, "SET unit-sentinel-key 1");
    cr_assert(redis_reply_failed(c, r, &err));
    cr_assert(strstr(err.message, "READONLY"), "%s", err.message);
    cr_assert_neq(c->err, 0, "a READONLY reply must make the connection unusable");
    freeReplyObject(r);
    redisFree(c);
    redisFree(m);
}
