/* note_template — the text of the RD Station note (or task notes) for one call.
 *
 * A template is compiled once into a flat list of tokens (literal text, placeholder,
 * newline) so that rendering is a single pass with no parsing and no failure other than
 * memory. Rendering works line by line to apply the "drop lines whose placeholders are all
 * empty" rule, then makes sure the CallSid marker is present. Values are cleaned on the
 * way in (control characters, invalid UTF-8 which jansson would refuse, forged markers).
 * See note_template.h for the rules; local time is in the zone timing_set_zone set at start-up. */
#include "worker/note_template.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buffer.h"
#include "common/recording_link.h"
#include "worker/phone.h"

/* The placeholders, in the order of note_field_names. */
typedef enum note_field {
    F_DIRECTION,
    F_DIRECTION_LABEL,
    F_STATUS,
    F_STATUS_LABEL,
    F_FROM,
    F_TO,
    F_CUSTOMER,
    F_DURATION,
    F_DURATION_SECONDS,
    F_START,
    F_END,
    F_RECORDING_URL,
    F_PRICE,
    F_ANSWERED_BY,
    F_CALLER_NAME,
    F_CALL_SID,
    F_MARKER,
    F_COUNT
} note_field;

static const char *const note_field_names[F_COUNT] = {
    "direction", "direction_label", "status",           "status_label", "from",  "to",
    "customer",  "duration",        "duration_seconds", "start",        "end",   "recording_url",
    "price",     "answered_by",     "caller_name",      "call_sid",     "marker"};

/* The kinds of compiled tokens. */
typedef enum note_tok_kind { TOK_TEXT, TOK_FIELD, TOK_NEWLINE } note_tok_kind;

/* One token: literal text (a slice of the pool), a placeholder, or a line break. */
typedef struct note_tok {
    note_tok_kind kind;
    note_field field;
    size_t off, len;
} note_tok;

struct note_template {
    char *pool; /* literal text with escapes resolved */
    note_tok *toks;
    size_t ntoks;
    int has_marker;
    const char *link_base;   /* PUBLIC_BASE_URL when recording links are on, else NULL */
    const char *link_secret; /* RECORDING_LINK_SECRET */
    long link_ttl_s;         /* 0: links never expire */
};

/* Most bytes of a rendered note (and of one of its lines): far above any real note, whose
 * values come from one webhook's fields. */
#define NOTE_TEXT_MAX ((size_t)1024 * 1024)

static const char note_default_text[] = "{direction_label} — {status_label}\n"
                                        "De: {from}\n"
                                        "Para: {to}\n"
                                        "Duração: {duration}\n"
                                        "Início: {start}\n"
                                        "Gravação: {recording_url}\n"
                                        "{marker}";

/* Returns the built-in template. */
const char *note_default_template(void)
{
    return note_default_text;
}

/* Describes a bad template in `err` (when not NULL): CALLLOG_INVALID. */
static void note_err(calllog_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void note_err(calllog_error *err, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return;
    error_clear(err);
    err->code = CALLLOG_INVALID;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

/* Length of the valid UTF-8 sequence at `s` (1–4), or 0 when it is not one. */
static size_t note_utf8_seq(const unsigned char *s)
{
    unsigned int c = s[0], cp;
    size_t n;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4, cp = c & 0x07;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

/* 1 when `s` is entirely valid UTF-8. */
static int note_utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    while (*p != '\0') {
        size_t n = note_utf8_seq(p);
        if (n == 0)
            return 0;
        p += n;
    }
    return 1;
}

/* Looks up a placeholder name of `len` bytes. Returns the field, or F_COUNT. */
static note_field note_field_lookup(const char *name, size_t len)
{
    for (int i = 0; i < F_COUNT; i++) {
        if (strlen(note_field_names[i]) == len && memcmp(note_field_names[i], name, len) == 0)
            return (note_field)i;
    }
    return F_COUNT;
}

/* Appends literal byte `c` to the template, extending the current text token. */
static void note_tpl_add_char(note_template *t, size_t *poollen, char c)
{
    note_tok *last = t->ntoks > 0 ? &t->toks[t->ntoks - 1] : NULL;

    if (last == NULL || last->kind != TOK_TEXT) {
        last = &t->toks[t->ntoks++];
        last->kind = TOK_TEXT;
        last->field = F_COUNT;
        last->off = *poollen;
        last->len = 0;
    }
    t->pool[(*poollen)++] = c;
    last->len++;
}

/* Appends a placeholder or newline token. */
static void note_tpl_add_tok(note_template *t, note_tok_kind kind, note_field field)
{
    note_tok *tok = &t->toks[t->ntoks++];

    tok->kind = kind;
    tok->field = field;
    tok->off = 0;
    tok->len = 0;
}

/* Parses the placeholder starting at `text[*i]` == '{' on line `line`. Returns 0 and
 * advances `*i` past the '}', or -1 with `err` filled. */
static int note_tpl_parse_field(note_template *t, const char *text, size_t *i, int line,
                                calllog_error *err)
{
    size_t start = *i + 1, j = start;
    note_field f;

    while (text[j] != '\0' && text[j] != '}' && text[j] != '{' && text[j] != '\n')
        j++;
    if (text[j] != '}') {
        note_err(err, "unterminated placeholder at line %d (write {{ for a literal {)", line);
        return -1;
    }
    if (j == start) {
        note_err(err, "empty placeholder {} at line %d", line);
        return -1;
    }
    f = note_field_lookup(text + start, j - start);
    if (f == F_COUNT) {
        note_err(err, "unknown placeholder {%.*s} at line %d",
                 (int)(j - start > 64 ? 64 : j - start), text + start, line);
        return -1;
    }
    note_tpl_add_tok(t, TOK_FIELD, f);
    if (f == F_MARKER)
        t->has_marker = 1;
    *i = j + 1;
    return 0;
}

/* Tokenizes `text` into `t`, whose pool and token arrays are large enough. */
static int note_tpl_parse(note_template *t, const char *text, calllog_error *err)
{
    size_t i = 0, poollen = 0;
    int line = 1;

    while (text[i] != '\0') {
        char c = text[i];
        if (c == '{' && text[i + 1] == '{') {
            note_tpl_add_char(t, &poollen, '{');
            i += 2;
        } else if (c == '{') {
            if (note_tpl_parse_field(t, text, &i, line, err) != 0)
                return -1;
        } else if (c == '}' && text[i + 1] == '}') {
            note_tpl_add_char(t, &poollen, '}');
            i += 2;
        } else if (c == '}') {
            note_err(err, "stray '}' at line %d (write }} for a literal })", line);
            return -1;
        } else if (c == '\n') {
            note_tpl_add_tok(t, TOK_NEWLINE, F_COUNT);
            line++;
            i++;
        } else {
            note_tpl_add_char(t, &poollen, c);
            i++;
        }
    }
    return 0;
}

/* Compiles a template; see note_template.h. */
note_template *note_template_compile(const char *text, calllog_error *err)
{
    note_template *t;
    size_t len;

    if (text == NULL)
        text = note_default_text;
    if (!note_utf8_valid(text)) {
        note_err(err, "note template is not valid UTF-8");
        return NULL;
    }
    len = strlen(text);
    t = calloc(1, sizeof *t);
    if (t != NULL) {
        t->pool = malloc(len + 1);
        t->toks = calloc(len + 1, sizeof *t->toks);
    }
    if (t == NULL || t->pool == NULL || t->toks == NULL) {
        note_template_free(t);
        note_err(err, "out of memory compiling the note template");
        return NULL;
    }
    if (note_tpl_parse(t, text, err) != 0) {
        note_template_free(t);
        return NULL;
    }
    return t;
}

/* Frees a template. */
void note_template_free(note_template *t)
{
    if (t == NULL)
        return;
    free(t->pool);
    free(t->toks);
    free(t);
}

/* Appends a value, cleaned: control characters become spaces, invalid UTF-8 bytes '?',
 * and "[calllog:" becomes "(calllog:" so a value can never forge a marker. */
static void note_buf_add_clean(buffer *b, const char *v)
{
    const size_t plen = sizeof(NOTE_MARKER_PREFIX) - 1;
    const unsigned char *p = (const unsigned char *)v;

    while (*p != '\0') {
        size_t n = note_utf8_seq(p);
        if (n == 0) {
            buffer_add(b, "?", 1);
            p++;
        } else if (*p < 0x20 || *p == 0x7F) {
            buffer_add(b, " ", 1);
            p++;
        } else if (*p == '[' && strncmp((const char *)p, NOTE_MARKER_PREFIX, plen) == 0) {
            buffer_add(b, "(", 1);
            p++;
        } else {
            buffer_add(b, (const char *)p, n);
            p += n;
        }
    }
}

/* The pt-BR label of a direction, or the direction itself when unknown. */
static const char *note_direction_label(const char *d)
{
    if (d == NULL)
        return NULL;
    if (strcmp(d, "inbound") == 0 || strcmp(d, "trunking-terminating") == 0)
        return "Ligação recebida";
    if (strncmp(d, "outbound", 8) == 0 || strcmp(d, "trunking-originating") == 0)
        return "Ligação realizada";
    return d;
}

/* The pt-BR label of a call status, or the status itself when unknown. */
static const char *note_status_label(const char *s)
{
    static const char *const map[][2] = {{"completed", "atendida"},
                                         {"busy", "ocupado"},
                                         {"no-answer", "não atendida"},
                                         {"failed", "falhou"},
                                         {"canceled", "cancelada"}};

    if (s == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        if (strcmp(s, map[i][0]) == 0)
            return map[i][1];
    }
    return s;
}

/* Formats a duration as mm:ss, or h:mm:ss from one hour on. */
static const char *note_format_duration(long secs, char *buf, size_t buflen)
{
    if (secs < 0)
        return NULL;
    if (secs < 3600)
        snprintf(buf, buflen, "%02ld:%02ld", secs / 60, secs % 60);
    else
        snprintf(buf, buflen, "%ld:%02ld:%02ld", secs / 3600, (secs / 60) % 60, secs % 60);
    return buf;
}

/* Formats an epoch time as local "%d/%m/%Y %H:%M" (0 means unknown). */
static const char *note_format_time(time_t t, char *buf, size_t buflen)
{
    struct tm tm;

    if (t == 0 || localtime_r(&t, &tm) == NULL)
        return NULL;
    if (strftime(buf, buflen, "%d/%m/%Y %H:%M", &tm) == 0)
        return NULL;
    return buf;
}

/* Formats the price with its unit when both are known. */
static const char *note_format_price(const call_facts *f, char *buf, size_t buflen)
{
    if (f->price == NULL || f->price[0] == '\0')
        return NULL;
    if (f->price_unit == NULL || f->price_unit[0] == '\0')
        return f->price;
    snprintf(buf, buflen, "%s %s", f->price, f->price_unit);
    return buf;
}

/* The {recording_url} value: with recording links on, calllog's signed link to the call's
 * recording, completed or still processing (expiring link_ttl_s after the call ended, or
 * after now when the end is unknown), else Twilio's media URL; NULL when the call has no
 * recording. */
static const char *note_recording_value(const note_template *t, const call_facts *f, char *buf,
                                        size_t buflen)
{
    int has_url = f->recording_url != NULL && f->recording_url[0] != '\0';
    if (t->link_base == NULL || (!has_url && !f->recording_pending))
        return f->recording_url;
    time_t expires = t->link_ttl_s > 0 ? (f->end ? f->end : time(NULL)) + t->link_ttl_s : 0;
    if (recording_link_url(t->link_base, t->link_secret, f->call_sid, expires, buf, buflen) < 0)
        return f->recording_url; /* not a Twilio CallSid: nothing the ingest would serve */
    return buf;
}

/* The raw value of `field` for `f` (NULL or "" when unknown). `buf` holds formatted
 * values; `marker` is the call's marker. */
static const char *note_field_value(const note_template *t, note_field field, const call_facts *f,
                                    const char *marker, char *buf, size_t buflen)
{
    switch (field) {
    case F_DIRECTION:
        return f->direction;
    case F_DIRECTION_LABEL:
        return note_direction_label(f->direction);
    case F_STATUS:
        return f->status;
    case F_STATUS_LABEL:
        return note_status_label(f->status);
    case F_FROM:
        return f->from;
    case F_TO:
        return f->to;
    case F_CUSTOMER:
        return f->customer != NULL ? f->customer : phone_customer(f->direction, f->from, f->to);
    case F_DURATION:
        return note_format_duration(f->duration_seconds, buf, buflen);
    case F_DURATION_SECONDS:
        if (f->duration_seconds < 0)
            return NULL;
        snprintf(buf, buflen, "%ld", f->duration_seconds);
        return buf;
    case F_START:
        return note_format_time(f->start, buf, buflen);
    case F_END:
        return note_format_time(f->end, buf, buflen);
    case F_RECORDING_URL:
        return note_recording_value(t, f, buf, buflen);
    case F_PRICE:
        return note_format_price(f, buf, buflen);
    case F_ANSWERED_BY:
        return f->answered_by;
    case F_CALLER_NAME:
        return f->caller_name;
    case F_CALL_SID:
        return f->call_sid;
    case F_MARKER:
        return marker;
    case F_COUNT:
        break;
    }
    return NULL;
}

/* Renders the tokens of one line starting at `*i` into `line` (reset first). Returns 1
 * when the line is kept, 0 when all its placeholders were empty; `*i` ends on the
 * newline token or past the end. */
static int note_render_line(const note_template *t, size_t *i, const call_facts *f,
                            const char *marker, buffer *line)
{
    char buf[1536]; /* formatted values, the recording link the longest */
    int nfields = 0, nonempty = 0;

    buffer_reset(line);
    for (; *i < t->ntoks && t->toks[*i].kind != TOK_NEWLINE; (*i)++) {
        const note_tok *tok = &t->toks[*i];
        const char *v;
        if (tok->kind == TOK_TEXT) {
            buffer_add(line, t->pool + tok->off, tok->len);
            continue;
        }
        nfields++;
        v = note_field_value(t, tok->field, f, marker, buf, sizeof buf);
        if (v == NULL || v[0] == '\0')
            continue;
        nonempty++;
        if (tok->field == F_MARKER)
            buffer_add_str(line, v);
        else
            note_buf_add_clean(line, v);
    }
    return nfields == 0 || nonempty > 0;
}

/* Turns recording links on; see note_template.h. */
int note_template_set_recording_links(note_template *t, const char *base_url, const char *secret,
                                      long ttl_days)
{
    if (t == NULL || base_url == NULL || secret == NULL ||
        strlen(secret) < RECORDING_LINK_SECRET_MIN || ttl_days < 0 ||
        strlen(base_url) > NOTE_LINK_BASE_MAX)
        return CALLLOG_INVALID;
    t->link_base = base_url;
    t->link_secret = secret;
    t->link_ttl_s = ttl_days * 86400L;
    return CALLLOG_OK;
}

/* Renders a note; see note_template.h. */
int note_render(const note_template *t, const call_facts *f, char **out)
{
    char marker[NOTE_MARKER_MAX];
    buffer res, line;
    size_t kept = 0;

    if (out != NULL)
        *out = NULL;
    if (t == NULL || f == NULL || out == NULL ||
        note_marker(f->call_sid, marker, sizeof marker) < 0)
        return CALLLOG_INVALID;
    buffer_init(&res, NOTE_TEXT_MAX);
    buffer_init(&line, NOTE_TEXT_MAX);
    for (size_t i = 0; i <= t->ntoks; i++) {
        if (!note_render_line(t, &i, f, marker, &line))
            continue;
        if (kept++ > 0)
            buffer_add(&res, "\n", 1);
        buffer_add(&res, buffer_ptr(&line), buffer_len(&line));
    }
    if (!t->has_marker) {
        size_t len = buffer_len(&res);
        if (len > 0 && buffer_ptr(&res)[len - 1] != '\n')
            buffer_add(&res, "\n", 1);
        buffer_add_str(&res, marker);
    }
    calllog_code rc = buffer_error(&line) != CALLLOG_OK ? buffer_error(&line) : buffer_error(&res);
    buffer_free(&line);
    *out = rc == CALLLOG_OK ? buffer_take(&res) : NULL;
    if (rc == CALLLOG_OK && *out == NULL)
        rc = buffer_error(&res);
    buffer_free(&res);
    return rc;
}

/* 1 when `sid` is 1–NOTE_CALL_SID_MAX ASCII letters and digits. */
static int note_sid_ok(const char *sid)
{
    size_t n = 0;

    if (sid == NULL)
        return 0;
    for (; sid[n] != '\0'; n++) {
        char c = sid[n];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
            return 0;
    }
    return n >= 1 && n <= NOTE_CALL_SID_MAX;
}

/* Writes the marker of a CallSid; see note_template.h. */
int note_marker(const char *call_sid, char *out, size_t outlen)
{
    int n;

    if (out == NULL || !note_sid_ok(call_sid))
        return -1;
    n = snprintf(out, outlen, NOTE_MARKER_PREFIX "%s]", call_sid);
    if (n < 0 || (size_t)n >= outlen)
        return -1;
    return n;
}

/* Looks for a call's marker in a note's text; see note_template.h. */
int note_has_marker(const char *text, const char *call_sid)
{
    char marker[NOTE_MARKER_MAX];

    if (text == NULL || note_marker(call_sid, marker, sizeof marker) < 0)
        return 0;
    return strstr(text, marker) != NULL;
}
