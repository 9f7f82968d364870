/* spool — durable local queue used while Redis is unreachable (see spool.h).
 *
 * Layout: `events.spool` holds newline-terminated records; `events.offset` holds the
 * byte offset of the first record not yet delivered (absent or 0 = from the start).
 * One mutex serializes appends and drains, which keeps records in acknowledgement
 * order. Appends pay one fdatasync each; an outage is the rare path. */
#include "ingest/spool.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buffer.h"
#include "common/log.h"

#define SPOOL_BATCH 500
#define SPOOL_READ_CHUNK (1 << 20)

struct spool {
    pthread_mutex_t lock;
    int fd;        /* events.spool, O_APPEND */
    int offset_fd; /* events.offset */
    int lock_fd;   /* the directory lock */
    long max_bytes;
    off_t size;     /* bytes in events.spool */
    off_t consumed; /* bytes already delivered */
    size_t depth;   /* records after `consumed` */
    char dir[4096];
};

/* Counts newline-terminated records in [from, to) of fd. */
static long count_records(int fd, off_t from, off_t to)
{
    char buf[65536];
    long n = 0;
    while (from < to) {
        size_t want = (size_t)(to - from) < sizeof buf ? (size_t)(to - from) : sizeof buf;
        ssize_t got = pread(fd, buf, want, from);
        if (got <= 0)
            return -1;
        for (ssize_t i = 0; i < got; i++)
            n += buf[i] == '\n';
        from += got;
    }
    return n;
}

/* Finds the end of the last complete record, so a torn final write can be cut off. */
static off_t last_record_end(int fd, off_t size)
{
    char c;
    off_t pos = size;
    while (pos > 0) {
        if (pread(fd, &c, 1, pos - 1) != 1)
            return -1;
        if (c == '\n')
            return pos;
        pos--;
    }
    return 0;
}

/* Reads the delivered offset; a missing or bad file means 0. */
static off_t read_offset(int fd)
{
    char buf[32] = {0};
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    return n > 0 ? (off_t)strtoll(buf, NULL, 10) : 0;
}

/* Durably records `off` as the delivered offset. */
static int write_offset(spool *s, off_t off)
{
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%020lld\n", (long long)off);
    if (pwrite(s->offset_fd, buf, (size_t)n, 0) != n || fdatasync(s->offset_fd) != 0)
        return -1;
    return 0;
}

/* Opens `dir/name` with `flags`; returns the fd or -1. */
static int open_in(const char *dir, const char *name, int flags)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return open(path, flags | O_CLOEXEC, 0600);
}

/* Brings size/consumed/depth in line with the files, cutting a torn tail. */
static int spool_recover(spool *s)
{
    struct stat st;
    if (fstat(s->fd, &st) != 0)
        return -1;
    off_t end = last_record_end(s->fd, st.st_size);
    if (end < 0)
        return -1;
    if (end != st.st_size) {
        log_warn("spool: dropping a torn record left by a crash (never acknowledged)",
                 LF_I("bytes", st.st_size - end));
        if (ftruncate(s->fd, end) != 0 || fdatasync(s->fd) != 0)
            return -1;
    }
    s->size = end;
    s->consumed = read_offset(s->offset_fd);
    if (s->consumed < 0 || s->consumed > s->size) { /* stale: the spool was emptied */
        s->consumed = 0;
        if (write_offset(s, 0) != 0)
            return -1;
    }
    long n = count_records(s->fd, s->consumed, s->size);
    if (n < 0)
        return -1;
    s->depth = (size_t)n;
    return 0;
}

/* The code of a failed file-system call on the spool's path: CALLLOG_INVALID when the
 * path itself is unusable (a component is not a directory, the name is too long, a link
 * loop), which no retry fixes; CALLLOG_TRANSIENT otherwise (permissions, a full or
 * failing disk). */
static calllog_code path_error_code(int e)
{
    return e == ENOTDIR || e == ENAMETOOLONG || e == ELOOP ? CALLLOG_INVALID : CALLLOG_TRANSIENT;
}

spool *spool_open(const char *dir, long max_bytes, calllog_error *err)
{
    if (dir == NULL || dir[0] == '\0' || max_bytes <= 0) {
        error_set(err, CALLLOG_INVALID, "spool_open: no directory or no size limit");
        return NULL;
    }
    if (strlen(dir) >= sizeof((spool *)NULL)->dir) {
        error_set(err, CALLLOG_INVALID, "spool directory name too long (%zu bytes)", strlen(dir));
        return NULL;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        error_set(err, path_error_code(errno), "cannot create spool directory %s: %s", dir,
                  strerror(errno));
        return NULL;
    }
    spool *s = calloc(1, sizeof *s);
    if (!s) {
        error_set(err, CALLLOG_NOMEM, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    s->max_bytes = max_bytes;
    s->lock_fd = open_in(dir, "lock", O_RDWR | O_CREAT);
    if (s->lock_fd < 0 || flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        error_set(err, path_error_code(errno),
                  "cannot lock spool directory %s: %s (another ingest uses it?)", dir,
                  strerror(errno));
        s->fd = s->offset_fd = -1;
        spool_close(s);
        return NULL;
    }
    s->fd = open_in(dir, "events.spool", O_RDWR | O_CREAT | O_APPEND);
    s->offset_fd = open_in(dir, "events.offset", O_RDWR | O_CREAT);
    if (s->fd < 0 || s->offset_fd < 0 || spool_recover(s) != 0) {
        error_set(err, CALLLOG_TRANSIENT, "cannot open spool in %s: %s", dir, strerror(errno));
        spool_close(s);
        return NULL;
    }
    return s;
}

int spool_append(spool *s, const char *record, size_t len)
{
    pthread_mutex_lock(&s->lock);
    int rc = -1;
    if (s->size + (off_t)len + 1 <= s->max_bytes) {
        char *line = malloc(len + 1);
        if (line) {
            memcpy(line, record, len);
            line[len] = '\n';
            ssize_t w = write(s->fd, line, len + 1);
            /* A short write to a regular file means the disk is full (errno is not set). */
            int failure = w < 0 ? errno : w < (ssize_t)(len + 1) ? ENOSPC : 0;
            if (!failure && fdatasync(s->fd) != 0)
                failure = errno;
            if (!failure) {
                s->size += (off_t)w;
                s->depth++;
                rc = 0;
            } else if (w > 0 && ftruncate(s->fd, s->size) != 0) {
                log_error("spool: cannot cut a partial write", LF_S("error", strerror(errno)));
            }
            errno = failure; /* what the caller logs is the write's cause */
            free(line);
        }
    } else {
        errno = ENOSPC;
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

size_t spool_depth(spool *s)
{
    pthread_mutex_lock(&s->lock);
    size_t d = s->depth;
    pthread_mutex_unlock(&s->lock);
    return d;
}

/* Writes, syncs and truncates a small probe file in the spool's directory. Returns 0, or
 * the errno of the step that failed. */
static int probe_write(const spool *s)
{
    char path[4200], block[512];
    snprintf(path, sizeof path, "%s/probe", s->dir);
    memset(block, 'p', sizeof block);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno;
    ssize_t w = write(fd, block, sizeof block);
    int failure = w < 0 ? errno : w < (ssize_t)sizeof block ? ENOSPC : 0;
    if (!failure && fdatasync(fd) != 0)
        failure = errno;
    if (ftruncate(fd, 0) != 0 && !failure)
        failure = errno;
    close(fd);
    return failure;
}

int spool_writable(spool *s, char *why, size_t whylen)
{
    pthread_mutex_lock(&s->lock);
    int full = s->size >= s->max_bytes, failure = s->fd < 0 ? EBADF : full ? 0 : probe_write(s);
    pthread_mutex_unlock(&s->lock);
    if (why && (full || failure))
        snprintf(why, whylen, "%s",
                 full ? "spool full (INGEST_SPOOL_MAX_BYTES)" : strerror(failure));
    return !full && !failure;
}

/* Once everything is delivered, empties both files so the spool does not grow. The
 * offset is reset first: a crash in between replays delivered records (a duplicate the
 * claim absorbs) instead of trusting a stale offset over new records (a loss). */
static int spool_reset_if_empty(spool *s)
{
    if (s->depth != 0)
        return 0;
    if (write_offset(s, 0) != 0 || ftruncate(s->fd, 0) != 0 || fdatasync(s->fd) != 0)
        return -1;
    s->size = s->consumed = 0;
    return 0;
}

/* Splits `buf[0..len)` into at most SPOOL_BATCH whole lines (NUL-terminating them in
 * place). Returns the number of lines. */
static size_t split_lines(char *buf, size_t len, char **lines)
{
    size_t n = 0, start = 0;
    for (size_t i = 0; i < len && n < SPOOL_BATCH; i++) {
        if (buf[i] == '\n') {
            buf[i] = '\0';
            lines[n++] = buf + start;
            start = i + 1;
        }
    }
    return n;
}

/* Reads from `consumed` into `b` (emptied first), a chunk at a time, until it holds at
 * least one whole record or the rest of the spool. Returns the bytes held, or -1. */
static ssize_t read_chunk(spool *s, buffer *b)
{
    buffer_reset(b);
    for (;;) {
        size_t have = buffer_len(b);
        char *room = buffer_reserve(b, SPOOL_READ_CHUNK);
        if (room == NULL)
            return -1;
        ssize_t got = pread(s->fd, room, SPOOL_READ_CHUNK, s->consumed + (off_t)have);
        if (got < 0)
            return -1;
        buffer_commit(b, (size_t)got);
        if (got == 0 || memchr(room, '\n', (size_t)got) ||
            (off_t)buffer_len(b) >= s->size - s->consumed)
            return (ssize_t)buffer_len(b);
    }
}

long spool_drain(spool *s, spool_sink sink, void *arg)
{
    pthread_mutex_lock(&s->lock);
    buffer buf; /* never more than what is pending plus one chunk */
    buffer_init(&buf, (size_t)(s->size - s->consumed) + SPOOL_READ_CHUNK);
    char **lines = malloc(SPOOL_BATCH * sizeof *lines);
    long delivered = lines ? 0 : -1;
    while (delivered >= 0 && s->depth > 0) {
        ssize_t got = read_chunk(s, &buf);
        size_t n = got > 0 ? split_lines(buffer_ptr(&buf), (size_t)got, lines) : 0;
        if (n == 0) {
            delivered = -1;
            break;
        }
        size_t ok = sink(arg, lines, n);
        for (size_t i = 0; i < ok; i++)
            s->consumed += (off_t)strlen(lines[i]) + 1;
        s->depth -= ok;
        delivered += (long)ok;
        if (write_offset(s, s->consumed) != 0)
            delivered = -1;
        if (ok < n)
            break;
    }
    if (delivered >= 0 && spool_reset_if_empty(s) != 0)
        delivered = -1;
    pthread_mutex_unlock(&s->lock);
    buffer_free(&buf);
    free(lines);
    return delivered;
}

void spool_close(spool *s)
{
    if (!s)
        return;
    if (s->fd >= 0)
        close(s->fd);
    if (s->offset_fd >= 0)
        close(s->offset_fd);
    if (s->lock_fd >= 0)
        close(s->lock_fd); /* releases the flock */
    pthread_mutex_destroy(&s->lock);
    free(s);
}
