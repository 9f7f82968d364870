/* test_redis_client — unit tests for common/redis_client (REDIS_URL, redis_open) and
 * common/keys (key names from CALLLOG_KEY_PREFIX).
 *
 * URL parsing and key building are pure. redis_open runs against two servers:
 *   - the shared test Redis at CALLLOG_TEST_REDIS_URL (tests/run.sh starts it through
 *     tests/lib/services.sh); without that variable those tests FAIL, saying so;
 *   - a redis-server this file starts itself with --requirepass on a free loopback port
 *     (suite `redis_auth`), to check AUTH with a password, user:password and a wrong
 *     password. It dies with the test process (PR_SET_PDEATHSIG) and is killed in .fini. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/keys.h"
#include "common/redis_client.h"
#include "tests/lib/free_port.h"

#define URL_ENV "CALLLOG_TEST_REDIS_URL"
#define AUTH_PASSWORD "s3cret-pw"

/* ---- helpers -------------------------------------------------------------------------------- */

/* Parses `url`, asserting success. */
static redis_target parse_ok(const char *url)
{
    redis_target t;
    calllog_error err = {0};
    cr_assert_eq(redis_url_parse(url, &t, &err), 0, "%s: %s", url, err.message);
    return t;
}

/* Parses `url`, asserting refusal; returns the reason. */
static void parse_bad(const char *url, calllog_error *err)
{
    redis_target t;
    error_clear(err);
    cr_assert_eq(redis_url_parse(url, &t, err), -1, "accepted %s", url ? url : "NULL");
    cr_assert(err->message[0] != '\0', "no reason for %s", url ? url : "NULL");
}

/* The shared test Redis; fails the test when CALLLOG_TEST_REDIS_URL is not set. */
static redis_target test_target(void)
{
    const char *u = getenv(URL_ENV);
    cr_assert(u && u[0],
              URL_ENV " is not set: these tests need a real Redis. Run `bash tests/run.sh`, or "
                      "`. tests/lib/services.sh && services_start` and run them again.");
    return parse_ok(u);
}

/* Runs a command on `c`, returning the reply (caller frees); asserts a reply came. */
static redisReply *cmd(redisContext *c, const char *fmt, const char *arg)
{
    redisReply *r = redisCommand(c, fmt, arg);
    cr_assert_not_null(r, "no reply to %s: %s", fmt, c->errstr);
    return r;
}

/* ---- URL parsing ---------------------------------------------------------------------------- */

Test(redis_url, host_port_db)
{
    redis_target t = parse_ok("redis://127.0.0.1:6380/3");
    cr_assert_str_eq(t.host, "127.0.0.1");
    cr_assert_eq(t.port, 6380);
    cr_assert_eq(t.db, 3);
    cr_assert_str_eq(t.user, "");
    cr_assert_str_eq(t.password, "");
}

Test(redis_url, defaults)
{
    redis_target t = parse_ok("redis://redis.internal");
    cr_assert_str_eq(t.host, "redis.internal");
    cr_assert_eq(t.port, 6379);
    cr_assert_eq(t.db, 0);
    t = parse_ok("redis://redis.internal/");
    cr_assert_eq(t.db, 0);
    cr_assert_eq(t.port, 6379);
    t = parse_ok("redis://127.0.0.1:6379/0"); /* the documented default */
    cr_assert_eq(t.port, 6379);
}

Test(redis_url, password_only)
{
    redis_target t = parse_ok("redis://:hunter2@cache:6390/1");
    cr_assert_str_eq(t.user, "");
    cr_assert_str_eq(t.password, "hunter2");
    cr_assert_str_eq(t.host, "cache");
    cr_assert_eq(t.port, 6390);
    cr_assert_eq(t.db, 1);
    t = parse_ok("redis://hunter2@cache"); /* no colon: the whole userinfo is the password */
    cr_assert_str_eq(t.user, "");
    cr_assert_str_eq(t.password, "hunter2");
    cr_assert_str_eq(t.host, "cache");
}

Test(redis_url, user_and_password)
{
    redis_target t = parse_ok("redis://calllog:p4ss:word@10.0.0.5:7000/15");
    cr_assert_str_eq(t.user, "calllog");
    cr_assert_str_eq(t.password, "p4ss:word", "only the first colon separates the user");
    cr_assert_str_eq(t.host, "10.0.0.5");
    cr_assert_eq(t.port, 7000);
    cr_assert_eq(t.db, 15);
}

Test(redis_url, ipv6_literals)
{
    redis_target t = parse_ok("redis://[::1]:6380/2");
    cr_assert_str_eq(t.host, "::1");
    cr_assert_eq(t.port, 6380);
    cr_assert_eq(t.db, 2);
    t = parse_ok("redis://[2001:db8::7]");
    cr_assert_str_eq(t.host, "2001:db8::7");
    cr_assert_eq(t.port, 6379);
    t = parse_ok("redis://:pw@[fe80::1]:1/0");
    cr_assert_str_eq(t.host, "fe80::1");
    cr_assert_str_eq(t.password, "pw");
    cr_assert_eq(t.port, 1);
}

Test(redis_url, port_bounds)
{
    cr_assert_eq(parse_ok("redis://h:1").port, 1);
    cr_assert_eq(parse_ok("redis://h:65535").port, 65535);
}

Test(redis_url, refusals)
{
    const char *bad[] = {
        NULL,
        "",
        "127.0.0.1:6379",
        "http://127.0.0.1:6379",
        "rediss://127.0.0.1:6379",
        "redis://",
        "redis:///0",
        "redis://:6379",
        "redis://h:",
        "redis://h:0",
        "redis://h:65536",
        "redis://h:63x",
        "redis://h:-1",
        "redis://h/16",
        "redis://h/-1",
        "redis://h/1x",
        "redis://h/db",
        "redis://[::1",
        "redis://[::1]x",
        "redis://[::1]:",
        "redis://[]:6379",
        "redis://:pw@",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        calllog_error err;
        parse_bad(bad[i], &err);
    }
}

Test(redis_url, reasons_never_contain_the_password)
{
    const char *bad[] = {"redis://:hunter2@[::1", "redis://:hunter2@h:99999",
                         "redis://user:hunter2@h/77", "redis://:hunter2@"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        calllog_error err;
        parse_bad(bad[i], &err);
        cr_assert_null(strstr(err.message, "hunter2"), "%s -> %s", bad[i], err.message);
    }
    char url[600];
    calllog_error err = {0};
    snprintf(url, sizeof url, "redis://:%0300d@h", 7); /* 300-char password: too long */
    parse_bad(url, &err);
    cr_assert_null(strstr(err.message, "0000000"), "%s", err.message);
}

Test(redis_url, field_length_limits)
{
    char url[1200];
    calllog_error err = {0};
    /* password of 255 characters fits (256-byte field), 256 does not */
    snprintf(url, sizeof url, "redis://:%0255d@h", 1);
    cr_assert_eq(strlen(parse_ok(url).password), 255);
    snprintf(url, sizeof url, "redis://:%0256d@h", 1);
    parse_bad(url, &err);
    /* user of 127 fits, 128 does not */
    snprintf(url, sizeof url, "redis://%0127d:pw@h", 1);
    cr_assert_eq(strlen(parse_ok(url).user), 127);
    snprintf(url, sizeof url, "redis://%0128d:pw@h", 1);
    parse_bad(url, &err);
    /* host of 255 fits, 256 does not */
    snprintf(url, sizeof url, "redis://%0255d:1", 1);
    cr_assert_eq(strlen(parse_ok(url).host), 255);
    snprintf(url, sizeof url, "redis://%0256d:1", 1);
    parse_bad(url, &err);
}

/* Regression: a password containing '@' written as is, e.g. redis://:p@ss@h:6379, once
 * parsed as password "p" and host "ss@h" — and the connect error, which is logged, leaked
 * part of the password. The last '@' of the authority ends the userinfo. */
Test(redis_url, at_sign_in_password_does_not_leak_into_host)
{
    redis_target t;
    calllog_error err = {0};
    int rc = redis_url_parse("redis://:p@ss@h:6379", &t, &err);
    if (rc == 0) {
        cr_assert_str_eq(t.host, "h", "part of the password became the host");
        cr_assert_str_eq(t.password, "p@ss");
        cr_assert_eq(t.port, 6379);
    }
}

Test(redis_url, reparse_clears_previous_values)
{
    redis_target t;
    calllog_error err;
    cr_assert_eq(redis_url_parse("redis://u:p@h:1/3", &t, &err), 0);
    cr_assert_eq(redis_url_parse("redis://other", &t, &err), 0);
    cr_assert_str_eq(t.user, "");
    cr_assert_str_eq(t.password, "");
    cr_assert_eq(t.db, 0);
    cr_assert_eq(t.port, 6379);
}

/* ---- keys ----------------------------------------------------------------------------------- */

Test(keys, default_prefix)
{
    calllog_keys k;
    cr_assert_eq(keys_build("calllog", &k), 0);
    cr_assert_str_eq(k.events, "calllog:events");
    cr_assert_str_eq(k.retry, "calllog:retry");
    cr_assert_str_eq(k.dead, "calllog:dead");
    cr_assert_str_eq(k.ratelimit, "calllog:ratelimit:rdstation");
    cr_assert_str_eq(k.cache, "calllog:cache:");
    cr_assert_str_eq(k.oauth, "calllog:oauth:rdstation");
    cr_assert_str_eq(k.reconcile, "calllog:reconcile");
    cr_assert_str_eq(k.reconcile_leader, "calllog:reconcile:leader");
    cr_assert_str_eq(k.reconcile_enqueued, "calllog:reconcile:enqueued");
    cr_assert_str_eq(k.rdstation_plan, "calllog:rdstation:plan");
    cr_assert_str_eq(KEYS_GROUP, "calllog-workers");
}

Test(keys, cluster_hash_tag_prefix)
{
    calllog_keys k;
    cr_assert_eq(keys_build("{calllog}", &k), 0);
    cr_assert_str_eq(k.events, "{calllog}:events");
    cr_assert_str_eq(k.retry, "{calllog}:retry");
    cr_assert_str_eq(k.dead, "{calllog}:dead");
    cr_assert_str_eq(k.ratelimit, "{calllog}:ratelimit:rdstation");
    cr_assert_str_eq(k.cache, "{calllog}:cache:");
    cr_assert_str_eq(k.oauth, "{calllog}:oauth:rdstation");
    cr_assert_str_eq(k.rdstation_plan, "{calllog}:rdstation:plan");
}

Test(keys, refusals)
{
    calllog_keys k;
    cr_assert_eq(keys_build(NULL, &k), -1);
    cr_assert_eq(keys_build("", &k), -1);
    cr_assert_eq(keys_build("call log", &k), -1);
    cr_assert_eq(keys_build("calllog\t", &k), -1);
    cr_assert_eq(keys_build("call\nlog", &k), -1);
    cr_assert_eq(keys_build("call\x01log", &k), -1);
}

Test(keys, longest_prefix_fits_every_key)
{
    char prefix[KEYS_MAX];
    calllog_keys k;
    memset(prefix, 'p', KEYS_MAX - 32);
    prefix[KEYS_MAX - 32] = '\0';
    cr_assert_eq(keys_build(prefix, &k), 0);
    cr_assert_eq(strlen(k.ratelimit), KEYS_MAX - 32 + strlen(":ratelimit:rdstation"));
    cr_assert(strncmp(k.oauth + KEYS_MAX - 32, ":oauth:rdstation", 17) == 0, "truncated: %s",
              k.oauth);
    cr_assert(strcmp(k.reconcile_enqueued + KEYS_MAX - 32, ":reconcile:enqueued") == 0,
              "truncated: %s", k.reconcile_enqueued);
    cr_assert(strcmp(k.rdstation_plan + KEYS_MAX - 32, ":rdstation:plan") == 0, "truncated: %s",
              k.rdstation_plan);
    prefix[KEYS_MAX - 32] = 'p';
    prefix[KEYS_MAX - 31] = '\0';
    cr_assert_eq(keys_build(prefix, &k), -1);
}

/* ---- redis_reply_failed --------------------------------------------------------------------- */

Test(redis_reply_failed, classifies_replies)
{
    calllog_error err = {0};
    cr_assert_eq(redis_reply_failed(NULL, NULL, &err), 1);
    cr_assert_str_eq(err.message, "no reply");
    redisReply e = {.type = REDIS_REPLY_ERROR, .str = "ERR boom", .len = 8};
    cr_assert_eq(redis_reply_failed(NULL, &e, &err), 1);
    cr_assert_str_eq(err.message, "ERR boom");
    cr_assert_eq(redis_reply_failed(NULL, &e, NULL), 1);
    redisReply ok = {.type = REDIS_REPLY_STATUS, .str = "OK", .len = 2};
    error_clear(&err);
    cr_assert_eq(redis_reply_failed(NULL, &ok, &err), 0);
    cr_assert_str_eq(err.message, "");
    redisReply nil = {.type = REDIS_REPLY_NIL};
    cr_assert_eq(redis_reply_failed(NULL, &nil, &err), 0);
}

/* ---- redis_open against the shared test Redis ----------------------------------------------- */

Test(redis_open, connects_to_test_redis)
{
    redis_target t = test_target();
    calllog_error err = {0};
    redisContext *c = redis_open(&t, 2000, &err);
    cr_assert_not_null(c, "%s", err.message);
    redisReply *r = cmd(c, "PING", NULL);
    cr_assert_eq(r->type, REDIS_REPLY_STATUS);
    cr_assert_str_eq(r->str, "PONG");
    freeReplyObject(r);
    redisFree(c);
}

Test(redis_eval, runs_scripts_with_many_arguments_and_reports_errors)
{
    redis_target t = test_target();
    calllog_error err = {0};
    redisContext *c = redis_open(&t, 2000, &err);
    cr_assert_not_null(c, "%s", err.message);
    const char *args[200];
    for (int i = 0; i < 200; i++)
        args[i] = i % 2 ? "x" : "calllog-test:eval";
    redisReply *r = redis_eval(c, "return #ARGV + #KEYS * 1000", 1, 200, args, &err);
    cr_assert_not_null(r, "%s", err.message);
    cr_expect_eq(r->integer, 1199, "one key and 199 arguments");
    freeReplyObject(r);
    r = redis_eval(c, "return redis.error_reply('nope')", 0, 0, args, &err);
    cr_expect_null(r);
    cr_expect_not_null(strstr(err.message, "nope"), "%s", err.message);
    redisFree(c);
}

Test(redis_open, selects_the_database)
{
    redis_target t = test_target();
    t.db = 7;
    char key[96];
    calllog_error err = {0};
    snprintf(key, sizeof key, "calllog-unit:redis_client:%d:%ld", (int)getpid(), (long)time(NULL));
    redisContext *c7 = redis_open(&t, 2000, &err);
    cr_assert_not_null(c7, "%s", err.message);
    t.db = 0;
    redisContext *c0 = redis_open(&t, 2000, &err);
    cr_assert_not_null(c0, "%s", err.message);

    redisReply *r = redisCommand(c7, "SET %s here EX 60", key);
    cr_assert(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    r = cmd(c0, "EXISTS %s", key);
    cr_assert_eq(r->integer, 0, "the key landed in db 0, so SELECT 7 was not sent");
    freeReplyObject(r);
    r = cmd(c7, "EXISTS %s", key);
    cr_assert_eq(r->integer, 1);
    freeReplyObject(r);
    r = cmd(c7, "DEL %s", key);
    freeReplyObject(r);
    redisFree(c7);
    redisFree(c0);
}

Test(redis_open, unreachable_port_is_reported)
{
    redis_target t = parse_ok("redis://127.0.0.1:1/0");
    t.port = free_port();
    char want[64];
    calllog_error err = {0};
    redisContext *c = redis_open(&t, 1000, &err);
    cr_assert_null(c);
    snprintf(want, sizeof want, "cannot connect to 127.0.0.1:%d", t.port);
    cr_assert(strstr(err.message, want) != NULL, "%s", err.message);
}

/* ---- redis_open against a password-protected redis-server started here ---------------------- */

static pid_t auth_pid = -1;
static int auth_port;
static char auth_dir[64];

/* Starts `redis-server --requirepass` on a free port and waits until it accepts TCP. */
static void auth_server_start(void)
{
    snprintf(auth_dir, sizeof auth_dir, "/tmp/calllog-test-redis-XXXXXX");
    cr_assert_not_null(mkdtemp(auth_dir));
    auth_port = free_port();
    char port[16], logfile[96];
    snprintf(port, sizeof port, "%d", auth_port);
    snprintf(logfile, sizeof logfile, "%s/redis.log", auth_dir);
    auth_pid = fork();
    cr_assert(auth_pid >= 0);
    if (auth_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", auth_dir, "--requirepass", AUTH_PASSWORD, "--logfile",
               logfile, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) { /* up to 10 s for the server to come up */
        redisContext *c = redisConnect("127.0.0.1", auth_port);
        int up = c && !c->err;
        redisFree(c);
        if (up)
            return;
        int status;
        cr_assert_eq(waitpid(auth_pid, &status, WNOHANG), 0,
                     "redis-server exited early (is it installed? exit status %d)",
                     WEXITSTATUS(status));
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    cr_assert_fail("redis-server with requirepass did not come up on port %d", auth_port);
}

/* Stops the server and removes its directory. */
static void auth_server_stop(void)
{
    if (auth_pid > 0) {
        kill(auth_pid, SIGTERM);
        waitpid(auth_pid, NULL, 0);
        auth_pid = -1;
    }
    if (auth_dir[0]) {
        char logfile[96];
        snprintf(logfile, sizeof logfile, "%s/redis.log", auth_dir);
        unlink(logfile);
        rmdir(auth_dir);
    }
}

TestSuite(redis_auth, .init = auth_server_start, .fini = auth_server_stop, .timeout = 30);

/* redis_open on the auth server with userinfo `ui` ("" for none). */
static redisContext *auth_open(const char *ui, calllog_error *err)
{
    char url[256];
    snprintf(url, sizeof url, "redis://%s127.0.0.1:%d/0", ui, auth_port);
    redis_target t = parse_ok(url);
    error_clear(err);
    return redis_open(&t, 2000, err);
}

/* Asserts `c` answers PING with PONG. */
static void assert_pong(redisContext *c)
{
    redisReply *r = cmd(c, "PING", NULL);
    cr_assert_eq(r->type, REDIS_REPLY_STATUS, "PING: %s", r->str ? r->str : "?");
    cr_assert_str_eq(r->str, "PONG");
    freeReplyObject(r);
}

Test(redis_auth, password_forms_authenticate)
{
    const char *forms[] = {":" AUTH_PASSWORD "@", AUTH_PASSWORD "@", "default:" AUTH_PASSWORD "@"};
    for (size_t i = 0; i < sizeof forms / sizeof *forms; i++) {
        calllog_error err;
        redisContext *c = auth_open(forms[i], &err);
        cr_assert_not_null(c, "%s: %s", forms[i], err.message);
        assert_pong(c);
        redisFree(c);
    }
}

Test(redis_auth, password_and_db_together)
{
    char url[256];
    calllog_error err = {0};
    snprintf(url, sizeof url, "redis://:%s@127.0.0.1:%d/9", AUTH_PASSWORD, auth_port);
    redis_target t = parse_ok(url);
    redisContext *c = redis_open(&t, 2000, &err);
    cr_assert_not_null(c, "%s", err.message);
    redisReply *r = cmd(c, "CLIENT INFO", NULL);
    cr_assert_eq(r->type, REDIS_REPLY_STRING);
    cr_assert(strstr(r->str, " db=9 ") != NULL, "%s", r->str);
    freeReplyObject(r);
    redisFree(c);
}

Test(redis_auth, wrong_password_fails_without_echoing_it)
{
    calllog_error err;
    redisContext *c = auth_open(":not-the-password@", &err);
    cr_assert_null(c);
    cr_assert(strstr(err.message, "WRONGPASS") != NULL ||
                  strstr(err.message, "invalid password") != NULL,
              "%s", err.message);
    cr_assert_null(strstr(err.message, "not-the-password"), "%s", err.message);
    c = auth_open("default:not-the-password@", &err);
    cr_assert_null(c);
    cr_assert_null(strstr(err.message, "not-the-password"), "%s", err.message);
}

Test(redis_auth, acl_user_and_password)
{
    calllog_error err;
    redisContext *admin = auth_open(":" AUTH_PASSWORD "@", &err);
    cr_assert_not_null(admin, "%s", err.message);
    redisReply *r = redisCommand(admin, "ACL SETUSER alice on >wonderland ~* +@all");
    cr_assert(r && r->type == REDIS_REPLY_STATUS, "ACL SETUSER failed");
    freeReplyObject(r);
    redisFree(admin);

    redisContext *c = auth_open("alice:wonderland@", &err);
    cr_assert_not_null(c, "%s", err.message);
    r = cmd(c, "ACL WHOAMI", NULL);
    cr_assert_str_eq(r->str, "alice");
    freeReplyObject(r);
    redisFree(c);

    cr_assert_null(auth_open("alice:" AUTH_PASSWORD "@", &err),
                   "alice must not get in with the default user's password");
}

Test(redis_auth, no_password_connects_but_commands_are_refused)
{
    /* redis_open only sends AUTH when the URL has a password; the server then refuses
     * commands, which callers see on their first command. */
    calllog_error err;
    redisContext *c = auth_open("", &err);
    cr_assert_not_null(c, "%s", err.message);
    redisReply *r = cmd(c, "PING", NULL);
    cr_assert_eq(r->type, REDIS_REPLY_ERROR);
    cr_assert(strstr(r->str, "NOAUTH") != NULL, "%s", r->str);
    freeReplyObject(r);
    redisFree(c);
}
