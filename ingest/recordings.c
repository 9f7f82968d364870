/* recordings — serves the recording links of notes (see recordings.h).
 *
 * Why a limit rather than a pool of its own: civetweb has one pool of request threads
 * (INGEST_THREADS) and runs every handler on one of them, for as long as the handler
 * takes; a download of a long recording to a slow phone can take minutes. Only
 * RECORDINGS_MAX_CONCURRENT requests get past the token check into Twilio at once (an
 * atomic counter; one past it is answered 503 with Retry-After at once), so at most that
 * many threads are ever busy with media and the rest stay free for webhooks. The check
 * itself comes first and costs one HMAC, so a flood of bad links holds no thread for
 * long either (and is counted and logged through a rate limiter). Settings refuse a limit
 * that is not below INGEST_THREADS.
 *
 * Twilio is asked twice per link, each time with a fresh libcurl handle (media requests
 * are rare; no handle is shared between threads): the call's Recordings.json (short
 * timeout, no retry: a person is waiting and can click again), then the chosen
 * recording's .mp3 with Basic auth, which is either a redirect to pass on or the bytes
 * to stream (one byte range forwarded when the player asks for it: a paused player whose
 * connection civetweb closed after INGEST_REQUEST_TIMEOUT_MS resumes with a range). The
 * media transfer has its own, long timeout (RECORDINGS_TIMEOUT_MS) and stops when the
 * browser goes away or the ingest is asked to stop, even while Twilio sends nothing.
 *
 * What Twilio sends back into our answer is checked first: Location must be an absolute
 * http(s) URL without blanks or control characters, Content-Range and Content-Type only
 * the characters those headers use, so no answer of Twilio's can split ours. */
#include "ingest/recordings.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/http_client.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/recording_link.h"
#include "common/shutdown.h"
#include "common/timing.h"
#include "common/twilio_api.h"

/* How long a client that found every media slot taken should wait. */
#define RECORDINGS_BUSY_RETRY_S "5"
/* Connect timeout of both Twilio requests. */
#define RECORDINGS_CONNECT_TIMEOUT_MS 3000L

/* Refusals: 20 lines a second, 200 at once. */
static log_limiter refusal_log = LOG_LIMITER_INIT(20, 200);

struct recordings {
    const ingest_settings *s;
    char *auth; /* "user:password" for Twilio */
    metric *requests;
    metric *in_flight_gauge;
    atomic_int in_flight;
};

/* One request's state while it is answered. */
typedef struct rec_request {
    recordings *r;
    struct mg_connection *conn;
    const char *request_id;
    char call_sid[40];   /* "" until the path held a valid one */
    const char *outcome; /* the metric label and log field */
    long twilio_status;  /* Twilio's last answer, 0 when none */
    long long bytes;     /* audio bytes sent */
    http_head head;      /* the media answer's head */
    int streaming;       /* the 200/206 headers went out: the answer is committed */
    int chunked;         /* no Content-Length from Twilio: chunked to the browser */
    int authorised;      /* the link's token was valid */
} rec_request;

/* Creates the handler; see the header. */
recordings *recordings_new(const ingest_settings *s)
{
    recordings *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->s = s;
    r->auth = twilio_basic_auth(&s->twilio);
    r->requests = metrics_register(METRIC_COUNTER, "calllog_ingest_recording_requests_total",
                                   "GET /recordings/<CallSid> answers, by outcome.", NULL, 0);
    r->in_flight_gauge =
        metrics_register(METRIC_GAUGE, "calllog_ingest_recordings_in_flight",
                         "Recording requests talking to Twilio or streaming now.", NULL, 0);
    if (r->auth == NULL || r->requests == NULL || r->in_flight_gauge == NULL) {
        recordings_free(r);
        return NULL;
    }
    return r;
}

/* Frees the handler, wiping the credentials it copied. */
void recordings_free(recordings *r)
{
    if (r == NULL)
        return;
    if (r->auth != NULL)
        memset(r->auth, 0, strlen(r->auth));
    free(r->auth);
    free(r);
}

/* Adds the headers every answer of ours carries: no caching anywhere (a recording is
 * personal data), no Referer with the link's token, no type sniffing. */
static void add_common_headers(struct mg_connection *conn)
{
    mg_response_header_add(conn, "Cache-Control", "private, no-store", -1);
    mg_response_header_add(conn, "Referrer-Policy", "no-referrer", -1);
    mg_response_header_add(conn, "X-Content-Type-Options", "nosniff", -1);
}

/* Sends a small HTML page in Portuguese and English. `retry_after` (seconds) may be NULL;
 * `refresh` makes the page reload itself after that long. */
static void send_page(rec_request *q, int status, const char *pt_title, const char *pt_text,
                      const char *en_text, const char *retry_after, int refresh)
{
    char body[1024], len[24], meta[96] = "";
    if (refresh && retry_after)
        snprintf(meta, sizeof meta, "<meta http-equiv=\"refresh\" content=\"%s\">", retry_after);
    int n = snprintf(body, sizeof body,
                     "<!DOCTYPE html>\n<html lang=\"pt-BR\"><head><meta charset=\"utf-8\">"
                     "<meta name=\"viewport\" content=\"width=device-width\">%s"
                     "<title>%s</title></head>\n<body><h1>%s</h1>\n<p>%s</p>\n"
                     "<p lang=\"en\">%s</p></body></html>\n",
                     meta, pt_title, pt_title, pt_text, en_text);
    size_t blen = n < 0 ? 0 : (size_t)n < sizeof body ? (size_t)n : sizeof body - 1;
    snprintf(len, sizeof len, "%zu", blen);
    mg_response_header_start(q->conn, status);
    mg_response_header_add(q->conn, "Content-Type", "text/html; charset=utf-8", -1);
    mg_response_header_add(q->conn, "Content-Length", len, -1);
    if (status == 405)
        mg_response_header_add(q->conn, "Allow", "GET", -1);
    if (retry_after)
        mg_response_header_add(q->conn, "Retry-After", retry_after, -1);
    add_common_headers(q->conn);
    mg_response_header_send(q->conn);
    mg_write(q->conn, body, blen);
}

/* Answers 404: the call has no recording (or the path names no call). */
static int not_found(rec_request *q, const char *outcome)
{
    q->outcome = outcome;
    send_page(q, 404, "Gravação não encontrada", "Esta ligação não tem gravação.",
              "This call has no recording.", NULL, 0);
    return 404;
}

/* Answers 502: Twilio did not give us the recording. */
static int twilio_failed(rec_request *q)
{
    q->outcome = "twilio_error";
    send_page(q, 502, "Gravação indisponível",
              "Não foi possível obter a gravação agora. Tente novamente em instantes.",
              "The recording could not be fetched from Twilio right now. Please try again "
              "shortly.",
              NULL, 0);
    return 502;
}

/* Copies the CallSid out of the request path into q->call_sid. Returns 0, or -1 when the
 * path after RECORDINGS_PATH is not exactly one CallSid. */
static int take_call_sid(rec_request *q, const struct mg_request_info *ri)
{
    const char *uri = ri->local_uri ? ri->local_uri : "";
    size_t plen = strlen(RECORDINGS_PATH);
    if (strncmp(uri, RECORDINGS_PATH, plen) != 0 || !recording_link_call_sid_ok(uri + plen))
        return -1;
    snprintf(q->call_sid, sizeof q->call_sid, "%s", uri + plen);
    return 0;
}

/* Checks the link's token `t` for the request's CallSid. Returns the verdict. */
static recording_link_verdict check_token(rec_request *q, const struct mg_request_info *ri)
{
    char token[RECORDING_LINK_TOKEN_MAX * 2];
    const char *qs = ri->query_string;
    int n = qs ? mg_get_var(qs, strlen(qs), "t", token, sizeof token) : -1;
    if (n == -2)
        return RECORDING_LINK_MALFORMED; /* longer than any token */
    return recording_link_check(q->r->s->recording_link_secret, q->call_sid, n >= 0 ? token : NULL,
                                time(NULL));
}

/* Answers 403 for a link whose token is not valid. */
static int refuse_token(rec_request *q, recording_link_verdict v)
{
    static const char *const outcomes[] = {"valid", "token_missing", "token_malformed",
                                           "token_forged", "token_expired"};
    q->outcome = outcomes[v];
    if (v == RECORDING_LINK_EXPIRED)
        send_page(q, 403, "Link expirado",
                  "Este link de gravação expirou. Peça um novo ao administrador.",
                  "This recording link has expired.", NULL, 0);
    else
        send_page(q, 403, "Link inválido", "Este link de gravação não é válido.",
                  "This recording link is not valid.", NULL, 0);
    return 403;
}

/* Lists the call's recordings. Returns 0 with `*state` and `sid` filled, or the HTTP
 * status to answer (404 when Twilio does not know the call, else 502). */
static int list_recordings(rec_request *q, twilio_recording_state *state, char *sid, size_t sidlen)
{
    static const char *const headers[] = {"Accept: application/json", NULL};
    const twilio_settings *t = &q->r->s->twilio;
    char url[1536];
    calllog_error err;
    http_response resp;
    snprintf(url, sizeof url, "%s/2010-04-01/Accounts/%s/Calls/%s/Recordings.json", t->base_url,
             t->account_sid, q->call_sid);
    http_client *http = http_client_new(t->timeout_ms, RECORDINGS_CONNECT_TIMEOUT_MS);
    int rc = http ? http_request(http, "GET", url, headers, q->r->auth, NULL, 0, &resp, &err)
                  : CALLLOG_NOMEM;
    http_client_free(http);
    if (rc != CALLLOG_OK)
        return 502;
    q->twilio_status = resp.status;
    json_t *doc = resp.status == 200 ? json_loadb(resp.body, resp.body_len, 0, NULL) : NULL;
    http_response_free(&resp);
    if (doc == NULL)
        return q->twilio_status == 404 ? 404 : 502;
    *state = twilio_pick_recording(doc, sid, sidlen);
    json_decref(doc);
    return 0;
}

/* 1 when Twilio's Content-Type is an audio type safe to pass on as it is. */
static int audio_type_ok(const char *type)
{
    if (strncmp(type, "audio/", 6) != 0)
        return 0;
    for (const char *p = type; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("/.+-;= ", *p)))
            return 0;
    return 1;
}

/* 1 when `v` is made only of characters a byte-range header value uses ("bytes=0-",
 * "bytes 0-99/100", and the star form of a range past the end), at most `max` of them. */
static int range_text_ok(const char *v, size_t max)
{
    size_t n = strlen(v);
    if (n == 0 || n > max || strncmp(v, "bytes", 5) != 0)
        return 0;
    for (size_t i = 5; i < n; i++)
        if (!((v[i] >= '0' && v[i] <= '9') || strchr(" =-/*", v[i])))
            return 0;
    return 1;
}

/* The browser's Range header as a header line for Twilio ("Range: bytes=…" into `out`),
 * when it asks for one range of bytes; else `out` is "" (the whole recording). */
static void forward_range(const struct mg_connection *conn, char *out, size_t outlen)
{
    const char *range = mg_get_header(conn, "Range");
    out[0] = '\0';
    if (range && strncmp(range, "bytes=", 6) == 0 && !strchr(range, ',') && !strchr(range, ' ') &&
        range_text_ok(range, 48))
        snprintf(out, outlen, "Range: %s", range);
}

/* http_stream head callback: for Twilio's 200 (or 206 for a range), sends our headers
 * and lets the body through; for anything else stops the transfer (its body is not
 * wanted). */
static int media_head(void *arg, const http_head *head)
{
    rec_request *q = arg;
    char len[24], disposition[96];
    q->head = *head;
    if (head->status != 200 && !(head->status == 206 && range_text_ok(head->content_range, 90)))
        return -1;
    q->chunked = head->content_length < 0;
    snprintf(len, sizeof len, "%lld", head->content_length);
    snprintf(disposition, sizeof disposition, "inline; filename=\"%s.mp3\"", q->call_sid);
    mg_response_header_start(q->conn, (int)head->status);
    if (head->status == 206)
        mg_response_header_add(q->conn, "Content-Range", head->content_range, -1);
    if (head->accept_ranges)
        mg_response_header_add(q->conn, "Accept-Ranges", "bytes", -1);
    mg_response_header_add(q->conn, "Content-Type",
                           audio_type_ok(head->content_type) ? head->content_type : "audio/mpeg",
                           -1);
    if (q->chunked)
        mg_response_header_add(q->conn, "Transfer-Encoding", "chunked", -1);
    else
        mg_response_header_add(q->conn, "Content-Length", len, -1);
    mg_response_header_add(q->conn, "Content-Disposition", disposition, -1);
    add_common_headers(q->conn);
    q->streaming = mg_response_header_send(q->conn) == 0;
    return q->streaming ? 0 : -1;
}

/* http_stream body callback: passes one piece of audio on to the browser. Stops when the
 * browser is gone or the ingest is stopping. */
static int media_body(void *arg, const char *data, size_t n)
{
    rec_request *q = arg;
    if (shutdown_requested())
        return -1;
    int w = q->chunked ? mg_send_chunk(q->conn, data, (unsigned int)n) : mg_write(q->conn, data, n);
    if (w <= 0)
        return -1;
    q->bytes += (long long)n;
    return 0;
}

/* http_stream tick: a transfer waiting on Twilio stops too when the ingest is stopping,
 * so a stalled recording never holds up the drain. */
static int media_tick(void *arg)
{
    (void)arg;
    return shutdown_requested() ? -1 : 0;
}

/* 1 when `url` is an absolute http(s) URL with nothing that could split a header. */
static int location_ok(const char *url)
{
    if (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0)
        return 0;
    for (const unsigned char *p = (const unsigned char *)url; *p; p++)
        if (*p <= 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

/* Answers with what Twilio's media answer said, once it is known not to be a 200. */
static int relay_media_refusal(rec_request *q)
{
    long st = q->head.status;
    q->twilio_status = st;
    if ((st == 301 || st == 302 || st == 303 || st == 307 || st == 308) &&
        location_ok(q->head.location)) {
        q->outcome = "redirected";
        mg_response_header_start(q->conn, 302);
        mg_response_header_add(q->conn, "Location", q->head.location, -1);
        mg_response_header_add(q->conn, "Content-Length", "0", -1);
        add_common_headers(q->conn);
        mg_response_header_send(q->conn);
        return 302;
    }
    if (st == 416) {
        q->outcome = "range_not_satisfiable";
        mg_response_header_start(q->conn, 416);
        if (range_text_ok(q->head.content_range, 90))
            mg_response_header_add(q->conn, "Content-Range", q->head.content_range, -1);
        mg_response_header_add(q->conn, "Content-Length", "0", -1);
        add_common_headers(q->conn);
        mg_response_header_send(q->conn);
        return 416;
    }
    return st == 404 ? not_found(q, "no_recording") : twilio_failed(q);
}

/* Fetches recording `sid`'s media and passes it on: redirect, stream or error page. */
static int pass_media(rec_request *q, const char *sid)
{
    const twilio_settings *t = &q->r->s->twilio;
    char url[1536];
    calllog_error err;
    if (twilio_recording_media_url(t->base_url, t->account_sid, sid, ".mp3", url, sizeof url) < 0)
        return twilio_failed(q);
    char range[64];
    forward_range(q->conn, range, sizeof range);
    const char *const headers[] = {range[0] ? range : NULL, NULL};
    const http_stream s = {media_head, media_body, q, media_tick};
    http_client *http =
        http_client_new(q->r->s->recordings_timeout_ms, RECORDINGS_CONNECT_TIMEOUT_MS);
    int rc = http ? http_get_stream(http, url, headers, q->r->auth, &s, &err) : CALLLOG_NOMEM;
    http_client_free(http);
    if (q->streaming) {
        q->twilio_status = q->head.status;
        if (rc == CALLLOG_OK && q->chunked)
            mg_send_chunk(q->conn, "", 0);
        q->outcome = rc == CALLLOG_OK ? "streamed" : "transfer_failed";
        if (rc != CALLLOG_OK)
            mg_disable_connection_keep_alive(q->conn); /* the body is short: end it */
        return (int)q->head.status;
    }
    if (q->head.status != 0)
        return relay_media_refusal(q);
    return twilio_failed(q);
}

/* Finds the call's recording and answers with it (or why not), inside a media slot. */
static int serve_recording(rec_request *q)
{
    twilio_recording_state state = TWILIO_RECORDING_NONE;
    char sid[64];
    int status = list_recordings(q, &state, sid, sizeof sid);
    if (status == 404)
        return not_found(q, "no_recording");
    if (status != 0)
        return twilio_failed(q);
    if (state == TWILIO_RECORDING_NONE)
        return not_found(q, "no_recording");
    if (state == TWILIO_RECORDING_PROCESSING) {
        q->outcome = "processing";
        send_page(q, 202, "Gravação em processamento",
                  "A gravação desta ligação ainda está sendo processada. Tente novamente em "
                  "um minuto.",
                  "The recording of this call is still being processed. Please try again in "
                  "a minute.",
                  "60", 1);
        return 202;
    }
    return pass_media(q, sid);
}

/* Decides and sends the answer to one request. */
static int answer(rec_request *q)
{
    const struct mg_request_info *ri = mg_get_request_info(q->conn);
    if (strcmp(ri->request_method, "GET") != 0) {
        q->outcome = "method_not_allowed";
        send_page(q, 405, "Método não permitido", "Use GET.", "Use GET.", NULL, 0);
        return 405;
    }
    if (take_call_sid(q, ri) != 0)
        return not_found(q, "bad_call_sid");
    recording_link_verdict v = check_token(q, ri);
    if (v != RECORDING_LINK_VALID)
        return refuse_token(q, v);
    q->authorised = 1;
    recordings *r = q->r;
    int status;
    if (atomic_fetch_add(&r->in_flight, 1) >= r->s->recordings_max_concurrent) {
        q->outcome = "busy";
        send_page(q, 503, "Servidor ocupado",
                  "Muitas gravações sendo ouvidas agora. Tente "
                  "novamente em alguns segundos.",
                  "Too many recordings are being played right now. Please try again in a few "
                  "seconds.",
                  RECORDINGS_BUSY_RETRY_S, 0);
        status = 503;
    } else {
        metric_set(r->in_flight_gauge, NULL, (double)atomic_load(&r->in_flight));
        status = serve_recording(q);
    }
    atomic_fetch_sub(&r->in_flight, 1);
    metric_set(r->in_flight_gauge, NULL, (double)atomic_load(&r->in_flight));
    return status;
}

/* Counts and logs one answer; those refused before the token was valid through the rate
 * limiter. Never the token, never the query string. */
static void record(const rec_request *q, int status, double t0)
{
    char lbl[64];
    long dropped = 0;
    snprintf(lbl, sizeof lbl, "outcome=\"%s\"", q->outcome);
    metric_add(q->r->requests, lbl, 1);
    if (!q->authorised && !log_limiter_allow(&refusal_log, &dropped))
        return; /* anyone can send these at will: rate-limited lines, every one counted */
    log_field fields[] = {LF_S("request_id", q->request_id),
                          LF_S("call_sid", q->call_sid),
                          LF_I("status", status),
                          LF_S("outcome", q->outcome),
                          LF_I("twilio_status", q->twilio_status),
                          LF_I("bytes", q->bytes),
                          LF_I("latency_us", (long long)((timing_mono_s() - t0) * 1e6)),
                          LF_I("log_lines_suppressed", dropped),
                          LF_END};
    int warn = status >= 500 || (status >= 400 && status != 404 && status != 416) ||
               strcmp(q->outcome, "transfer_failed") == 0;
    log_emit(warn ? LOG_WARN : LOG_INFO, "recording answered", fields);
}

/* Answers one request; see the header. */
int recordings_answer(recordings *r, struct mg_connection *conn, const char *request_id)
{
    double t0 = timing_mono_s();
    rec_request q = {.r = r, .conn = conn, .request_id = request_id, .outcome = "unknown"};
    int status = answer(&q);
    record(&q, status, t0);
    return status;
}
