/* redact — secrets out of messages and URLs; see redact.h.
 *
 * One left-to-right pass: at each position the longest secret that starts there is
 * replaced by the mask, else the byte is copied (folded to one line when asked). Nothing is
 * allocated, so it is safe on the error paths that run out of memory. */
#include "common/redact.h"

#include <stdio.h>
#include <string.h>

/* Length of the longest usable secret that starts at `s`, or 0 when none does. */
static size_t secret_at(const char *s, const char *const *secrets, size_t nsecrets, unsigned flags)
{
    size_t best = 0;
    for (size_t i = 0; i < nsecrets; i++) {
        size_t n = secrets[i] ? strlen(secrets[i]) : 0;
        if (n == 0 || n <= best || ((flags & REDACT_SKIP_SHORT) && n < REDACT_SHORT_SECRET))
            continue;
        if (strncmp(s, secrets[i], n) == 0)
            best = n;
    }
    return best;
}

/* Copies `in` into `out` with every secret masked; see redact.h. */
void redact_copy(char *out, size_t outlen, const char *in, const char *const *secrets,
                 size_t nsecrets, unsigned flags)
{
    size_t o = 0;
    int one_line = (flags & REDACT_ONE_LINE) != 0;
    if (outlen == 0)
        return;
    for (const char *p = in ? in : ""; *p && o + 1 < outlen;) {
        size_t n = secret_at(p, secrets, nsecrets, flags);
        if (n > 0) {
            for (const char *r = REDACT_MASK; *r && o + 1 < outlen; r++)
                out[o++] = *r;
            p += n;
            continue;
        }
        char ch = *p++;
        if (one_line) {
            if (ch == '\n' || ch == '\r' || ch == '\t')
                ch = ' ';
            if (ch == ' ' && (o == 0 || out[o - 1] == ' '))
                continue;
        }
        out[o++] = ch;
    }
    while (one_line && o > 0 && out[o - 1] == ' ')
        o--;
    out[o] = '\0';
}

/* Masks the secrets in an error's message, in place. */
void redact_error(calllog_error *err, const char *const *secrets, size_t nsecrets, unsigned flags)
{
    char copy[sizeof err->message];
    if (err == NULL)
        return;
    memcpy(copy, err->message, sizeof copy);
    copy[sizeof copy - 1] = '\0';
    redact_copy(err->message, sizeof err->message, copy, secrets, nsecrets, flags);
}

/* Finds the password of a URL's user info; see redact.h. */
size_t redact_url_password(const char *url, const char **start)
{
    const char *scheme = url ? strstr(url, "://") : NULL;
    if (start != NULL)
        *start = NULL;
    if (scheme == NULL)
        return 0;
    const char *auth = scheme + 3;
    const char *end = auth + strcspn(auth, "/?#");
    const char *at = NULL;
    for (const char *p = auth; p < end; p++)
        if (*p == '@')
            at = p;
    const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (colon == NULL || at == colon + 1)
        return 0;
    if (start != NULL)
        *start = colon + 1;
    return (size_t)(at - colon - 1);
}

/* Copies a URL with the password of its user info masked. */
void redact_url(const char *url, char *out, size_t outlen)
{
    const char *pw;
    size_t n = redact_url_password(url, &pw);
    if (outlen == 0)
        return;
    if (n == 0) {
        snprintf(out, outlen, "%s", url ? url : "");
        return;
    }
    snprintf(out, outlen, "%.*s%s%s", (int)(pw - url), url, REDACT_MASK, pw + n);
}
