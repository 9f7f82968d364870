/* http_answer — the ingest's short answers, written to the socket in one piece.
 *
 * civetweb's header API (mg_response_header_start/add/send) sends the status line and
 * each header with its own send(2), and with TCP_NODELAY (which the ingest needs, see
 * server.c) every one becomes its own TCP segment: four segments and four system calls
 * for a bare 204. Formatting the whole answer first and handing it to one mg_write makes
 * it one segment, which nearly doubles what a civetweb thread answers per second
 * (docs/performance.md §2e). The answer carries what civetweb's would: the status line,
 * Date, the given headers, Content-Length (except on 204) and the Connection header that
 * matches what civetweb then does with the connection.
 *
 * State is per request thread (civetweb serves a connection on one thread): call
 * http_answer_begin when a handler starts, http_answer_close_after when the connection
 * must not be reused, and http_answer_send once. */
#ifndef CALLLOG_HTTP_ANSWER_H
#define CALLLOG_HTTP_ANSWER_H

#include <civetweb.h>

/* Starts a new request on this thread: the connection may be kept alive again. */
void http_answer_begin(void);

/* The connection is closed after this request's answer (civetweb is told too). */
void http_answer_close_after(struct mg_connection *conn);

/* Sends the whole answer in one write: `status`, the extra header lines `headers` (each
 * ending in CRLF, or NULL), `content_type` (NULL: none) and `body` (NULL: none).
 * Returns 0, or -1 when the answer did not fit its buffer or the write failed. */
int http_answer_send(struct mg_connection *conn, int status, const char *headers,
                     const char *content_type, const char *body);

#endif
