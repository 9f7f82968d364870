/* stream_entry — the events-stream entry's field names and codec; see stream_entry.h.
 *
 * A decoded entry keeps its five strings in one allocation (`storage`), so freeing is one
 * call and a failed decode leaves nothing behind. */
#include "common/stream_entry.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buffer.h"
#include "common/json_text.h"

/* The longest JSON form: an event of EVENT_MAX_BYTES escaped once more, with room. */
#define STREAM_ENTRY_JSON_MAX ((size_t)8 << 20)

const char *const stream_entry_fields[STREAM_ENTRY_NFIELDS] = {
    STREAM_ENTRY_CALL_SID,   STREAM_ENTRY_STATUS,      STREAM_ENTRY_ATTEMPT,
    STREAM_ENTRY_REQUEST_ID, STREAM_ENTRY_RECEIVED_AT, STREAM_ENTRY_EVENT};

/* The entry's string fields, in stream_entry_fields order without attempt. */
enum { SE_STRINGS = 5 };

/* Pointers to the entry's string slots, in the order of `names`. */
static void string_slots(stream_entry *e, const char **slot[SE_STRINGS])
{
    slot[0] = &e->call_sid;
    slot[1] = &e->status;
    slot[2] = &e->request_id;
    slot[3] = &e->received_at;
    slot[4] = &e->event;
}

static const char *const string_names[SE_STRINGS] = {STREAM_ENTRY_CALL_SID, STREAM_ENTRY_STATUS,
                                                     STREAM_ENTRY_REQUEST_ID,
                                                     STREAM_ENTRY_RECEIVED_AT, STREAM_ENTRY_EVENT};

/* Copies `values[i]` (lengths `lens[i]`) into one owned block and points the entry at it.
 * Returns 0, or -1 out of memory. */
static int own_strings(stream_entry *e, const char *const values[SE_STRINGS],
                       const size_t lens[SE_STRINGS])
{
    size_t total = 0;
    for (int i = 0; i < SE_STRINGS; i++)
        total += lens[i] + 1;
    char *p = malloc(total);
    if (p == NULL)
        return -1;
    const char **slot[SE_STRINGS];
    string_slots(e, slot);
    e->storage = p;
    for (int i = 0; i < SE_STRINGS; i++) {
        memcpy(p, values[i], lens[i]);
        p[lens[i]] = '\0';
        *slot[i] = p;
        p += lens[i] + 1;
    }
    return 0;
}

/* Fills the XADD arguments; see the header. */
int stream_entry_to_argv(const stream_entry *e, const char **argv, char *num, size_t numlen)
{
    snprintf(num, numlen, "%d", e->attempt);
    const char *values[STREAM_ENTRY_NFIELDS] = {e->call_sid,   e->status,      num,
                                                e->request_id, e->received_at, e->event};
    for (int i = 0; i < STREAM_ENTRY_NFIELDS; i++) {
        argv[2 * i] = stream_entry_fields[i];
        argv[2 * i + 1] = values[i] ? values[i] : "";
    }
    return STREAM_ENTRY_ARGC;
}

/* Index of `name` among the string fields, or -1. */
static int string_index(const char *name)
{
    for (int i = 0; i < SE_STRINGS; i++)
        if (strcmp(name, string_names[i]) == 0)
            return i;
    return -1;
}

/* Decodes a stream reply element; see the header. */
int stream_entry_from_reply(const redisReply *item, stream_entry *out)
{
    const char *values[SE_STRINGS] = {0};
    size_t lens[SE_STRINGS] = {0};
    memset(out, 0, sizeof *out);
    if (item == NULL || item->type != REDIS_REPLY_ARRAY || item->elements != 2 ||
        item->element[0]->type != REDIS_REPLY_STRING || item->element[1]->type != REDIS_REPLY_ARRAY)
        return -1;
    const redisReply *f = item->element[1];
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        const redisReply *k = f->element[i], *v = f->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        int at = string_index(k->str);
        if (at >= 0) {
            values[at] = v->str;
            lens[at] = v->len;
        } else if (strcmp(k->str, STREAM_ENTRY_ATTEMPT) == 0) {
            out->attempt = atoi(v->str);
        }
    }
    for (int i = 0; i < SE_STRINGS; i++)
        if (values[i] == NULL)
            return -1;
    if (own_strings(out, values, lens) != 0)
        return -1;
    snprintf(out->id, sizeof out->id, "%s", item->element[0]->str);
    out->deliveries = 1;
    return 0;
}

/* Appends `"name":"value"` to the record being written. */
static void put_field(buffer *b, int *first, const char *name, const char *value)
{
    json_text_key(b, first, name);
    json_text_string(b, value);
}

/* Encodes the JSON form; see the header. Written with json_text, like the event it
 * carries, rather than built as a jansson tree and serialised. */
char *stream_entry_to_json(const stream_entry *e)
{
    buffer b;
    int first = 1;
    if (!e->call_sid || !e->status || !e->request_id || !e->received_at || !e->event)
        return NULL;
    buffer_init(&b, STREAM_ENTRY_JSON_MAX);
    buffer_add(&b, "{", 1);
    put_field(&b, &first, STREAM_ENTRY_CALL_SID, e->call_sid);
    put_field(&b, &first, STREAM_ENTRY_STATUS, e->status);
    json_text_key(&b, &first, STREAM_ENTRY_ATTEMPT);
    buffer_printf(&b, "%d", e->attempt);
    put_field(&b, &first, STREAM_ENTRY_REQUEST_ID, e->request_id);
    put_field(&b, &first, STREAM_ENTRY_RECEIVED_AT, e->received_at);
    put_field(&b, &first, STREAM_ENTRY_EVENT, e->event);
    if (e->id[0] != '\0')
        put_field(&b, &first, STREAM_ENTRY_FROM_ID, e->id);
    buffer_add(&b, "}", 1);
    char *text = buffer_take(&b);
    buffer_free(&b);
    return text;
}

/* Decodes the JSON form; see the header. */
int stream_entry_from_json(const char *text, size_t len, stream_entry *out)
{
    const char *values[SE_STRINGS];
    size_t lens[SE_STRINGS];
    memset(out, 0, sizeof *out);
    json_t *o = text ? json_loadb(text, len, 0, NULL) : NULL;
    int ok = json_is_object(o);
    for (int i = 0; ok && i < SE_STRINGS; i++) {
        json_t *v = json_object_get(o, string_names[i]);
        ok = json_is_string(v);
        if (ok) {
            values[i] = json_string_value(v);
            lens[i] = json_string_length(v);
        }
    }
    json_t *at = ok ? json_object_get(o, STREAM_ENTRY_ATTEMPT) : NULL;
    json_t *from = ok ? json_object_get(o, STREAM_ENTRY_FROM_ID) : NULL;
    ok = ok && (at == NULL || json_is_integer(at)) && own_strings(out, values, lens) == 0;
    if (ok) {
        out->attempt = at ? (int)json_integer_value(at) : 0;
        if (json_is_string(from))
            snprintf(out->id, sizeof out->id, "%s", json_string_value(from));
        out->deliveries = 1;
    }
    json_decref(o);
    return ok ? 0 : -1;
}

/* Frees a decoded entry; see the header. */
void stream_entry_free(stream_entry *e)
{
    if (e == NULL)
        return;
    free(e->storage);
    memset(e, 0, sizeof *e);
}
