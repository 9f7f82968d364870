/* redis_fixture — connections to the test Redis and unique key names (see redis_fixture.h). */
#include "tests/lib/redis_fixture.h"

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

redisContext *redis_fixture_connect(void)
{
    const char *u = getenv(REDIS_FIXTURE_URL_ENV);
    cr_assert(u && u[0], REDIS_FIXTURE_URL_ENV
              " is not set: these tests need a real Redis. Run `bash tests/run.sh`, or "
              "`. tests/lib/services.sh && services_start` and run them again.");
    redis_target t;
    calllog_error err = {0};
    cr_assert_eq(redis_url_parse(u, &t, &err), 0, "%s: %s", REDIS_FIXTURE_URL_ENV, err.message);
    redisContext *c = redis_open(&t, 5000, &err);
    cr_assert_not_null(c, "cannot connect to the test Redis: %s", err.message);
    return c;
}

void redis_fixture_name(char *out, size_t outlen, const char *suite)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(out, outlen, "calllog-unit:%s:%d:%lld%09ld", suite, (int)getpid(),
             (long long)ts.tv_sec, ts.tv_nsec);
}

void redis_fixture_do(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    cr_assert(r && r->type != REDIS_REPLY_ERROR, "%s: %s", fmt, r ? r->str : c->errstr);
    freeReplyObject(r);
}
