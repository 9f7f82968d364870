/* failalloc — an LD_PRELOAD shim that makes the Nth allocation of each criterion test fail,
 * so that every unchecked malloc/calloc/realloc result (and strdup, asprintf, json_*,
 * curl_*: they allocate through malloc) shows up as the crash it would be in production.
 *
 * With CALLLOG_FAILALLOC=N set, the Nth allocation counted in a test process returns NULL
 * with errno ENOMEM; every other one succeeds. Counting covers only the test's own code:
 * criterion runs each test in a re-executed worker ("boxfort-worker") whose runner and
 * reporting allocate too, and failing those would be criterion's crash, not ours. So the
 * shim wraps the entry points a test's trampoline calls (criterion_internal_test_setup,
 * _main, _teardown) and counts only while the suite's and test's .init, the test body and
 * the .fini run, pausing while criterion formats and sends an assertion, skips or aborts
 * the test. Processes that never run a test (the runner, the mocks the tests start, psql)
 * load the shim and count nothing.
 *
 * CALLLOG_FAILALLOC_TRACE=1 prints the backtrace of the failed allocation on stderr.
 * It reports to the file CALLLOG_FAILALLOC_REPORT (appended, one line per event, written
 * with write(2) only, so it works inside malloc and signal handlers):
 *   failed <suite>::<test> <N>       the Nth allocation was made to fail
 *   made <suite>::<test> <count>     allocations the test counted (when it ends normally)
 *   crash <suite>::<test> <signal>   the worker died of SIGSEGV, SIGBUS, SIGILL, SIGFPE, or
 *                                    SIGABRT not raised by criterion itself (an assert()
 *                                    in product code, abort() on a detected corruption)
 * tests/lib/failalloc_run.sh sweeps N and reads these lines: a test that merely fails its
 * assertions because an allocation failed is expected; a crash or a hang is a bug.
 *
 * It forwards to glibc's own allocator (__libc_malloc, ...), so it cannot be combined with
 * AddressSanitizer (whose allocator must come first): the sweep runs the Release tree. */
#define _GNU_SOURCE
#include <criterion/types.h>

struct criterion_assert_stats; /* opaque here: only passed through */
#include <dlfcn.h>
#include <link.h>
#include <stdint.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t align, size_t size);

/* Exported by libcriterion: the test this worker runs. Weak, because every process that
 * inherits LD_PRELOAD loads the shim, and most (timeout, python3, psql) lack criterion. */
extern const struct criterion_test *criterion_current_test __attribute__((weak));
extern const struct criterion_suite *criterion_current_suite __attribute__((weak));

/* The running test, or NULL outside a criterion worker. */
static const struct criterion_test *failalloc_test(void)
{
    return &criterion_current_test ? criterion_current_test : NULL;
}

/* The running test's suite, or NULL. */
static const struct criterion_suite *failalloc_suite(void)
{
    return &criterion_current_suite ? criterion_current_suite : NULL;
}

static long failalloc_at;             /* CALLLOG_FAILALLOC; 0: off */
static atomic_long failalloc_seen;    /* allocations counted so far */
static atomic_int failalloc_counting; /* 1 while the test's own code runs */
static atomic_int failalloc_aborting; /* 1 once criterion aborts the test on purpose */
static int failalloc_fd = -1;         /* the report file */
static int failalloc_trace;           /* CALLLOG_FAILALLOC_TRACE=1: backtrace of the failure */
static const char *failalloc_suite_name = "?", *failalloc_test_name = "?"; /* for the report */

/* Libraries whose own allocations are never failed: the allocation is skipped when the
 * innermost caller outside libc (and this shim) belongs to one of them. Debian 12's
 * hiredis 0.14 abort()s when an allocation fails inside it (redisConnect*, the reply
 * reader), civetweb 1.15's mg_start and MIT Kerberos' gss_acquire_cred (libpq asks it
 * when gssencmode is not disabled) dereference their own failed allocations: no caller
 * can handle these, so failing them would only report those libraries. What our code
 * allocates while they call it (a civetweb request handler) is still counted. */
static const char *const failalloc_skip_names[] = {"libhiredis.so", "libcivetweb.so",
                                                   "libgssapi_krb5.so"};
#define FAILALLOC_SKIP_N (sizeof failalloc_skip_names / sizeof *failalloc_skip_names)

/* An object's loaded address range. */
typedef struct failalloc_range {
    uintptr_t lo, hi;
} failalloc_range;

static failalloc_range failalloc_skip[FAILALLOC_SKIP_N];
static failalloc_range failalloc_libc, failalloc_ldso, failalloc_self, failalloc_jansson;

/* ---- the report ---------------------------------------------------------------------- */

/* Appends `s` to `buf` (capacity `cap`, length `*len`), truncating. */
static void failalloc_cat(char *buf, size_t cap, size_t *len, const char *s)
{
    while (s && *s && *len + 1 < cap)
        buf[(*len)++] = *s++;
    buf[*len] = '\0';
}

/* Appends the decimal form of `v` (>= 0). */
static void failalloc_cat_long(char *buf, size_t cap, size_t *len, long v)
{
    char digits[24];
    int i = (int)sizeof digits - 1;
    digits[i] = '\0';
    do {
        digits[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0 && i > 0);
    failalloc_cat(buf, cap, len, digits + i);
}

/* Writes "<what> <suite>::<test> <number>\n" to the report (async-signal-safe). */
static void failalloc_report(const char *what, long number)
{
    char line[512];
    size_t len = 0;
    if (failalloc_fd < 0)
        return;
    failalloc_cat(line, sizeof line, &len, what);
    failalloc_cat(line, sizeof line, &len, " ");
    failalloc_cat(line, sizeof line, &len, failalloc_suite_name);
    failalloc_cat(line, sizeof line, &len, "::");
    failalloc_cat(line, sizeof line, &len, failalloc_test_name);
    failalloc_cat(line, sizeof line, &len, " ");
    failalloc_cat_long(line, sizeof line, &len, number);
    failalloc_cat(line, sizeof line, &len, "\n");
    if (write(failalloc_fd, line, len) < 0)
        return;
}

/* ---- the allocator ---------------------------------------------------------------------- */

/* Widens `r` to the loaded segments of `info`. */
static void failalloc_range_of(failalloc_range *r, const struct dl_phdr_info *info)
{
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
        if (!r->lo || lo < r->lo)
            r->lo = lo;
        if (hi > r->hi)
            r->hi = hi;
    }
}

/* Notes the ranges of libc, this shim and the skipped libraries (dl_iterate_phdr). */
static int failalloc_find_ranges(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    (void)arg;
    const char *name = info->dlpi_name ? info->dlpi_name : "";
    if (strstr(name, "/libc.so"))
        failalloc_range_of(&failalloc_libc, info);
    if (strstr(name, "/ld-linux")) /* allocates a new thread's TLS for pthread_create */
        failalloc_range_of(&failalloc_ldso, info);
    if (strstr(name, "libfailalloc.so"))
        failalloc_range_of(&failalloc_self, info);
    if (strstr(name, "libjansson.so"))
        failalloc_range_of(&failalloc_jansson, info);
    for (size_t i = 0; i < FAILALLOC_SKIP_N; i++)
        if (strstr(name, failalloc_skip_names[i]))
            failalloc_range_of(&failalloc_skip[i], info);
    return 0;
}

/* 1 when `p` lies in `r`. */
static int failalloc_within(const failalloc_range *r, const void *p)
{
    return (uintptr_t)p >= r->lo && (uintptr_t)p < r->hi;
}

/* 1 when the jansson frames from frames[i] on belong to its parser (json_load*). The
 * parser drops a failed allocation while it lexes (lex_save ignores
 * strbuffer_append_byte's error) and then reads and writes past its buffer: jansson issue
 * #362, fix proposed in PR #747, not in Debian 12's 2.14. Its allocations are skipped;
 * jansson's builders (json_object, json_pack, json_dumps) are still failed. */
static int failalloc_in_jansson_parser(void *const *frames, int i, int n)
{
    for (; i < n && failalloc_within(&failalloc_jansson, frames[i]); i++) {
        Dl_info info;
        if (dladdr(frames[i], &info) && info.dli_sname &&
            strncmp(info.dli_sname, "json_load", 9) == 0)
            return 1;
    }
    return 0;
}

/* 1 when the innermost caller outside libc, the dynamic loader and this shim is a skipped
 * library (civetweb's pthread_create of its workers reaches calloc through ld.so) or
 * jansson's parser (counting is off meanwhile, in case backtrace() or dladdr allocate). */
static int failalloc_in_skipped(void)
{
    void *frames[64];
    int was = atomic_exchange(&failalloc_counting, 0);
    int n = backtrace(frames, 64), skipped = 0;
    for (int i = 0; i < n; i++) {
        if (failalloc_within(&failalloc_libc, frames[i]) ||
            failalloc_within(&failalloc_ldso, frames[i]) ||
            failalloc_within(&failalloc_self, frames[i]))
            continue;
        for (size_t k = 0; k < FAILALLOC_SKIP_N; k++)
            skipped |= failalloc_within(&failalloc_skip[k], frames[i]);
        skipped = skipped || failalloc_in_jansson_parser(frames, i, n);
        break;
    }
    atomic_store(&failalloc_counting, was);
    return skipped;
}

/* 1 when this allocation is the one to fail (and reports it). One that would be, but is
 * made by a skipped library, is not counted: the next one is the candidate. */
static int failalloc_now(void)
{
    if (failalloc_at <= 0 || !atomic_load(&failalloc_counting))
        return 0;
    if (atomic_fetch_add(&failalloc_seen, 1) + 1 != failalloc_at)
        return 0;
    if (failalloc_in_skipped()) {
        atomic_fetch_sub(&failalloc_seen, 1);
        return 0;
    }
    failalloc_report("failed", failalloc_at);
    if (failalloc_trace) {
        void *frames[32];
        int was = atomic_exchange(&failalloc_counting, 0);
        backtrace_symbols_fd(frames, backtrace(frames, 32), 2);
        atomic_store(&failalloc_counting, was);
    }
    errno = ENOMEM;
    return 1;
}

void *malloc(size_t size)
{
    return failalloc_now() ? NULL : __libc_malloc(size);
}

void *calloc(size_t n, size_t size)
{
    return failalloc_now() ? NULL : __libc_calloc(n, size);
}

void *realloc(void *p, size_t size)
{
    if (size > 0 && failalloc_now())
        return NULL; /* `p` stays valid, as with a real failure */
    return __libc_realloc(p, size);
}

void *memalign(size_t align, size_t size)
{
    return failalloc_now() ? NULL : __libc_memalign(align, size);
}

void *aligned_alloc(size_t align, size_t size)
{
    return failalloc_now() ? NULL : __libc_memalign(align, size);
}

int posix_memalign(void **out, size_t align, size_t size)
{
    void *p = failalloc_now() ? NULL : __libc_memalign(align, size);
    if (p == NULL)
        return ENOMEM;
    *out = p;
    return 0;
}

/* ---- counting only the test's own code ------------------------------------------------- */

/* Looks up the next definition of criterion function `name` (libcriterion's). */
static void *failalloc_next(const char *name)
{
    void *fn = dlsym(RTLD_NEXT, name);
    if (fn == NULL)
        abort(); /* the shim was loaded into a test binary without criterion */
    return fn;
}

/* Runs `fn` (a fixture or the test body) with counting on, as it was before afterwards. */
static void failalloc_user(void (*fn)(void))
{
    int was = atomic_exchange(&failalloc_counting, 1);
    if (fn)
        fn();
    atomic_store(&failalloc_counting, was);
}

/* The fixtures and body the trampolines below stand in for. */
static void (*failalloc_suite_fn)(void), (*failalloc_test_fn)(void), (*failalloc_body)(void);

static void failalloc_suite_tramp(void)
{
    failalloc_user(failalloc_suite_fn);
}

static void failalloc_test_tramp(void)
{
    failalloc_user(failalloc_test_fn);
}

static void failalloc_body_tramp(void)
{
    failalloc_user(failalloc_body);
}

/* Points the suite's and test's `init` (or `fini`: `fini` 1) at the trampolines. */
static void failalloc_hook(int fini)
{
    struct criterion_test_extra_data *sd = failalloc_suite() ? failalloc_suite()->data : NULL;
    struct criterion_test_extra_data *td = failalloc_test() ? failalloc_test()->data : NULL;
    if (sd && (fini ? sd->fini : sd->init)) {
        failalloc_suite_fn = fini ? sd->fini : sd->init;
        *(fini ? &sd->fini : &sd->init) = failalloc_suite_tramp;
    }
    if (td && (fini ? td->fini : td->init)) {
        failalloc_test_fn = fini ? td->fini : td->init;
        *(fini ? &td->fini : &td->init) = failalloc_test_tramp;
    }
}

void criterion_internal_test_setup(void)
{
    static void (*real)(void);
    real = real ? real : (void (*)(void))failalloc_next("criterion_internal_test_setup");
    if (failalloc_suite() && failalloc_suite()->name)
        failalloc_suite_name = failalloc_suite()->name;
    if (failalloc_test() && failalloc_test()->name)
        failalloc_test_name = failalloc_test()->name;
    failalloc_hook(0);
    real();
}

void criterion_internal_test_main(void (*fn)(void))
{
    static void (*real)(void (*)(void));
    real = real ? real : (void (*)(void (*)(void)))failalloc_next("criterion_internal_test_main");
    const struct criterion_test *t = failalloc_test();
    if (!t || (t->data && t->data->param_)) {
        real(fn); /* parameterized: the body takes an argument; not counted */
        return;
    }
    failalloc_body = fn;
    real(failalloc_body_tramp);
}

void criterion_internal_test_teardown(void)
{
    static void (*real)(void);
    real = real ? real : (void (*)(void))failalloc_next("criterion_internal_test_teardown");
    failalloc_hook(1);
    real();
}

/* Criterion reports an assertion: not counted. */
void criterion_send_assert(struct criterion_assert_stats *stats)
{
    static void (*real)(struct criterion_assert_stats *);
    real = real
               ? real
               : (void (*)(struct criterion_assert_stats *))failalloc_next("criterion_send_assert");
    int was = atomic_exchange(&failalloc_counting, 0);
    real(stats);
    atomic_store(&failalloc_counting, was);
}

/* The assertion's message: formatted by criterion, not counted. */
int cr_asprintf(char **strp, const char *fmt, ...)
{
    static int (*real)(char **, const char *, va_list);
    real = real ? real : (int (*)(char **, const char *, va_list))failalloc_next("cr_vasprintf");
    va_list ap;
    va_start(ap, fmt);
    int was = atomic_exchange(&failalloc_counting, 0);
    int rc = real(strp, fmt, ap);
    atomic_store(&failalloc_counting, was);
    va_end(ap);
    return rc;
}

/* The assertion's default message: translated by criterion, not counted. Its arguments
 * (the expression and values as strings, at most a few) are passed on as six pointers:
 * on x86-64 a variadic callee reads only the ones its format names. */
char *cr_translate_assert_msg(int msg_index, ...)
{
    static char *(*real)(int, ...);
    real = real ? real : (char *(*)(int, ...))failalloc_next("cr_translate_assert_msg");
    void *a[6];
    va_list ap;
    va_start(ap, msg_index);
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, void *);
    va_end(ap);
    int was = atomic_exchange(&failalloc_counting, 0);
    char *msg = real(msg_index, a[0], a[1], a[2], a[3], a[4], a[5]);
    atomic_store(&failalloc_counting, was);
    return msg;
}

/* Criterion ends the test on purpose (a failed cr_assert, cr_skip): nothing counts from
 * here on, and the abort() criterion may raise next is not a crash. */
static void failalloc_stop_counting(void)
{
    atomic_store(&failalloc_counting, 0);
    atomic_store(&failalloc_aborting, 1);
}

void criterion_abort_test(void)
{
    static void (*real)(void);
    real = real ? real : (void (*)(void))failalloc_next("criterion_abort_test");
    failalloc_stop_counting();
    real();
    __builtin_unreachable();
}

void criterion_skip_test(const char *format, ...)
{
    static void (*real)(const char *, ...);
    real = real ? real : (void (*)(const char *, ...))failalloc_next("criterion_skip_test");
    failalloc_stop_counting();
    real("%s", format ? format : "");
    __builtin_unreachable();
}

/* ---- crashes ---------------------------------------------------------------------------- */

/* Reports a crash with a backtrace on stderr, then dies of the same signal. */
static void failalloc_on_signal(int sig)
{
    atomic_store(&failalloc_counting, 0);
    if (sig != SIGABRT || !atomic_load(&failalloc_aborting)) {
        void *frames[32];
        failalloc_report("crash", sig);
        backtrace_symbols_fd(frames, backtrace(frames, 32), 2);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

/* 1 when this process is a criterion worker (argv[0] "boxfort-worker"). */
static int failalloc_in_worker(void)
{
    char argv0[64] = "";
    int fd = open("/proc/self/cmdline", O_RDONLY);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, argv0, sizeof argv0 - 1);
    close(fd);
    return n > 0 && strcmp(argv0, "boxfort-worker") == 0;
}

/* Reads the settings and, in a criterion worker, watches for crashes. */
__attribute__((constructor)) static void failalloc_init(void)
{
    const char *n = getenv("CALLLOG_FAILALLOC");
    const char *report = getenv("CALLLOG_FAILALLOC_REPORT");
    if (!failalloc_in_worker())
        return;
    failalloc_at = n ? atol(n) : 0;
    failalloc_trace = getenv("CALLLOG_FAILALLOC_TRACE") != NULL;
    dl_iterate_phdr(failalloc_find_ranges, NULL);
    void *warm[1];
    backtrace(warm, 1); /* loads libgcc_s now, not inside a malloc */
    if (report && report[0])
        failalloc_fd = open(report, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
        signal(sigs[i], failalloc_on_signal);
}

/* Reports how many allocations the test counted, as its worker exits. */
__attribute__((destructor)) static void failalloc_fini(void)
{
    if (failalloc_test_name[0] != '?')
        failalloc_report("made", atomic_load(&failalloc_seen));
}
