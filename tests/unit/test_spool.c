/* test_spool — unit tests for ingest/spool (the durable local queue used while Redis is down).
 *
 * Every test works in its own mkdtemp directory, removed afterwards. A "collector" sink
 * records what it is handed and can be told to take only the first `take` records of a
 * batch, or at most `budget` records in total, the way a Redis pipeline that breaks halfway
 * would. Covered: append/depth/drain order, records handed over without their newline,
 * partial sinks, resuming at the stored offset after a reopen (no duplicate, no loss), a
 * torn last record dropped on open, the size limit, the directory lock, batches larger
 * than one sink call, a record larger than the read buffer, and the files being emptied
 * once everything is delivered. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ingest/spool.h"
#include "tests/lib/scratch_dir.h"

#define MAX_SEEN 2048
#define BIG (64L * 1024 * 1024)

static char dir[64];

/* Creates the test's directory. */
static void setup(void)
{
    cr_assert_eq(scratch_dir_make(dir, sizeof dir, "spool"), 0);
}

/* Removes the directory and what the spool left in it. */
static void teardown(void)
{
    scratch_dir_remove(dir);
}

TestSuite(spool, .init = setup, .fini = teardown);

/* What a sink saw, and how much it accepts. */
typedef struct collector {
    char *seen[MAX_SEEN];
    size_t nseen;
    size_t calls;
    size_t take;   /* per call: take at most this many (0 = all) */
    long budget;   /* in total: take at most this many (-1 = unlimited) */
    size_t last_n; /* size of the last batch offered */
} collector;

static void collector_init(collector *col)
{
    memset(col, 0, sizeof *col);
    col->budget = -1;
}

static void collector_free(collector *col)
{
    for (size_t i = 0; i < col->nseen; i++)
        free(col->seen[i]);
    col->nseen = 0;
}

/* spool_sink: copies the records it accepts. */
static size_t collect(void *arg, char *const *records, size_t n)
{
    collector *col = arg;
    col->calls++;
    col->last_n = n;
    size_t ok = n;
    if (col->take && ok > col->take)
        ok = col->take;
    if (col->budget >= 0 && (long)ok > col->budget)
        ok = (size_t)col->budget;
    for (size_t i = 0; i < ok && col->nseen < MAX_SEEN; i++) {
        char *copy = strdup(records[i]);
        if (copy == NULL) { /* out of memory: this record and the rest stay in the spool */
            ok = i;
            break;
        }
        col->seen[col->nseen++] = copy;
    }
    if (col->budget >= 0)
        col->budget -= (long)ok;
    return ok;
}

/* Opens the test's spool; asserts success. */
static spool *open_spool(long max_bytes)
{
    calllog_error err = {0};
    spool *s = spool_open(dir, max_bytes, &err);
    cr_assert_not_null(s, "%s", err.message);
    return s;
}

/* Appends a NUL-terminated record; asserts success. */
static void append(spool *s, const char *rec)
{
    cr_assert_eq(spool_append(s, rec, strlen(rec)), 0, "append %s: %s", rec, strerror(errno));
}

/* Size of `dir/name` in bytes, -1 when absent. */
static long file_size(const char *name)
{
    char path[128];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* Appends raw bytes to `dir/events.spool` behind the spool's back. */
static void append_raw(const char *bytes)
{
    char path[128];
    snprintf(path, sizeof path, "%s/events.spool", dir);
    int fd = open(path, O_WRONLY | O_APPEND);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, bytes, strlen(bytes)), (ssize_t)strlen(bytes));
    close(fd);
}

/* Asserts the collector saw exactly `want[0..n)`. */
static void assert_seen(const collector *col, const char *const *want, size_t n)
{
    cr_assert_eq(col->nseen, n, "saw %zu records, want %zu", col->nseen, n);
    for (size_t i = 0; i < n; i++)
        cr_assert_str_eq(col->seen[i], want[i], "record %zu", i);
}

/* ---- tests ---------------------------------------------------------------------------------- */

Test(spool, fresh_spool_is_empty)
{
    spool *s = open_spool(BIG);
    cr_assert_eq(spool_depth(s), 0);
    cr_assert_eq(spool_writable(s, NULL, 0), 1);
    collector col;
    collector_init(&col);
    cr_assert_eq(spool_drain(s, collect, &col), 0);
    cr_assert_eq(col.nseen, 0);
    spool_close(s);
}

Test(spool, creates_missing_directory)
{
    char sub[96];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    calllog_error err = {0};
    spool *s = spool_open(sub, BIG, &err);
    cr_assert_not_null(s, "%s", err.message);
    append(s, "x");
    spool_close(s);
    char path[128];
    snprintf(path, sizeof path, "%s/events.spool", sub);
    cr_assert_eq(access(path, F_OK), 0);
    scratch_dir_remove(sub);
}

Test(spool, append_depth_drain_in_order)
{
    spool *s = open_spool(BIG);
    const char *recs[] = {"{\"call_sid\":\"CA1\"}", "second record", "third"};
    for (size_t i = 0; i < 3; i++) {
        append(s, recs[i]);
        cr_assert_eq(spool_depth(s), i + 1);
    }
    cr_assert_eq(file_size("events.spool"),
                 (long)(strlen(recs[0]) + strlen(recs[1]) + strlen(recs[2]) + 3),
                 "one line per record, newline-terminated");
    collector col;
    collector_init(&col);
    cr_assert_eq(spool_drain(s, collect, &col), 3);
    assert_seen(&col, recs, 3);
    cr_assert_eq(spool_depth(s), 0);
    cr_assert_eq(file_size("events.spool"), 0, "emptied once everything is delivered");
    collector_free(&col);

    /* and it keeps working after the reset */
    append(s, "fourth");
    collector_init(&col);
    cr_assert_eq(spool_drain(s, collect, &col), 1);
    const char *want[] = {"fourth"};
    assert_seen(&col, want, 1);
    collector_free(&col);
    spool_close(s);
}

Test(spool, records_reach_the_sink_byte_exact)
{
    spool *s = open_spool(BIG);
    const char rec[] = "a b\tc\r\"d\"\\e\xc3\xa3";
    append(s, rec);
    append(s, "");
    collector col;
    collector_init(&col);
    cr_assert_eq(spool_drain(s, collect, &col), 2);
    const char *want[] = {rec, ""};
    assert_seen(&col, want, 2);
    collector_free(&col);
    spool_close(s);
}

Test(spool, sink_taking_part_of_a_batch)
{
    spool *s = open_spool(BIG);
    const char *recs[] = {"r1", "r2", "r3", "r4", "r5"};
    for (size_t i = 0; i < 5; i++)
        append(s, recs[i]);
    collector col;
    collector_init(&col);
    col.take = 2;
    cr_assert_eq(spool_drain(s, collect, &col), 2, "drain stops when the sink stops taking");
    cr_assert_eq(col.last_n, 5, "the whole batch was offered");
    cr_assert_eq(spool_depth(s), 3);
    assert_seen(&col, recs, 2);

    col.take = 0;
    cr_assert_eq(spool_drain(s, collect, &col), 3);
    assert_seen(&col, recs, 5);
    cr_assert_eq(spool_depth(s), 0);
    collector_free(&col);
    spool_close(s);
}

Test(spool, sink_taking_nothing)
{
    spool *s = open_spool(BIG);
    append(s, "a");
    append(s, "b");
    collector col;
    collector_init(&col);
    col.budget = 0;
    cr_assert_eq(spool_drain(s, collect, &col), 0);
    cr_assert_eq(spool_depth(s), 2);
    cr_assert_eq(file_size("events.spool"), 4, "nothing delivered, nothing cut");
    col.budget = -1;
    cr_assert_eq(spool_drain(s, collect, &col), 2);
    const char *want[] = {"a", "b"};
    assert_seen(&col, want, 2);
    collector_free(&col);
    spool_close(s);
}

Test(spool, reopen_after_partial_drain_resumes_at_offset)
{
    const char *recs[] = {"e1", "e2", "e3", "e4", "e5", "e6"};
    spool *s = open_spool(BIG);
    for (size_t i = 0; i < 6; i++)
        append(s, recs[i]);
    collector col;
    collector_init(&col);
    col.budget = 2;
    cr_assert_eq(spool_drain(s, collect, &col), 2);
    spool_close(s);

    s = open_spool(BIG);
    cr_assert_eq(spool_depth(s), 4, "depth after reopen counts only undelivered records");
    append(s, "e7"); /* appended after the reopen: delivered after the older ones */
    col.budget = -1;
    cr_assert_eq(spool_drain(s, collect, &col), 5);
    const char *want[] = {"e1", "e2", "e3", "e4", "e5", "e6", "e7"};
    assert_seen(&col, want, 7); /* no duplicate of e1/e2, nothing lost */
    cr_assert_eq(spool_depth(s), 0);
    spool_close(s);
    collector_free(&col);

    /* a third open finds nothing left */
    s = open_spool(BIG);
    cr_assert_eq(spool_depth(s), 0);
    collector_init(&col);
    cr_assert_eq(spool_drain(s, collect, &col), 0);
    spool_close(s);
}

Test(spool, torn_last_record_is_dropped_on_open)
{
    spool *s = open_spool(BIG);
    append(s, "whole-1");
    append(s, "whole-2");
    spool_close(s);
    append_raw("{\"torn\":tr"); /* a crash in the middle of a write: no newline */

    s = open_spool(BIG);
    cr_assert_eq(spool_depth(s), 2);
    cr_assert_eq(file_size("events.spool"), (long)strlen("whole-1\nwhole-2\n"),
                 "the torn bytes are cut from the file");
    append(s, "after"); /* must not be glued to the torn bytes */
    collector col;
    collector_init(&col);
    cr_assert_eq(spool_drain(s, collect, &col), 3);
    const char *want[] = {"whole-1", "whole-2", "after"};
    assert_seen(&col, want, 3);
    collector_free(&col);
    spool_close(s);
}

Test(spool, torn_record_after_partial_drain)
{
    spool *s = open_spool(BIG);
    append(s, "one");
    append(s, "two");
    append(s, "three");
    collector col;
    collector_init(&col);
    col.budget = 1;
    cr_assert_eq(spool_drain(s, collect, &col), 1);
    spool_close(s);
    append_raw("fou");

    s = open_spool(BIG);
    cr_assert_eq(spool_depth(s), 2);
    col.budget = -1;
    cr_assert_eq(spool_drain(s, collect, &col), 2);
    const char *want[] = {"one", "two", "three"};
    assert_seen(&col, want, 3);
    collector_free(&col);
    spool_close(s);
}

Test(spool, only_torn_bytes_give_an_empty_spool)
{
    spool *s = open_spool(BIG);
    spool_close(s);
    append_raw("no newline at all");
    s = open_spool(BIG);
    cr_assert_eq(spool_depth(s), 0);
    cr_assert_eq(file_size("events.spool"), 0);
    spool_close(s);
}

Test(spool, full_spool_refuses_appends)
{
    /* two 10-byte records take 22 bytes with their newlines */
    spool *s = open_spool(22);
    append(s, "0123456789");
    cr_assert_eq(spool_writable(s, NULL, 0), 1);
    append(s, "abcdefghij");
    cr_assert_eq(spool_writable(s, NULL, 0), 0, "no byte left");
    errno = 0;
    cr_assert_eq(spool_append(s, "x", 1), -1);
    cr_assert_eq(errno, ENOSPC);
    cr_assert_eq(spool_depth(s), 2, "a refused record is not counted");
    cr_assert_eq(file_size("events.spool"), 22, "a refused record is not written");

    /* draining frees the space again */
    collector col;
    collector_init(&col);
    cr_assert_eq(spool_drain(s, collect, &col), 2);
    cr_assert_eq(spool_writable(s, NULL, 0), 1);
    append(s, "x");
    collector_free(&col);
    spool_close(s);
}

Test(spool, record_larger_than_the_room_left)
{
    spool *s = open_spool(20);
    append(s, "0123456789"); /* 11 bytes used, 9 left */
    cr_assert_eq(spool_writable(s, NULL, 0), 1);
    cr_assert_eq(spool_append(s, "123456789", 9), -1, "9 bytes + newline do not fit in 9");
    cr_assert_eq(spool_append(s, "12345678", 8), 0, "8 bytes + newline fit exactly");
    cr_assert_eq(spool_depth(s), 2);
    spool_close(s);
}

Test(spool, second_open_of_the_same_directory_fails)
{
    spool *s = open_spool(BIG);
    calllog_error err = {0};
    spool *t = spool_open(dir, BIG, &err);
    cr_assert_null(t, "two spools on one directory");
    cr_assert(strstr(err.message, "lock") != NULL, "%s", err.message);
    cr_assert(strstr(err.message, dir) != NULL, "%s", err.message);
    spool_close(s);

    /* closing releases the lock */
    t = spool_open(dir, BIG, &err);
    cr_assert_not_null(t, "%s", err.message);
    spool_close(t);
}

Test(spool, unusable_directory_is_reported)
{
    char path[96];
    calllog_error err = {0};
    snprintf(path, sizeof path, "%s/file", dir);
    int fd = open(path, O_WRONLY | O_CREAT, 0600);
    cr_assert(fd >= 0);
    close(fd);
    char sub[128];
    snprintf(sub, sizeof sub, "%s/inside", path); /* a directory under a regular file */
    cr_assert_null(spool_open(sub, BIG, &err));
    cr_assert(strstr(err.message, sub) != NULL, "%s", err.message);
    cr_expect_eq(err.code, CALLLOG_INVALID, "a path under a file is a bad setting, not an outage");
    cr_assert_null(spool_open(path, BIG, &err)); /* the path is the regular file itself */
    cr_expect_eq(err.code, CALLLOG_INVALID, "%s", err.message);
    unlink(path);
}

Test(spool, bad_arguments_are_invalid)
{
    calllog_error err = {0};
    char longname[5000];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    cr_expect_null(spool_open(NULL, BIG, &err));
    cr_expect_eq(err.code, CALLLOG_INVALID);
    cr_expect_null(spool_open("", BIG, &err));
    cr_expect_eq(err.code, CALLLOG_INVALID);
    cr_expect_null(spool_open(dir, 0, &err));
    cr_expect_eq(err.code, CALLLOG_INVALID);
    cr_expect_null(spool_open(longname, BIG, &err));
    cr_expect_eq(err.code, CALLLOG_INVALID, "%s", err.message);
}

Test(spool, more_records_than_one_batch)
{
    enum { N = 1203 };
    spool *s = open_spool(BIG);
    char rec[32];
    for (int i = 0; i < N; i++) {
        snprintf(rec, sizeof rec, "rec-%04d", i);
        append(s, rec);
    }
    cr_assert_eq(spool_depth(s), N);
    collector col;
    collector_init(&col);
    cr_assert_eq(spool_drain(s, collect, &col), N);
    cr_assert(col.calls >= 3, "batches are bounded: %zu calls", col.calls);
    cr_assert_eq(col.nseen, N);
    for (int i = 0; i < N; i++) {
        snprintf(rec, sizeof rec, "rec-%04d", i);
        cr_assert_str_eq(col.seen[i], rec);
    }
    collector_free(&col);
    spool_close(s);
}

Test(spool, partial_drain_across_batches_then_reopen)
{
    enum { N = 700, FIRST = 613 };
    spool *s = open_spool(BIG);
    char rec[32];
    for (int i = 0; i < N; i++) {
        snprintf(rec, sizeof rec, "r%d", i);
        append(s, rec);
    }
    collector col;
    collector_init(&col);
    col.budget = FIRST; /* the second batch is cut in the middle */
    cr_assert_eq(spool_drain(s, collect, &col), FIRST);
    cr_assert_eq(spool_depth(s), N - FIRST);
    spool_close(s);

    s = open_spool(BIG);
    cr_assert_eq(spool_depth(s), N - FIRST);
    col.budget = -1;
    cr_assert_eq(spool_drain(s, collect, &col), N - FIRST);
    cr_assert_eq(col.nseen, N);
    for (int i = 0; i < N; i++) {
        snprintf(rec, sizeof rec, "r%d", i);
        cr_assert_str_eq(col.seen[i], rec);
    }
    collector_free(&col);
    spool_close(s);
}

Test(spool, record_larger_than_the_read_buffer)
{
    size_t big = (3u << 20) / 2; /* 1.5 MiB, more than the 1 MiB read chunk */
    char *rec = malloc(big + 1);
    cr_assert_not_null(rec);
    for (size_t i = 0; i < big; i++)
        rec[i] = (char)('a' + i % 26);
    rec[big] = '\0';
    spool *s = open_spool(BIG);
    append(s, "small-before");
    cr_assert_eq(spool_append(s, rec, big), 0);
    append(s, "small-after");
    collector col;
    collector_init(&col);
    cr_assert_eq(spool_drain(s, collect, &col), 3);
    cr_assert_eq(col.nseen, 3);
    cr_assert_str_eq(col.seen[0], "small-before");
    cr_assert_eq(strlen(col.seen[1]), big);
    cr_assert(memcmp(col.seen[1], rec, big) == 0);
    cr_assert_str_eq(col.seen[2], "small-after");
    collector_free(&col);
    free(rec);
    spool_close(s);
}

Test(spool, bad_offset_file_replays_from_the_start)
{
    /* An offset beyond the file (e.g. a hand-edited or foreign file) is not trusted:
     * delivery is at least once, so everything is replayed rather than skipped. */
    spool *s = open_spool(BIG);
    append(s, "a");
    append(s, "b");
    spool_close(s);
    char path[128];
    snprintf(path, sizeof path, "%s/events.offset", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("99999\n", f);
    fclose(f);
    s = open_spool(BIG);
    cr_assert_eq(spool_depth(s), 2);
    collector col;
    collector_init(&col);
    cr_assert_eq(spool_drain(s, collect, &col), 2);
    const char *want[] = {"a", "b"};
    assert_seen(&col, want, 2);
    collector_free(&col);
    spool_close(s);
}

/* Regression: an offset beyond the file (left by a crash between emptying the spool and
 * rewriting the offset) was reset in memory only; after more appends and a restart the
 * stale offset was trusted and acknowledged events were skipped. */
Test(spool, stale_offset_is_not_trusted_after_more_appends)
{
    spool *s = open_spool(BIG);
    append(s, "a");
    append(s, "b");
    spool_close(s);
    char path[128];
    snprintf(path, sizeof path, "%s/events.offset", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("00000000000000000030\n", f); /* as left by a crash inside spool_reset_if_empty */
    fclose(f);

    s = open_spool(BIG);
    cr_assert_eq(spool_depth(s), 2);
    const char *more[] = {"record-number-01", "record-number-02", "record-number-03",
                          "record-number-04"};
    for (size_t i = 0; i < 4; i++)
        append(s, more[i]); /* 4 + 4 * 17 = 72 bytes: past the stale offset of 30 */
    spool_close(s);         /* restart before any drain */

    s = open_spool(BIG);
    size_t depth = spool_depth(s);
    collector col;
    collector_init(&col);
    long delivered = spool_drain(s, collect, &col);
    spool_close(s); /* before asserting, so a failure leaks nothing */
    cr_assert_eq(depth, 6, "acknowledged records were skipped after a restart: depth %zu", depth);
    cr_assert_eq(delivered, 6);
    const char *want[] = {"a", "b", more[0], more[1], more[2], more[3]};
    assert_seen(&col, want, 6);
    collector_free(&col);
}

Test(spool, close_accepts_null)
{
    spool_close(NULL);
}
