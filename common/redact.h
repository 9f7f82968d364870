/* redact — the one place secrets are taken out of text before it is logged or stored.
 *
 * calllog's rule is that no secret reaches a log line, a calllog_error message, a dead
 * letter or a database row. Three kinds of text can carry one, and each has a function:
 *   - a message that may repeat a known secret (libpq's connection errors quote the
 *     password, an API error may echo the RD Station v1 token of the query string or an
 *     OAuth access token): redact_copy / redact_error replace every occurrence of each
 *     secret with REDACT_MASK;
 *   - a URL or connection string with a password in its user info
 *     ("redis://:pw@host:6379/0", "postgresql://user:pw@host/db"): redact_url masks it, and
 *     redact_url_password finds it so that a caller can add it to its list of secrets.
 * Messages are redacted before they are truncated into a fixed-size field, so a cut can
 * never leave the first half of a secret behind. URLs whose path or query is the secret
 * (a Slack webhook, RD v1's ?token=) are reduced to their origin by http_url_origin
 * (http_client.h) instead; a token that still appears in a message is caught here. */
#ifndef CALLLOG_REDACT_H
#define CALLLOG_REDACT_H

#include <stddef.h>

#include "common/error.h"

/* What a secret is replaced with. */
#define REDACT_MASK "***"

/* Secrets shorter than this are left alone under REDACT_SKIP_SHORT. */
#define REDACT_SHORT_SECRET 4

/* Flags of redact_copy and redact_error. */
enum {
    /* Newlines, carriage returns and tabs become spaces, runs of spaces collapse into one,
     * leading and trailing spaces go: a multi-line libpq message becomes one log line. */
    REDACT_ONE_LINE = 1,
    /* Secrets shorter than REDACT_SHORT_SECRET bytes are not looked for: masking every "tok"
     * of a message would garble it while hiding nothing worth hiding. */
    REDACT_SKIP_SHORT = 2
};

/* Copies `in` (NULL reads as "") into `out` (NUL-terminated, truncated to `outlen`) with
 * every occurrence of any of the `nsecrets` secrets replaced by REDACT_MASK; where two
 * secrets start at the same place the longer one is masked. NULL and empty secrets are
 * skipped. `flags` is a mix of REDACT_ONE_LINE and REDACT_SKIP_SHORT. */
void redact_copy(char *out, size_t outlen, const char *in, const char *const *secrets,
                 size_t nsecrets, unsigned flags);

/* redact_copy applied in place to `err->message` (`err` may be NULL). */
void redact_error(calllog_error *err, const char *const *secrets, size_t nsecrets, unsigned flags);

/* Finds the password in the user info of `url` ("scheme://user:password@host…": between
 * the first ':' of the user info and its last '@', before any '/', '?' or '#'). Returns
 * its length (0 when there is none: no "://", no '@', no ':' or an empty password) and
 * sets `*start` (may be NULL) to it, a pointer into `url`. */
size_t redact_url_password(const char *url, const char **start);

/* Copies `url` (NULL reads as "") into `out` with the password of its user info replaced
 * by REDACT_MASK ("redis://:***@host:6379/0"); a URL without one is copied unchanged. */
void redact_url(const char *url, char *out, size_t outlen);

#endif
