/* note_template — the text of the RD Station note (or task notes) for one call.
 *
 * The operator configures a template with placeholders; it is compiled once at start-up
 * (an unknown placeholder or a stray brace refuses to start, naming the problem) and
 * rendered per call from a call_facts struct. Design §3 "Mapping": pt-BR by default, a
 * configurable time zone, and a CallSid marker that every note carries so that recovery
 * can tell whether a note for this call already exists (design §3 "Effectively once").
 *
 * Placeholders: {direction} {direction_label} {status} {status_label} {from} {to}
 * {customer} {duration} {duration_seconds} {start} {end} {recording_url} {price}
 * {answered_by} {caller_name} {call_sid} {marker}. `{{` and `}}` write literal braces.
 *
 * Rendering rules:
 *   - a value that is unknown renders as the empty string; a line that holds at least one
 *     placeholder and whose placeholders all rendered empty is dropped (so
 *     "Gravação: {recording_url}" disappears for calls without a recording);
 *   - control characters in values (newlines included) become spaces, and a value
 *     cannot forge a marker ("[calllog:" inside a value is written "(calllog:");
 *   - the marker "[calllog:<CallSid>]" always appears: when the template has no
 *     {marker}, it is appended on a line of its own.
 *
 * Recording links: {recording_url} is Twilio's media URL, which asks the reader for Twilio
 * credentials on accounts that enforce HTTP auth on media. With links turned on
 * (note_template_set_recording_links) a call that has a recording gets calllog's own
 * signed link instead, PUBLIC_BASE_URL/recordings/<CallSid>?t=<token>
 * (common/recording_link.h), which the ingest serves; so does a call whose recording is
 * still processing (recording_pending: the note is written seconds after the hang-up,
 * the recording finishes later, and the link plays once it has). Without links such a
 * call has no {recording_url}: Twilio's URL would not work yet.
 *
 * Time zone: {start} and {end} are formatted "%d/%m/%Y %H:%M" in local time computed with
 * localtime_r. The zone is the process's, set once at start-up by timing_set_zone
 * (common/timing.h) before any thread exists; this module never changes it. */
#ifndef CALLLOG_NOTE_TEMPLATE_H
#define CALLLOG_NOTE_TEMPLATE_H

#include <stddef.h>
#include <time.h>

#include "common/error.h"

/* The marker's shape: "[calllog:" + CallSid + "]". */
#define NOTE_MARKER_PREFIX "[calllog:"
/* Longest CallSid accepted in a marker (Twilio's are 34 characters). */
#define NOTE_CALL_SID_MAX 64
/* Room for any marker, terminator included. */
#define NOTE_MARKER_MAX (sizeof(NOTE_MARKER_PREFIX) + NOTE_CALL_SID_MAX + 1)

/* What is known about a call. Strings may be NULL or empty when unknown; they are
 * borrowed for the duration of the call to note_render only. */
typedef struct call_facts {
    const char *call_sid;      /* required */
    const char *direction;     /* inbound, outbound-api, outbound-dial, … */
    const char *status;        /* completed, busy, no-answer, failed, canceled */
    const char *from;          /* E.164 as Twilio sent it */
    const char *to;            /* E.164 as Twilio sent it */
    const char *customer;      /* NULL: derived from direction/from/to (phone_customer) */
    const char *recording_url; /* Twilio's media URL; NULL/"" when the call has none */
    int recording_pending;     /* 1: no URL yet, a recording is still processing */
    const char *price;         /* as Twilio reports it, e.g. "-0.01300" */
    const char *price_unit;    /* e.g. "USD"; appended to {price} when both are known */
    const char *answered_by;   /* human, machine_start, … */
    const char *caller_name;   /* CNAM */
    long duration_seconds;     /* < 0 when unknown; 0 is a real zero-length call */
    time_t start;              /* epoch seconds, 0 when unknown */
    time_t end;                /* epoch seconds, 0 when unknown */
} call_facts;

/* A compiled template. Opaque; immutable once compiled, so one can be shared by threads. */
typedef struct note_template note_template;

/* The built-in pt-BR template (a static string). */
const char *note_default_template(void);

/* Compiles `text` (NULL means note_default_template()). Returns a template the caller
 * frees with note_template_free(), or NULL with `err` (may be NULL) filled: an unknown
 * placeholder ("unknown placeholder {foo} at line 2"), an unterminated or empty
 * placeholder, a stray '}', or out of memory. */
note_template *note_template_compile(const char *text, calllog_error *err);

/* Longest base URL recording links accept (bytes). */
#define NOTE_LINK_BASE_MAX 1024

/* Makes {recording_url} render calllog's signed link for calls that have a recording:
 * `base_url` (PUBLIC_BASE_URL, no trailing slash, at most NOTE_LINK_BASE_MAX bytes) +
 * "/recordings/<CallSid>?t=<token>" signed with `secret` (RECORDING_LINK_SECRET, at least
 * RECORDING_LINK_SECRET_MIN bytes); `ttl_days` > 0 makes each link expire that many days
 * after the call ended. Call once, right after compiling and before the template is
 * shared; both strings must outlive it. Returns CALLLOG_OK, or CALLLOG_INVALID for an
 * unusable argument (nothing changed then). */
int note_template_set_recording_links(note_template *t, const char *base_url, const char *secret,
                                      long ttl_days);

/* Frees a compiled template; NULL is ignored. */
void note_template_free(note_template *t);

/* Renders `t` for `facts` into a new NUL-terminated string stored in `*out`, which the
 * caller frees with free(). Returns CALLLOG_OK; CALLLOG_INVALID when `t`, `facts` or `out` is
 * NULL or the CallSid is missing or unusable in a marker, or the note would pass 1 MiB;
 * CALLLOG_NOMEM. `*out` is NULL on error. */
int note_render(const note_template *t, const call_facts *facts, char **out);

/* Writes "[calllog:<call_sid>]" into `out`. A usable CallSid is 1–NOTE_CALL_SID_MAX
 * ASCII letters and digits. Returns the marker's length, or -1 when the CallSid is
 * unusable or `out` is too small (NOTE_MARKER_MAX always suffices). */
int note_marker(const char *call_sid, char *out, size_t outlen);

/* 1 when `text` contains the marker of `call_sid` (used in recovery: is this note ours for
 * this call?), 0 otherwise or when either argument is NULL/unusable. */
int note_has_marker(const char *text, const char *call_sid);

#endif
