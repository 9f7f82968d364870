/* twilio_api — what every Twilio REST client of calllog shares: the credentials read from
 * the environment, the shape of SIDs, the Basic-auth pair, and which of a call's
 * recordings to use and where its media lives.
 *
 * Two programs talk to Twilio's REST API: the worker (enrichment and reconciliation,
 * worker/twilio_rest.h) and the ingest (the recording links of notes,
 * ingest/recordings.h). They must read the same settings the same way and agree on the
 * recording a note links to, so that lives here; each keeps its own request and retry
 * code, because their budgets differ (the worker may wait a little, a browser may not). */
#ifndef CALLLOG_TWILIO_API_H
#define CALLLOG_TWILIO_API_H

#include <jansson.h>
#include <stddef.h>

typedef struct twilio_settings {
    const char *base_url;    /* TWILIO_API_BASE_URL, default https://api.twilio.com */
    const char *account_sid; /* TWILIO_ACCOUNT_SID */
    const char *username;    /* API key SID (SK…) or the account SID */
    const char *password;    /* API key secret or the auth token */
    long timeout_ms;
    int max_tries; /* attempts on 429/5xx/network errors, e.g. 3 */
} twilio_settings;

/* Which recording of a call there is to play. */
typedef enum twilio_recording_state {
    TWILIO_RECORDING_NONE = 0,   /* none, or only absent/failed ones */
    TWILIO_RECORDING_PROCESSING, /* none completed yet, but one is on its way */
    TWILIO_RECORDING_COMPLETED   /* a completed one: its SID is given */
} twilio_recording_state;

/* Reads TWILIO_API_BASE_URL (default https://api.twilio.com, trailing slashes dropped),
 * TWILIO_ACCOUNT_SID and the credentials: TWILIO_API_KEY_SID with TWILIO_API_KEY_SECRET
 * when both are set (preferred), else TWILIO_ACCOUNT_SID with TWILIO_AUTH_TOKEN.
 * timeout_ms and max_tries are left for the caller. Strings point into the environment
 * or the loaded configuration (process lifetime). Returns 1 when the account and a
 * credential pair are all set, 0 when something is missing. Call once per program. */
int twilio_settings_load(twilio_settings *t);

/* 1 when `sid` is safe to put in a URL path: 1–63 ASCII letters and digits, as every
 * Twilio SID is. */
int twilio_sid_ok(const char *sid);

/* The Basic-auth pair "username:password" (malloc'ed; the caller wipes and frees it), or
 * NULL when a part is missing or out of memory. */
char *twilio_basic_auth(const twilio_settings *t);

/* Chooses from a GET …/Calls/{CA}/Recordings.json answer: the first recording whose
 * `status` is `completed` (its SID copied into `sid`), else PROCESSING when one is
 * `processing` or still `in-progress`/`paused`/`stopped`, else NONE (`absent`, `failed`,
 * or no recording at all). Recordings whose SID is not usable in a path are skipped. */
twilio_recording_state twilio_pick_recording(const json_t *list, char *sid, size_t sidlen);

/* Writes the media URL of recording `recording_sid` into `out`:
 * <base_url>/2010-04-01/Accounts/<AC>/Recordings/<RE><ext>, where `ext` is "" (Twilio's
 * default format), ".mp3" or ".wav". Returns its length, or -1 when a SID is unusable or
 * `out` is too small. */
int twilio_recording_media_url(const char *base_url, const char *account_sid,
                               const char *recording_sid, const char *ext, char *out,
                               size_t outlen);

#endif
