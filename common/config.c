/* config — settings from the environment and an optional env file (see config.h). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Fills `err` with "setting NAME is malformed: DETAIL". */
int config_fail(config_error *err, const char *name, const char *detail)
{
    if (err)
        snprintf(err->msg, sizeof err->msg, "setting %s is malformed: %s", name, detail);
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
static int apply_env_line(char *line, const char *path, int lineno, config_error *err)
{
    char *s = trim(line);
    if (*s == '\0' || *s == '#')
        return 0;
    if (strncmp(s, "export ", 7) == 0)
        s = trim(s + 7);
    char *eq = strchr(s, '=');
    if (!eq || eq == s) {
        snprintf(err->msg, sizeof err->msg, "env file %s line %d: expected KEY=VALUE", path,
                 lineno);
        return -1;
    }
    *eq = '\0';
    char *key = trim(s);
    for (const char *k = key; *k; k++) {
        if (!isalnum((unsigned char)*k) && *k != '_') {
            snprintf(err->msg, sizeof err->msg, "env file %s line %d: bad variable name", path,
                     lineno);
            return -1;
        }
    }
    char *value = unquote(trim(eq + 1));
    const char *current = getenv(key); /* set and non-empty: the environment wins */
    if ((!current || !*current) && setenv(key, value, 1) != 0) {
        snprintf(err->msg, sizeof err->msg, "env file %s: cannot set %s", path, key);
        return -1;
    }
    return 0;
}

int config_load_env_file(const char *path, config_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err->msg, sizeof err->msg, "cannot read env file %s: %s", path, strerror(errno));
        return -1;
    }
    char line[4096];
    int lineno = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            snprintf(err->msg, sizeof err->msg, "env file %s line %d: line too long", path, lineno);
            rc = -1;
            break;
        }
        rc = apply_env_line(line, path, lineno, err);
    }
    fclose(f);
    return rc;
}

const char *config_str(const char *name, const char *def)
{
    const char *v = getenv(name);
    return (v && *v) ? v : def;
}

int config_require_all(const char *const *names, config_error *err)
{
    char list[400] = "";
    size_t used = 0, missing = 0;
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
    snprintf(err->msg, sizeof err->msg, "setting%s %s %s required but not set",
             missing > 1 ? "s" : "", list, missing > 1 ? "are" : "is");
    return -1;
}

int config_require(const char *name, const char **out, config_error *err)
{
    const char *v = config_str(name, NULL);
    if (!v) {
        snprintf(err->msg, sizeof err->msg, "setting %s is required but not set", name);
        return -1;
    }
    *out = v;
    return 0;
}

int config_long(const char *name, long def, long min, long max, long *out, config_error *err)
{
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

int config_bool(const char *name, int def, int *out, config_error *err)
{
    static const char *const yes[] = {"1", "true", "yes", "on", NULL};
    static const char *const no[] = {"0", "false", "no", "off", NULL};
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
                  config_error *err)
{
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
                  config_error *err)
{
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
