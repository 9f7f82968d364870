/* config — settings from the environment and an optional env file (see config.h).
 *
 * Secrets from files: a setting NAME that is unset (or empty) while NAME_FILE names a file
 * takes the file's contents, read once, with one trailing newline removed — how Docker
 * and Kubernetes hand secrets over. The values read live in a small table for the process
 * lifetime (so config_str's pointers stay valid), next to the first problem met with each
 * (both NAME and NAME_FILE set, a file that cannot be read, an empty one); the getters
 * report that problem when asked for NAME, and config_check reports any. The table is the
 * loaded configuration, the one global state the design allows; a mutex guards it. */
#include "common/config.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Largest secret file read, and how many NAME_FILE settings one process may use. */
#define CONFIG_FILE_MAX_BYTES 65536
#define CONFIG_FILE_SLOTS 64

/* One NAME_FILE setting that has been looked at. */
typedef struct file_slot {
    char name[128];  /* NAME */
    char *value;     /* the file's contents; NULL when `error` says why not */
    char error[512]; /* "" when fine */
} file_slot;

static struct {
    pthread_mutex_t lock;
    file_slot slot[CONFIG_FILE_SLOTS];
    size_t n;
} files = {PTHREAD_MUTEX_INITIALIZER, {{"", NULL, ""}}, 0};

/* Fills `err` with "setting NAME is malformed: DETAIL". */
int config_fail(calllog_error *err, const char *name, const char *detail)
{
    if (err)
        error_set(err, CALLLOG_INVALID, "setting %s is malformed: %s", name, detail);
    return -1;
}

/* Trims ASCII whitespace at both ends, in place. */
static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return s;
}

/* Removes one pair of matching surrounding quotes, in place. */
static char *unquote(char *v)
{
    size_t n = strlen(v);
    if (n >= 2 && (v[0] == '"' || v[0] == '\'') && v[n - 1] == v[0]) {
        v[n - 1] = '\0';
        return v + 1;
    }
    return v;
}

/* Applies one KEY=VALUE line; blank lines and comments are ignored. */
static int apply_env_line(char *line, const char *path, int lineno, calllog_error *err)
{
    char *s = trim(line);
    if (*s == '\0' || *s == '#')
        return 0;
    if (strncmp(s, "export ", 7) == 0)
        s = trim(s + 7);
    char *eq = strchr(s, '=');
    if (!eq || eq == s) {
        error_set(err, CALLLOG_INVALID, "env file %s line %d: expected KEY=VALUE", path, lineno);
        return -1;
    }
    *eq = '\0';
    char *key = trim(s);
    for (const char *k = key; *k; k++) {
        if (!isalnum((unsigned char)*k) && *k != '_') {
            error_set(err, CALLLOG_INVALID, "env file %s line %d: bad variable name", path, lineno);
            return -1;
        }
    }
    char *value = unquote(trim(eq + 1));
    const char *current = getenv(key); /* set and non-empty: the environment wins */
    if ((!current || !*current) && setenv(key, value, 1) != 0) {
        error_set(err, CALLLOG_INVALID, "env file %s: cannot set %s", path, key);
        return -1;
    }
    return 0;
}

int config_load_env_file(const char *path, calllog_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        error_set(err, CALLLOG_INVALID, "cannot read env file %s: %s", path, strerror(errno));
        return -1;
    }
    char line[4096];
    int lineno = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            error_set(err, CALLLOG_INVALID, "env file %s line %d: line too long", path, lineno);
            rc = -1;
            break;
        }
        rc = apply_env_line(line, path, lineno, err);
    }
    fclose(f);
    return rc;
}

/* Reads `path` (named by setting `file_name`) into a new string without one trailing
 * newline. Returns it, or NULL with `why` filled. */
static char *read_secret_file(const char *file_name, const char *path, char *why, size_t whylen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(why, whylen, "setting %s: cannot read %s: %s", file_name, path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(CONFIG_FILE_MAX_BYTES + 2);
    errno = 0;
    size_t n = buf ? fread(buf, 1, CONFIG_FILE_MAX_BYTES + 1, f) : 0;
    int failed = buf == NULL || ferror(f), error = buf == NULL ? ENOMEM : errno;
    fclose(f);
    if (failed) {
        snprintf(why, whylen, "setting %s: cannot read %s: %s", file_name, path,
                 strerror(error ? error : EIO));
    } else if (n > CONFIG_FILE_MAX_BYTES) {
        snprintf(why, whylen, "setting %s: %s is over %d bytes", file_name, path,
                 CONFIG_FILE_MAX_BYTES);
    } else if (memchr(buf, '\0', n) != NULL) {
        snprintf(why, whylen, "setting %s: %s holds a NUL byte", file_name, path);
    } else {
        if (n > 0 && buf[n - 1] == '\n')
            n -= n > 1 && buf[n - 2] == '\r' ? 2 : 1;
        buf[n] = '\0';
        if (n > 0)
            return buf;
        snprintf(why, whylen, "setting %s: %s is empty", file_name, path);
    }
    free(buf);
    return NULL;
}

/* The slot of NAME once NAME_FILE has been looked at (reading the file the first time),
 * or NULL when NAME_FILE is unset or empty. Call with the lock held. */
static const file_slot *file_lookup(const char *name)
{
    char file_name[160];
    if (strlen(name) >= sizeof files.slot[0].name)
        return NULL;
    snprintf(file_name, sizeof file_name, "%s_FILE", name);
    const char *path = getenv(file_name), *direct = getenv(name);
    if (path == NULL || path[0] == '\0')
        return NULL;
    for (size_t i = 0; i < files.n; i++)
        if (strcmp(files.slot[i].name, name) == 0)
            return &files.slot[i];
    if (files.n == CONFIG_FILE_SLOTS)
        return NULL;
    file_slot *sl = &files.slot[files.n++];
    snprintf(sl->name, sizeof sl->name, "%s", name);
    if (direct != NULL && direct[0] != '\0')
        snprintf(sl->error, sizeof sl->error,
                 "settings %s and %s are both set: set only one of them", name, file_name);
    else
        sl->value = read_secret_file(file_name, path, sl->error, sizeof sl->error);
    return sl;
}

/* The problem met with NAME_FILE, if any: fills `err` and returns -1; 0 when none. */
static int file_error(const char *name, calllog_error *err)
{
    int rc = 0;
    pthread_mutex_lock(&files.lock);
    const file_slot *sl = file_lookup(name);
    if (sl != NULL && sl->error[0] != '\0') {
        if (err)
            error_set(err, CALLLOG_INVALID, "%s", sl->error);
        rc = -1;
    }
    pthread_mutex_unlock(&files.lock);
    return rc;
}

const char *config_str(const char *name, const char *def)
{
    const char *v = getenv(name);
    pthread_mutex_lock(&files.lock);
    const file_slot *sl = file_lookup(name);
    if (sl != NULL)
        v = sl->value; /* NULL when the file could not be used: the default, and an error */
    pthread_mutex_unlock(&files.lock);
    return (v && *v) ? v : def;
}

int config_check(calllog_error *err)
{
    int rc = 0;
    pthread_mutex_lock(&files.lock);
    for (size_t i = 0; i < files.n && rc == 0; i++) {
        if (files.slot[i].error[0] != '\0') {
            error_set(err, CALLLOG_INVALID, "%s", files.slot[i].error);
            rc = -1;
        }
    }
    pthread_mutex_unlock(&files.lock);
    return rc;
}

int config_require_all(const char *const *names, calllog_error *err)
{
    char list[400] = "";
    size_t used = 0, missing = 0;
    for (size_t i = 0; names[i]; i++)
        if (file_error(names[i], err) != 0)
            return -1;
    for (size_t i = 0; names[i]; i++) {
        if (config_str(names[i], NULL))
            continue;
        int n = snprintf(list + used, sizeof list - used, "%s%s", missing ? ", " : "", names[i]);
        if (n > 0 && (size_t)n < sizeof list - used)
            used += (size_t)n;
        missing++;
    }
    if (missing == 0)
        return 0;
    error_set(err, CALLLOG_INVALID, "setting%s %s %s required but not set", missing > 1 ? "s" : "",
              list, missing > 1 ? "are" : "is");
    return -1;
}

int config_require(const char *name, const char **out, calllog_error *err)
{
    if (file_error(name, err) != 0)
        return -1;
    const char *v = config_str(name, NULL);
    if (!v) {
        error_set(err, CALLLOG_INVALID, "setting %s is required but not set", name);
        return -1;
    }
    *out = v;
    return 0;
}

int config_long(const char *name, long def, long min, long max, long *out, calllog_error *err)
{
    if (file_error(name, err) != 0)
        return -1;
    const char *v = config_str(name, NULL);
    if (!v) {
        *out = def;
        return 0;
    }
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end != '\0' || n < min || n > max) {
        char detail[160];
        snprintf(detail, sizeof detail, "expected an integer from %ld to %ld", min, max);
        return config_fail(err, name, detail);
    }
    *out = n;
    return 0;
}

int config_bool(const char *name, int def, int *out, calllog_error *err)
{
    static const char *const yes[] = {"1", "true", "yes", "on", NULL};
    static const char *const no[] = {"0", "false", "no", "off", NULL};
    if (file_error(name, err) != 0)
        return -1;
    const char *v = config_str(name, NULL);
    if (!v) {
        *out = def;
        return 0;
    }
    for (int i = 0; yes[i]; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return config_fail(err, name, "expected 1 or 0 (true/false, yes/no, on/off)");
}

int config_listen(const char *name, const char *def, char *host, size_t hostlen, int *port,
                  calllog_error *err)
{
    if (file_error(name, err) != 0)
        return -1;
    const char *v = config_str(name, def);
    const char *colon = v ? strrchr(v, ':') : NULL;
    if (!colon)
        return config_fail(err, name, "expected host:port");
    size_t hl = (size_t)(colon - v);
    const char *h = v;
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') { /* [v6]:port */
        h++;
        hl -= 2;
    }
    if (hl >= hostlen)
        return config_fail(err, name, "host too long");
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end != '\0' || p < 0 || p > 65535)
        return config_fail(err, name, "expected host:port with a port from 0 to 65535");
    memcpy(host, h, hl);
    host[hl] = '\0';
    if (strcmp(host, "*") == 0)
        host[0] = '\0';
    *port = (int)p;
    return 0;
}

int config_choice(const char *name, const char *def, const char *const *choices, int *out,
                  calllog_error *err)
{
    if (file_error(name, err) != 0)
        return -1;
    const char *v = config_str(name, def);
    for (int i = 0; v && choices[i]; i++) {
        if (strcmp(v, choices[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    char detail[256] = "expected one of:";
    for (int i = 0; choices[i]; i++) {
        strncat(detail, " ", sizeof detail - strlen(detail) - 1);
        strncat(detail, choices[i], sizeof detail - strlen(detail) - 1);
    }
    return config_fail(err, name, detail);
}

/* Reads a public base URL; see the header. */
int config_base_url(const char *name, char *out, size_t outlen, calllog_error *err)
{
    const char *v;
    if (config_require(name, &v, err) != 0)
        return -1;
    if (strncmp(v, "https://", 8) != 0 && strncmp(v, "http://", 7) != 0)
        return config_fail(err, name, "expected http(s)://host[:port]");
    if (strpbrk(v, "?# ") || strlen(v) >= outlen)
        return config_fail(err, name, "must be scheme://host[:port] without query or fragment");
    snprintf(out, outlen, "%s", v);
    for (size_t n = strlen(out); n > 0 && out[n - 1] == '/'; n--)
        out[n - 1] = '\0';
    return 0;
}
