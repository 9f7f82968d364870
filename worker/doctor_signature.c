/* doctor_signature — finds the URL variant a Twilio signature was made for (see
 * doctor_signature.h). Twilio signs the URL it was configured with; the ingest signs
 * PUBLIC_BASE_URL + the path. The usual mistakes (http behind a TLS proxy, an internal host
 * or port, a trailing slash, a dropped query) are each one variant: try them all with the
 * configured token(s) and name the one that matches. */
#include "worker/doctor_signature.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/buffer.h"
#include "common/config.h"
#include "common/signature.h"
#include "worker/doctor_report.h"

#define LOG_CALL_PATH "/twilio/log-call"
#define RECOMMENDED_FRAGMENT "#rc=3&rp=all&ct=3000&rt=10000"

typedef struct url_parts {
    char scheme[16], host[256], port[8], path[1024], query[1024];
    int has_query;
} url_parts;

/* Splits `url` ("scheme://[user@]host[:port][/path][?query][#fragment]", or a path
 * alone) into its parts, the scheme lower-cased. Returns 0, or -1 when unreadable. */
static int url_split(const char *url, url_parts *u)
{
    memset(u, 0, sizeof *u);
    const char *p = url, *sep = strstr(url, "://");
    if (sep && sep < url + strcspn(url, "/?#")) {
        size_t n = (size_t)(sep - url);
        if (n == 0 || n >= sizeof u->scheme)
            return -1;
        for (size_t i = 0; i < n; i++)
            u->scheme[i] = (char)(url[i] >= 'A' && url[i] <= 'Z' ? url[i] - 'A' + 'a' : url[i]);
        p = sep + 3;
        size_t alen = strcspn(p, "/?#");
        const char *at = memchr(p, '@', alen), *host = at ? at + 1 : p, *end = p + alen;
        const char *colon = NULL;
        if (*host == '[') {
            const char *rb = memchr(host, ']', (size_t)(end - host));
            if (!rb)
                return -1;
            colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
        } else {
            colon = memchr(host, ':', (size_t)(end - host));
        }
        const char *hend = colon ? colon : end;
        if (hend == host || (size_t)(hend - host) >= sizeof u->host ||
            (colon && (size_t)(end - colon - 1) >= sizeof u->port))
            return -1;
        snprintf(u->host, sizeof u->host, "%.*s", (int)(hend - host), host);
        if (colon)
            snprintf(u->port, sizeof u->port, "%.*s", (int)(end - colon - 1), colon + 1);
        p = end;
    } else if (*url != '/') {
        return -1;
    }
    size_t plen = strcspn(p, "?#");
    if (plen >= sizeof u->path)
        return -1;
    snprintf(u->path, sizeof u->path, "%.*s", (int)plen, p);
    p += plen;
    if (*p == '?') {
        size_t qlen = strcspn(p + 1, "#");
        if (qlen >= sizeof u->query)
            return -1;
        u->has_query = 1;
        snprintf(u->query, sizeof u->query, "%.*s", (int)qlen, p + 1);
    }
    return 0;
}

/* The scheme's default port ("443", "80") or "". */
static const char *default_port(const char *scheme)
{
    return strcmp(scheme, "https") == 0 ? "443" : strcmp(scheme, "http") == 0 ? "80" : "";
}

/* 1 when two ports are the same for `scheme` (none = the default). */
static int same_port(const char *scheme, const char *a, const char *b)
{
    const char *da = a[0] ? a : default_port(scheme), *db = b[0] ? b : default_port(scheme);
    return strcmp(da, db) == 0;
}

/* Adds `v` to the set `set[0..*n)` of at most `max` strings unless present or empty. */
static void set_add(const char **set, size_t *n, size_t max, const char *v, int allow_empty)
{
    if ((!allow_empty && !v[0]) || *n == max)
        return;
    for (size_t i = 0; i < *n; i++)
        if (strcmp(set[i], v) == 0)
            return;
    set[(*n)++] = v;
}

/* Writes "scheme://host[:port]" into `out`. */
static void origin(char *out, size_t outlen, const char *scheme, const char *host, const char *port)
{
    snprintf(out, outlen, "%s://%s%s%s", scheme, host, port[0] ? ":" : "", port);
}

/* Describes how the matched variant `m` differs from what the ingest signs, `e`. */
static void describe_differences(const url_parts *m, const url_parts *e, char *out, size_t outlen)
{
    size_t used = 0;
    out[0] = '\0';
#define DIFF(...)                                                                                  \
    do {                                                                                           \
        if (used < outlen)                                                                         \
            used += (size_t)snprintf(out + used, outlen - used, "%s", used ? "; " : "");           \
        if (used < outlen)                                                                         \
            used += (size_t)snprintf(out + used, outlen - used, __VA_ARGS__);                      \
    } while (0)
    if (strcmp(m->scheme, e->scheme) != 0)
        DIFF("scheme %s, not %s", m->scheme, e->scheme);
    if (strcasecmp(m->host, e->host) != 0)
        DIFF("host %s, not %s", m->host, e->host);
    if (strcmp(m->scheme, e->scheme) == 0 && !same_port(m->scheme, m->port, e->port))
        DIFF("port %s, not %s", m->port[0] ? m->port : "(none)", e->port[0] ? e->port : "(none)");
    else if (strcmp(m->scheme, e->scheme) != 0 && m->port[0])
        DIFF("port %s", m->port);
    if (strcmp(m->path, e->path) != 0)
        DIFF("path %s, not %s", m->path[0] ? m->path : "(empty)", e->path);
    if (m->has_query != e->has_query)
        DIFF("%s", m->has_query ? "query kept" : "query dropped");
#undef DIFF
}

int doctor_signature_diagnose(const char *const *tokens, size_t ntokens,
                              const char *public_base_url, const char *url, const form *params,
                              const char *signature, doctor_sig_diagnosis *out)
{
    url_parts u, b, e, m;
    memset(out, 0, sizeof *out);
    if (!url || !public_base_url || !signature || url_split(url, &u) != 0 ||
        url_split(public_base_url, &b) != 0 || !b.scheme[0])
        return -1;
    if (!u.scheme[0]) { /* a path alone: Twilio's request went to PUBLIC_BASE_URL's origin */
        memcpy(u.scheme, b.scheme, sizeof u.scheme);
        memcpy(u.host, b.host, sizeof u.host);
        memcpy(u.port, b.port, sizeof u.port);
    }
    size_t blen = strlen(b.path);
    while (blen > 0 && b.path[blen - 1] == '/')
        b.path[--blen] = '\0';
    /* What the ingest signs: PUBLIC_BASE_URL + its only route + the raw query. */
    e = b;
    snprintf(e.path, sizeof e.path, "%.990s%s", b.path, LOG_CALL_PATH);
    e.has_query = u.has_query;
    memcpy(e.query, u.query, sizeof e.query);
    char eorigin[600];
    origin(eorigin, sizeof eorigin, e.scheme, e.host, e.port);
    snprintf(out->expected_url, sizeof out->expected_url, "%s%s%s%s", eorigin, e.path,
             e.has_query ? "?" : "", e.query);
    for (size_t t = 0; t < ntokens; t++) {
        if (tokens[t] && tokens[t][0] &&
            signature_check_form(&tokens[t], 1, out->expected_url, params, signature) == SIG_OK) {
            out->verified = out->matched = 1;
            out->token = (int)t;
            snprintf(out->signed_url, sizeof out->signed_url, "%s", out->expected_url);
            snprintf(out->base_url, sizeof out->base_url, "%.400s%.600s", eorigin, b.path);
            return 0;
        }
    }
    const char *schemes[4], *hosts[2], *ports[5], *paths[3];
    size_t ns = 0, nh = 0, np = 0, npath = 0;
    char toggled[1024], route[1100];
    set_add(schemes, &ns, 4, u.scheme, 0);
    set_add(schemes, &ns, 4, b.scheme, 0);
    set_add(schemes, &ns, 4, "https", 0);
    set_add(schemes, &ns, 4, "http", 0);
    set_add(hosts, &nh, 2, u.host, 0);
    set_add(hosts, &nh, 2, b.host, 0);
    set_add(ports, &np, 5, "", 1);
    set_add(ports, &np, 5, u.port, 0);
    set_add(ports, &np, 5, b.port, 0);
    set_add(ports, &np, 5, "443", 0);
    set_add(ports, &np, 5, "80", 0);
    size_t plen = strlen(u.path);
    if (plen > 0 && u.path[plen - 1] == '/')
        snprintf(toggled, sizeof toggled, "%.*s", (int)(plen - 1), u.path);
    else
        snprintf(toggled, sizeof toggled, "%.1022s/", u.path);
    snprintf(route, sizeof route, "%s", e.path);
    set_add(paths, &npath, 3, u.path, 1);
    set_add(paths, &npath, 3, toggled, 0);
    set_add(paths, &npath, 3, route, 0);
    char cand[2600], sig[SIGNATURE_LEN + 1];
    for (size_t t = 0; t < ntokens; t++) {
        for (size_t q = 0; q < (u.has_query ? 2u : 1u); q++) {
            for (size_t pa = 0; pa < npath; pa++) {
                for (size_t s = 0; s < ns; s++) {
                    for (size_t h = 0; h < nh; h++) {
                        for (size_t po = 0; po < np; po++) {
                            if (!tokens[t] || !tokens[t][0])
                                continue;
                            char o[600];
                            origin(o, sizeof o, schemes[s], hosts[h], ports[po]);
                            snprintf(cand, sizeof cand, "%s%s%s%s", o, paths[pa],
                                     q == 0 && u.has_query ? "?" : "", q == 0 ? u.query : "");
                            if (signature_compute(tokens[t], cand, params, sig) != 0)
                                return -1;
                            if (strcmp(sig, signature) != 0)
                                continue;
                            out->matched = 1;
                            out->token = (int)t;
                            snprintf(out->signed_url, sizeof out->signed_url, "%s", cand);
                            memset(&m, 0, sizeof m);
                            snprintf(m.scheme, sizeof m.scheme, "%s", schemes[s]);
                            snprintf(m.host, sizeof m.host, "%s", hosts[h]);
                            snprintf(m.port, sizeof m.port, "%s", ports[po]);
                            snprintf(m.path, sizeof m.path, "%s", paths[pa]);
                            m.has_query = q == 0 && u.has_query;
                            describe_differences(&m, &e, out->differences, sizeof out->differences);
                            size_t mp = strlen(m.path), rl = strlen(LOG_CALL_PATH);
                            int routed = mp >= rl && strcmp(m.path + mp - rl, LOG_CALL_PATH) == 0;
                            snprintf(out->base_url, sizeof out->base_url, "%s%.*s", o,
                                     routed ? (int)(mp - rl) : 0, m.path);
                            return 0;
                        }
                    }
                }
            }
        }
    }
    return 0;
}

/* Reads all of `path` (at most 16 MiB) into a malloc'ed, NUL-terminated string, one
 * trailing newline dropped. Returns NULL when unreadable or too large. */
static char *read_body(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    buffer b;
    buffer_init(&b, (size_t)1 << 24);
    for (char *room; (room = buffer_reserve(&b, 4096)) != NULL;) {
        size_t got = fread(room, 1, 4096, f);
        buffer_commit(&b, got);
        if (got == 0)
            break;
    }
    int failed = ferror(f);
    fclose(f);
    size_t n = buffer_len(&b);
    char *body = failed ? NULL : buffer_take(&b);
    buffer_free(&b);
    if (!body)
        return NULL;
    if (n > 0 && body[n - 1] == '\n')
        body[--n] = '\0';
    if (n > 0 && body[n - 1] == '\r')
        body[--n] = '\0';
    *len = n;
    return body;
}

/* The report line for a diagnosis. */
static void report_diagnosis(doctor_report *r, const doctor_sig_diagnosis *g, const char *base,
                             const char *const *names)
{
    char fix[3000];
    if (g->verified) {
        doctor_report_add(r, "signature", DOCTOR_OK, NULL,
                          "the ingest accepts it: signed with %s for %s", names[g->token],
                          g->signed_url);
    } else if (g->matched) {
        snprintf(fix, sizeof fix,
                 "make the URL configured in Twilio and PUBLIC_BASE_URL agree: set "
                 "PUBLIC_BASE_URL=%.400s, or (better when it is http://) set the number's "
                 "status callback to %.600s" RECOMMENDED_FRAGMENT,
                 g->base_url, g->expected_url);
        doctor_report_add(r, "signature", DOCTOR_FAIL, fix,
                          "signed with %s for %s, but the ingest (PUBLIC_BASE_URL=%s) checks %s: "
                          "%s",
                          names[g->token], g->signed_url, base, g->expected_url, g->differences);
    } else {
        doctor_report_add(r, "signature", DOCTOR_FAIL,
                          "use the auth token of the account that sent the request, and paste "
                          "the body exactly as Twilio sent it",
                          "no variant of the URL (scheme, host, port, trailing slash, query) "
                          "matches with the configured token(s): the token is another "
                          "account's, or the parameters differ from what Twilio signed");
    }
}

int doctor_signature_run(const char *url, const char *params_file, const char *signature, int json,
                         FILE *out)
{
    const char *tokens[2] = {config_str("TWILIO_AUTH_TOKEN", NULL),
                             config_str("TWILIO_AUTH_TOKEN_SECONDARY", NULL)};
    static const char *const names[2] = {"TWILIO_AUTH_TOKEN", "TWILIO_AUTH_TOKEN_SECONDARY"};
    const char *base = config_str("PUBLIC_BASE_URL", NULL);
    doctor_report *r = doctor_report_new();
    size_t len = 0;
    char *body = read_body(params_file, &len);
    form params = {0};
    form_status fs = body && body[0] != '{' ? form_parse(body, len, 10000, &params) : FORM_OK;
    doctor_sig_diagnosis g;
    int rc = 1;
    if (!r) {
        free(body);
        return 1;
    }
    if (!tokens[0] && !tokens[1])
        doctor_report_add(r, "signature", DOCTOR_FAIL, "set TWILIO_AUTH_TOKEN (the ingest's)",
                          "TWILIO_AUTH_TOKEN not set: nothing to check the signature with");
    else if (!base)
        doctor_report_add(r, "signature", DOCTOR_FAIL, "set PUBLIC_BASE_URL (the ingest's)",
                          "PUBLIC_BASE_URL not set: cannot tell what the ingest signs");
    else if (!body)
        doctor_report_add(r, "signature", DOCTOR_FAIL, NULL, "cannot read %s", params_file);
    else if (fs != FORM_OK)
        doctor_report_add(r, "signature", DOCTOR_FAIL, "paste the raw form-encoded body (a=1&b=2)",
                          "%s is not a form body: %s", params_file, form_strerror(fs));
    else if (doctor_signature_diagnose(tokens[0] ? tokens : tokens + 1, tokens[0] ? 2 : 1, base,
                                       url, &params, signature, &g) != 0)
        doctor_report_add(r, "signature", DOCTOR_FAIL,
                          "give --url as Twilio shows it (https://host/twilio/log-call?...)",
                          "cannot read --url %s or PUBLIC_BASE_URL", url);
    else {
        if (!tokens[0])
            g.token = 1; /* only the secondary was given */
        report_diagnosis(r, &g, base, names);
        rc = g.verified ? 0 : 1;
    }
    doctor_report_print(r, json, out);
    doctor_report_free(r);
    form_free(&params);
    free(body);
    return rc;
}
