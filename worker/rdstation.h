/* rdstation — RD Station CRM client, API v1 (token) and v2 (OAuth2), behind one face.
 *
 * Finds the contact for a phone (querying the forms accounts hold, confirmed by digits),
 * the contact's open deal (most recently updated), posts notes and completed call tasks,
 * looks for the CallSid marker among a deal's notes/tasks, and can create a contact and
 * deal. Every HTTP request first calls the shared rate limiter (`acquire`) and is counted
 * in calllog_crm_requests_total{endpoint,status} and calllog_crm_request_seconds{endpoint}.
 * On v2 the access token lives in Redis (keys.h: oauth hash) so every worker and the next
 * restart share it; a refresh (which rotates the refresh token) happens under a Redis
 * lock, and a 401 triggers one refresh and one retry. One client per thread.
 *
 * Errors: functions return calllog_code (error.h): CALLLOG_OK, CALLLOG_NOT_FOUND, or a
 * negative code — transient or permanent as error_classify says — with `err` filled. A non-2xx
 * answer keeps its status; a transport failure its curl code, with a message naming the endpoint,
 * never the URL. An answer that cannot be read — a 2xx whose body is empty, not JSON, not an
 * object, or JSON of the wrong shape (a list that is not a list; a contact or deal that is not an
 * object; phones that are not strings or {phone} objects; an id that is neither a non-empty string
 * nor an integer; a created note or task without an id) — is never taken for "not found" or for
 * success: it is CALLLOG_TRANSIENT with http_status 0 and curl_code 0, which error_classify counts
 * as transient ("no usable answer"), and the message
 * "<endpoint>: answer unreadable: <why>", e.g. "GET /contacts: answer unreadable: not
 * JSON (HTTP 200, text/html): '[' or '{' expected near '<'". The processor retries it
 * and, once RETRY_MAX_ATTEMPTS are used, dead-letters it with that message. */
#ifndef CALLLOG_RDSTATION_H
#define CALLLOG_RDSTATION_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <time.h>

#include "common/error.h"
#include "common/http_client.h"
#include "common/keys.h"
#include "worker/ratelimit.h"

typedef enum { RD_API_V1 = 1, RD_API_V2 = 2 } rd_api;

/* Waits until the shared rate limit allows one more request of `lane` (writes are
 * RATELIMIT_NOTE, reads RATELIMIT_LOOKUP, everything of a `background` client
 * RATELIMIT_SYNC). Returns 0, or -1 when the worker is stopping (the client then gives up
 * with curl_code -1, "stopping"). */
typedef int (*rd_acquire_fn)(void *arg, ratelimit_lane lane);

typedef struct rd_settings {
    rd_api api;
    const char *base_url;      /* RDSTATION_API_BASE_URL */
    const char *token;         /* v1 */
    const char *client_id;     /* v2 */
    const char *client_secret; /* v2 */
    const char *refresh_token; /* v2: the first one; later ones live in Redis */
    const char *oauth_url;     /* RDSTATION_OAUTH_URL */
    long timeout_ms;
    rd_acquire_fn acquire;
    void *acquire_arg;
    int background; /* 1: the phone index's sync client (lowest priority lane) */
} rd_settings;

typedef struct rd_contact {
    char id[64];
    char name[256];
} rd_contact;

typedef struct rd_deal {
    char id[64];
    char name[256];
    char user_id[64]; /* the deal owner, when RD says */
} rd_deal;

typedef struct rd_client rd_client;

/* Creates a client. `redis` (used for v2 tokens) and `keys` must outlive it; the strings
 * of `s` are copied. Returns NULL out of memory or when a required setting is missing
 * (v1: base_url, token; v2: base_url, oauth_url, keys). */
rd_client *rd_client_new(const rd_settings *s, redisContext *redis, const calllog_keys *keys);

/* Replaces the Redis connection after the caller reconnected. */
void rd_client_set_redis(rd_client *c, redisContext *redis);

void rd_client_free(rd_client *c);

/* The API version the client speaks. */
rd_api rd_client_api(const rd_client *c);

/* Finds the contact whose phone is `phone_e164`'s line, searching the forms of
 * phone_variants() with the one that found this client's last contact first (accounts
 * type their phones one way). CALLLOG_NOT_FOUND when none. */
calllog_code rd_find_contact(rd_client *c, const char *phone_e164, rd_contact *out,
                             calllog_error *err);

/* The contact's open deal updated most recently. CALLLOG_NOT_FOUND when it has none. */
calllog_code rd_find_open_deal(rd_client *c, const char *contact_id, rd_deal *out,
                               calllog_error *err);

/* ---- listing the account (the phone index's sync, phone_index.h) ---- */

/* Phones read of one listed contact, at most. */
#define RD_LISTED_PHONES_MAX 8

/* One contact as the account's contact list shows it. The strings are borrowed: valid
 * during the callback only. */
typedef struct rd_listed_contact {
    const char *id;
    const char *name; /* NULL when RD gives none */
    const char *phones[RD_LISTED_PHONES_MAX];
    size_t nphones;
    /* v1 embeds deal summaries in list items: */
    int deals_listed;   /* 1 when it did (v2 never: use rd_list_open_deals) */
    int deal_ambiguous; /* several open deals and no updated_at to choose by */
    rd_deal deal;       /* the open deal updated last; id "" when none (or ambiguous) */
} rd_listed_contact;

/* One open deal of the account (v2). */
typedef struct rd_listed_deal {
    rd_deal deal;
    long long updated_ms; /* -1 when RD gives no readable updated_at */
    char contact_ids[RD_LISTED_PHONES_MAX][64];
    size_t ncontacts;
} rd_listed_deal;

/* Called for each listed item; a non-zero return stops the listing with CALLLOG_INVALID. */
typedef int (*rd_contact_fn)(void *arg, const rd_listed_contact *contact);
typedef int (*rd_deal_fn)(void *arg, const rd_listed_deal *deal);

/* Reads page `page` (from 1) of every contact the token sees (v1 GET /contacts?page&limit=200,
 * v2 GET /contacts?page[number]&page[size]=100), calling `fn` for each, and sets `*more`
 * when a next page exists. A contact that cannot be read fails the page (unreadable):
 * the index is never built past what it could not read. */
calllog_code rd_list_contacts(rd_client *c, int page, rd_contact_fn fn, void *arg, int *more,
                              calllog_error *err);

/* v2: reads page `page` of the open deals (GET /deals?filter=status:ongoing), like
 * rd_list_contacts. v1 answers CALLLOG_INVALID (its contact list embeds the deals). */
calllog_code rd_list_open_deals(rd_client *c, int page, rd_deal_fn fn, void *arg, int *more,
                                calllog_error *err);

/* Posts a note on a deal; writes the new note's id (CALLLOG_OK always comes with one). */
calllog_code rd_post_note(rd_client *c, const char *deal_id, const char *user_id, const char *text,
                          char *note_id, size_t idlen, calllog_error *err);

/* Creates a call task on a deal dated `when`, then marks it done; writes its id. v1 dates
 * it in the process's local zone (timing_set_zone), v2 in UTC. When the task was
 * created but could not be marked done, a negative code is returned with `task_id` already set:
 * the task exists, so look for the marker before trying again.
 *
 * Free plans: RD refuses tasks of type `call` (every type but `task`) with 403 on
 * POST /tasks (reference, "Checked again"). A 403 there is taken for that refusal only
 * when the same task of type `task` is then accepted; that is remembered in Redis
 * (keys.h rdstation_plan, see rd_plan_read) so every worker creates type `task` from
 * then on, and the worker that recorded it logs one warning. A 403 for type `task` too is
 * something else (the token's user may not create tasks): a permanent error, nothing
 * remembered. */
calllog_code rd_post_call_task(rd_client *c, const char *deal_id, const char *user_id,
                               const char *subject, const char *notes, time_t when, char *task_id,
                               size_t idlen, calllog_error *err);

/* Creates an open task on a deal, due `due` (v1: date and hour in the process's local zone;
 * v2: due_date in UTC), of type `call`, or `task` on plans that refuse `call` (the same
 * free-plan fallback as rd_post_call_task), assigned to `user_id` (NULL or "": no owner
 * sent, RD assigns its default). Writes its id: CALLLOG_OK always comes with one. */
calllog_code rd_open_task(rd_client *c, const char *deal_id, const char *user_id,
                          const char *subject, const char *notes, time_t due, char *task_id,
                          size_t idlen, calllog_error *err);

/* Marks task `task_id` done: v1 PUT /tasks/{id} {"task":{"done":true}}, v2 PUT /tasks/{id}
 * {"data":{"status":"completed"}}. Doing it twice is harmless. */
calllog_code rd_complete_task(rd_client *c, const char *task_id, calllog_error *err);

/* Writes the owner of deal `deal_id` (GET /deals/{id}: v1 `user`, v2 `owner_id`; "" when RD
 * names none): v1's contact listings, where deals are found, do not say who owns them.
 * CALLLOG_NOT_FOUND when the deal answered 404. */
calllog_code rd_deal_owner(rd_client *c, const char *deal_id, char *user_id, size_t idlen,
                           calllog_error *err);

/* Which of a deal's lists a marker search reads: the ones the delivery mode writes to. */
typedef enum { RD_MARKER_NOTES = 1, RD_MARKER_TASKS = 2, RD_MARKER_BOTH = 3 } rd_marker_scope;

/* Looks for `marker` in the text of the deal's notes and/or tasks (`scope`). CALLLOG_OK with
 * the entry's id in `found_id` when present, CALLLOG_NOT_FOUND when not. A v2 task list that
 * RD refuses with 400/422 (its filter=deal_id is unverified) means "cannot search", never
 * "not found" (that would post a second entry): CALLLOG_TRANSIENT with http_status 0
 * and a message saying so. */
calllog_code rd_find_marker(rd_client *c, const char *deal_id, rd_marker_scope scope,
                            const char *marker, char *found_id, size_t idlen, calllog_error *err);

/* Creates a contact with `phone_e164` (named `name`, or the phone) and a deal for it in
 * pipeline stage `stage_id`. When `contact->id` is already set (a known contact without
 * an open deal) only the deal is created, for that contact. The phone's type is the one
 * each version documents for a mobile: v1 `cellphone`, v2 `mobile`.
 *
 * v1 links the deal through the documented route, PUT /contacts/{id} with the contact's
 * deal_ids plus the new one, and reads the contact back: when the read-back does not
 * list the deal, CALLLOG_PERMANENT with `deal->id` set (the deal exists, unlinked) and
 * http_status 200 — RD answered, but did not link. That is permanent (api_failed buries
 * anything not transient): RD took the PUT and ignored it, so a retry would do the same
 * and create one more unlinked deal each time; the message names both ids so the
 * operator can link them by hand and replay. v2 sends contact_ids on POST /deals. */
calllog_code rd_create_contact_and_deal(rd_client *c, const char *name, const char *phone_e164,
                                        const char *stage_id, const char *user_id,
                                        rd_contact *contact, rd_deal *deal, calllog_error *err);

/* One RD user, as GET /users lists it. */
typedef struct rd_user {
    char id[64];
    char email[256];
    char name[256];
} rd_user;

/* Lists the account's users (GET /users; v2 pages through page[number]). On CALLLOG_OK
 * `*out` holds `*n` users (the caller frees it; NULL when there are none). */
calllog_code rd_list_users(rd_client *c, rd_user **out, size_t *n, calllog_error *err);

/* What the account's plan was seen to refuse, as recorded in Redis. */
typedef struct rd_plan {
    int call_task_refused;   /* 1: POST /tasks type `call` got the free-plan 403 */
    long long refused_at_ms; /* when it was first recorded (epoch ms), 0 when unknown */
} rd_plan;

/* Reads hash keys.h rdstation_plan (fields call_task = "refused", call_task_at = epoch
 * ms). Returns 0 with `out` filled (all zero when nothing was recorded), or -1 when
 * Redis fails. Deleting the hash (after a plan upgrade) makes workers try `call` again
 * within a minute. */
int rd_plan_read(redisContext *c, const calllog_keys *k, rd_plan *out);

#endif
