/* recordings — GET /recordings/<CallSid>?t=<token>: a call's recording, for the links the
 * worker writes into notes when RECORDING_LINK_SECRET is set (common/recording_link.h).
 *
 * Twilio asks for HTTP credentials on media URLs (on by default since 2023), and the
 * salespeople who click a note's link have none; the ingest has them. So it checks the
 * link's token (403 when missing or wrong, counted by reason), lists the call's
 * recordings through Twilio's REST API, and for a completed one either passes Twilio's
 * redirect to a short-lived location on to the browser or streams the audio through
 * (audio/mpeg, Content-Length when Twilio gave one) without ever holding more than one
 * piece of it; a browser's single byte range is passed to Twilio and its 206 back, so a
 * player can seek and resume. A recording still processing gets a small page (pt-BR and English)
 * asking to try again in a minute (202, Retry-After: 60); no recording, 404; Twilio failing, 502.
 * At most RECORDINGS_MAX_CONCURRENT media requests run at once (503 past it), so downloads never
 * take the threads webhooks need. Every answer is logged (request id, CallSid, outcome; never the
 * token or the query string) and counted in calllog_ingest_recording_requests_total{outcome}. */
#ifndef CALLLOG_INGEST_RECORDINGS_H
#define CALLLOG_INGEST_RECORDINGS_H

#include <civetweb.h>

#include "ingest/settings.h"

/* The path prefix the server routes here. */
#define RECORDINGS_PATH "/recordings/"

typedef struct recordings recordings;

/* Registers the recordings metrics. `s` (with recording_link_secret set) must outlive the
 * handler. Returns the handler (recordings_free), or NULL out of memory. */
recordings *recordings_new(const ingest_settings *s);

/* Frees the handler; NULL is accepted. No request may be inside recordings_answer. */
void recordings_free(recordings *r);

/* Answers one request for RECORDINGS_PATH... on `conn`, logging it under `request_id`.
 * Returns the HTTP status sent. Thread-safe: civetweb calls it from any request thread. */
int recordings_answer(recordings *r, struct mg_connection *conn, const char *request_id);

#endif
