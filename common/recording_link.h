/* recording_link — the signed links to a call's recording that notes carry.
 *
 * A note in RD Station is read by salespeople who have no Twilio credentials, and Twilio
 * asks for them on media URLs (HTTP auth on media, on by default since 2023). So with
 * RECORDING_LINK_SECRET set the worker writes a link to the ingest instead,
 * PUBLIC_BASE_URL/recordings/<CallSid>?t=<token>, and the ingest fetches the audio with
 * its own credentials. The token proves that calllog wrote the link for that CallSid:
 *
 *   without expiry  t = b64url(HMAC-SHA256(secret, CallSid))               (43 characters)
 *   with expiry     t = <exp>.b64url(HMAC-SHA256(secret, CallSid "." <exp>))
 *
 * where b64url is base64 with the URL-safe alphabet and no padding, and <exp> the epoch
 * second after which the link is refused. Notes are permanent, so links do not expire
 * unless RECORDING_LINK_TTL_DAYS asks for it; changing the secret revokes every link
 * written with the old one. Checking compares the whole MAC in constant time
 * (CRYPTO_memcmp), and only a valid MAC is then checked for expiry. Both the worker
 * (writing) and the ingest (checking) use this module; it holds no state. */
#ifndef CALLLOG_RECORDING_LINK_H
#define CALLLOG_RECORDING_LINK_H

#include <stddef.h>
#include <time.h>

/* Shortest RECORDING_LINK_SECRET accepted (bytes). */
#define RECORDING_LINK_SECRET_MIN 16
/* Room for any token, terminator included. */
#define RECORDING_LINK_TOKEN_MAX 64
/* Length of the MAC part of a token. */
#define RECORDING_LINK_MAC_LEN 43

typedef enum recording_link_verdict {
    RECORDING_LINK_VALID = 0,
    RECORDING_LINK_MISSING,   /* no token at all */
    RECORDING_LINK_MALFORMED, /* not shaped like a token (length, alphabet, expiry) */
    RECORDING_LINK_FORGED,    /* well-formed, but not this secret's MAC of this CallSid */
    RECORDING_LINK_EXPIRED    /* a valid MAC whose expiry has passed */
} recording_link_verdict;

/* 1 when `sid` is a Twilio CallSid: "CA" followed by 32 hexadecimal digits. */
int recording_link_call_sid_ok(const char *sid);

/* Writes the token of `call_sid` (expiring at `expires`, epoch seconds; 0 = never) into
 * `out`. Returns its length, or -1 when the secret is shorter than
 * RECORDING_LINK_SECRET_MIN, the CallSid is not one, or `out` is too small
 * (RECORDING_LINK_TOKEN_MAX always suffices). */
int recording_link_token(const char *secret, const char *call_sid, time_t expires, char *out,
                         size_t outlen);

/* Checks `token` (NULL or "" is MISSING) for `call_sid` at time `now`. An unusable
 * secret or CallSid is FORGED: nothing is accepted then. */
recording_link_verdict recording_link_check(const char *secret, const char *call_sid,
                                            const char *token, time_t now);

/* The verdict's name for logs and metric labels ("valid", "missing", "malformed",
 * "forged", "expired"). */
const char *recording_link_verdict_name(recording_link_verdict v);

/* Writes "<base_url>/recordings/<call_sid>?t=<token>" into `out` (`base_url` without a
 * trailing slash). Returns the URL's length, or -1 as recording_link_token does or when
 * `out` is too small. */
int recording_link_url(const char *base_url, const char *secret, const char *call_sid,
                       time_t expires, char *out, size_t outlen);

#endif
