/* twilio_api — Twilio REST settings, SIDs and recordings shared by the worker and the
 * ingest (see the header). Facts: ../shared/reference/twilio.md ("REST API"). */
#include "common/twilio_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"

/* Reads the settings; see the header. */
int twilio_settings_load(twilio_settings *t)
{
    static char base[1024];
    snprintf(base, sizeof base, "%s", config_str("TWILIO_API_BASE_URL", "https://api.twilio.com"));
    for (size_t n = strlen(base); n > 0 && base[n - 1] == '/'; n--)
        base[n - 1] = '\0';
    t->base_url = base;
    t->account_sid = config_str("TWILIO_ACCOUNT_SID", NULL);
    t->username = config_str("TWILIO_API_KEY_SID", NULL);
    t->password = config_str("TWILIO_API_KEY_SECRET", NULL);
    if (!t->username || !t->password) {
        t->username = t->account_sid;
        t->password = config_str("TWILIO_AUTH_TOKEN", NULL);
    }
    return t->account_sid && t->username && t->password;
}

/* 1 when a SID is letters and digits only, as Twilio's are. */
int twilio_sid_ok(const char *sid)
{
    size_t n = sid ? strlen(sid) : 0;
    for (size_t i = 0; i < n; i++)
        if (!((sid[i] >= '0' && sid[i] <= '9') || (sid[i] >= 'a' && sid[i] <= 'z') ||
              (sid[i] >= 'A' && sid[i] <= 'Z')))
            return 0;
    return n > 0 && n < 64;
}

/* The "user:password" pair; see the header. */
char *twilio_basic_auth(const twilio_settings *t)
{
    if (t == NULL || t->username == NULL || t->password == NULL)
        return NULL;
    size_t n = strlen(t->username) + strlen(t->password) + 2;
    char *auth = malloc(n);
    if (auth != NULL)
        snprintf(auth, n, "%s:%s", t->username, t->password);
    return auth;
}

/* 1 when a recording in `status` may still become completed. */
static int still_coming(const char *status)
{
    return strcmp(status, "processing") == 0 || strcmp(status, "in-progress") == 0 ||
           strcmp(status, "paused") == 0 || strcmp(status, "stopped") == 0;
}

/* Chooses the recording to play; see the header. */
twilio_recording_state twilio_pick_recording(const json_t *list, char *sid, size_t sidlen)
{
    twilio_recording_state state = TWILIO_RECORDING_NONE;
    size_t i;
    json_t *rec;
    if (sidlen > 0)
        sid[0] = '\0';
    json_array_foreach(json_object_get(list, "recordings"), i, rec)
    {
        const char *rsid = json_string_value(json_object_get(rec, "sid"));
        const char *status = json_string_value(json_object_get(rec, "status"));
        if (!rsid || !status || !twilio_sid_ok(rsid))
            continue;
        if (strcmp(status, "completed") == 0 && strlen(rsid) < sidlen) {
            snprintf(sid, sidlen, "%s", rsid);
            return TWILIO_RECORDING_COMPLETED;
        }
        if (still_coming(status))
            state = TWILIO_RECORDING_PROCESSING;
    }
    return state;
}

/* Writes a recording's media URL; see the header. */
int twilio_recording_media_url(const char *base_url, const char *account_sid,
                               const char *recording_sid, const char *ext, char *out, size_t outlen)
{
    if (base_url == NULL || !twilio_sid_ok(account_sid) || !twilio_sid_ok(recording_sid))
        return -1;
    int n = snprintf(out, outlen, "%s/2010-04-01/Accounts/%s/Recordings/%s%s", base_url,
                     account_sid, recording_sid, ext ? ext : "");
    return n >= 0 && (size_t)n < outlen ? n : -1;
}
