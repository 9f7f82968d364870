/* keys — Redis key names derived from CALLLOG_KEY_PREFIX (see keys.h). */
#include "common/keys.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

int keys_build(const char *prefix, calllog_keys *out)
{
    size_t n = prefix ? strlen(prefix) : 0;
    if (n == 0 || n > KEYS_MAX - 32)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (isspace((unsigned char)prefix[i]) || iscntrl((unsigned char)prefix[i]))
            return -1;
    }
    snprintf(out->events, sizeof out->events, "%s:events", prefix);
    snprintf(out->retry, sizeof out->retry, "%s:retry", prefix);
    snprintf(out->dead, sizeof out->dead, "%s:dead", prefix);
    snprintf(out->ratelimit, sizeof out->ratelimit, "%s:ratelimit:rdstation", prefix);
    snprintf(out->cache, sizeof out->cache, "%s:cache:", prefix);
    snprintf(out->oauth, sizeof out->oauth, "%s:oauth:rdstation", prefix);
    snprintf(out->reconcile, sizeof out->reconcile, "%s:reconcile", prefix);
    snprintf(out->reconcile_leader, sizeof out->reconcile_leader, "%s:reconcile:leader", prefix);
    snprintf(out->reconcile_enqueued, sizeof out->reconcile_enqueued, "%s:reconcile:enqueued",
             prefix);
    snprintf(out->rdstation_plan, sizeof out->rdstation_plan, "%s:rdstation:plan", prefix);
    snprintf(out->phone_index, sizeof out->phone_index, "%s:phoneidx", prefix);
    snprintf(out->phone_index_meta, sizeof out->phone_index_meta, "%s:phoneidx:meta", prefix);
    snprintf(out->phone_index_leader, sizeof out->phone_index_leader, "%s:phoneidx:leader", prefix);
    return 0;
}
