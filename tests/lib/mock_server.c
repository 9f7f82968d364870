/* mock_server — the Python API mocks under criterion (see mock_server.h). */
#include "tests/lib/mock_server.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Directory holding the mock scripts. */
static void mock_dir(char *out, size_t outlen)
{
    const char *env = getenv("CALLLOG_MOCKS_DIR");
    if (env != NULL && env[0] != '\0') {
        snprintf(out, outlen, "%s", env);
        return;
    }
    char here[1024];
    snprintf(here, sizeof here, "%s", __FILE__);
    snprintf(out, outlen, "%s/../mocks", dirname(here));
}

/* Sleeps about `ms` milliseconds. */
void mock_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Copies the mock's stderr to ours (after a failed start). */
static void mock_dump_log(const mock_server *m)
{
    char line[512];
    FILE *f = fopen(m->log_file, "r");
    if (f == NULL)
        return;
    while (fgets(line, sizeof line, f) != NULL)
        fputs(line, stderr);
    fclose(f);
}

/* In the forked child: dies with the test, sends stderr to the log, runs the mock. */
static void mock_exec_child(const mock_server *m, pid_t parent, const char *const *argv)
{
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        _exit(1);
    int fd = open(m->log_file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) {
        dup2(fd, 2);
        close(fd);
    }
    execv(argv[0], (char *const *)argv);
    perror("execv /usr/bin/python3");
    _exit(127);
}

/* Waits (at most ~20 s) for the port file; this is start-up, not a timed assertion.
 * Returns 0 once the mock listens, -1 when it exited or never wrote the file. */
static int mock_wait_port(mock_server *m, const char *script)
{
    for (int i = 0; i < 400; i++) {
        FILE *f = fopen(m->port_file, "r");
        if (f != NULL) {
            int ok = fscanf(f, "%d", &m->port) == 1;
            fclose(f);
            if (ok && m->port > 0) {
                snprintf(m->base, sizeof m->base, "http://127.0.0.1:%d", m->port);
                return 0;
            }
        }
        int status;
        if (waitpid(m->pid, &status, WNOHANG) == m->pid) {
            fprintf(stderr, "mock %s exited before listening:\n", script);
            mock_dump_log(m);
            m->pid = 0;
            return -1;
        }
        mock_sleep_ms(50);
    }
    fprintf(stderr, "mock %s did not write its port file:\n", script);
    mock_dump_log(m);
    return -1;
}

int mock_start(mock_server *m, const char *script, const char *const *extra)
{
    char dir[900], path[1024];
    const char *argv[32];
    size_t n = 0;

    memset(m, 0, sizeof *m);
    snprintf(m->dir, sizeof m->dir, "/tmp/calllog-mock-XXXXXX");
    if (mkdtemp(m->dir) == NULL) {
        perror("mkdtemp");
        return -1;
    }
    snprintf(m->port_file, sizeof m->port_file, "%s/port", m->dir);
    snprintf(m->log_file, sizeof m->log_file, "%s/stderr.log", m->dir);
    mock_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/%s", dir, script);
    argv[n++] = "/usr/bin/python3";
    argv[n++] = path;
    argv[n++] = "--port";
    argv[n++] = "0";
    argv[n++] = "--port-file";
    argv[n++] = m->port_file;
    argv[n++] = "--quiet";
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 31; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;

    pid_t parent = getpid();
    m->pid = fork();
    if (m->pid < 0) {
        perror("fork");
        return -1;
    }
    if (m->pid == 0)
        mock_exec_child(m, parent, argv);
    return mock_wait_port(m, script);
}

void mock_stop(mock_server *m)
{
    if (m->pid > 0) {
        kill(m->pid, SIGTERM);
        waitpid(m->pid, NULL, 0);
        m->pid = 0;
    }
    if (m->port_file[0] != '\0')
        unlink(m->port_file);
    if (m->log_file[0] != '\0')
        unlink(m->log_file);
    if (m->dir[0] != '\0')
        rmdir(m->dir);
}

/* Appends received bytes to a growing NUL-terminated buffer. */
static size_t mock_collect(char *data, size_t size, size_t nmemb, void *arg)
{
    char **buf = arg;
    size_t old = *buf ? strlen(*buf) : 0, n = size * nmemb;
    char *nb = realloc(*buf, old + n + 1);
    if (nb == NULL)
        return 0;
    memcpy(nb + old, data, n);
    nb[old + n] = '\0';
    *buf = nb;
    return n;
}

long mock_call(const mock_server *m, const char *method, const char *path, const char *json,
               json_t **out)
{
    char url[1024];
    char *body = NULL;
    long status = 0;
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    CURL *c = curl_easy_init();
    if (out != NULL)
        *out = NULL;
    if (h == NULL || c == NULL) {
        curl_slist_free_all(h);
        curl_easy_cleanup(c);
        return 0;
    }
    snprintf(url, sizeof url, "%s%s", m->base, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, mock_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    if (json != NULL)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    if (out != NULL)
        *out = body ? json_loads(body, 0, NULL) : NULL;
    free(body);
    return status;
}

long mock_post(const mock_server *m, const char *path, const char *json, json_t **out)
{
    return mock_call(m, "POST", path, json, out);
}

json_t *mock_get(const mock_server *m, const char *path)
{
    json_t *out = NULL;
    if (mock_call(m, "GET", path, NULL, &out) != 200) {
        json_decref(out);
        return NULL;
    }
    return out;
}

size_t mock_count_requests(const mock_server *m, const char *prefix)
{
    json_t *log = mock_get(m, "/_mock/requests"), *e;
    size_t i, n = 0;
    json_array_foreach(json_object_get(log, "requests"), i, e)
    {
        const char *p = json_string_value(json_object_get(e, "path"));
        if (prefix == NULL || (p != NULL && strncmp(p, prefix, strlen(prefix)) == 0))
            n++;
    }
    json_decref(log);
    return n;
}
