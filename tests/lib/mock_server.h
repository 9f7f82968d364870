/* mock_server — starts one of the Python API mocks (tests/mocks/) for a criterion test,
 * talks to its /_mock control API, and stops it.
 *
 * Each test starts its own mock (criterion runs every test in its own process, possibly
 * in parallel), so tests never see each other's data, faults or request logs. The mock is
 * started with `--port 0 --port-file F --quiet`; the child asks the kernel to SIGTERM it
 * when the test process dies, so a crashed test leaves no server behind. The mocks live
 * in tests/mocks/ beside this library's folder (found from __FILE__), or in
 * $CALLLOG_MOCKS_DIR.
 *
 * Part of calllog_testlib (tests/lib/). Uses libcurl and jansson; the test must have
 * called curl_global_init. */
#ifndef CALLLOG_TEST_MOCK_SERVER_H
#define CALLLOG_TEST_MOCK_SERVER_H

#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct mock_server {
    pid_t pid;
    int port;
    char base[64]; /* http://127.0.0.1:PORT */
    char dir[128]; /* scratch directory (port file, log) */
    char port_file[192];
    char log_file[192]; /* the mock's stderr */
} mock_server;

/* Starts `script` (e.g. "rdstation_mock.py") with extra arguments (NULL-terminated, may
 * be NULL). Returns 0 once it listens, or -1 (message on stderr). */
int mock_start(mock_server *m, const char *script, const char *const *extra);

/* Stops the mock (SIGTERM, then waits) and removes its scratch files. */
void mock_stop(mock_server *m);

/* Sleeps about `ms` milliseconds (signals do not cut it short). */
void mock_sleep_ms(long ms);

/* Sends a control request (`json` body may be NULL). Returns the HTTP status (0 on a
 * transport failure); `*out` (when given) receives the parsed answer (caller decrefs;
 * NULL when the answer was not JSON or could not be stored). */
long mock_call(const mock_server *m, const char *method, const char *path, const char *json,
               json_t **out);

/* POSTs JSON to a control path; returns the status. */
long mock_post(const mock_server *m, const char *path, const char *json, json_t **out);

/* GETs a control path; returns the parsed answer (caller decrefs) or NULL. */
json_t *mock_get(const mock_server *m, const char *path);

/* Number of logged API requests whose path starts with `prefix` (NULL: all). */
size_t mock_count_requests(const mock_server *m, const char *prefix);

#endif
