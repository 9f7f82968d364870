/* json_text — writes JSON text straight into a common/buffer.
 *
 * The ingest writes an event and, when Redis is down, a spool record for every webhook:
 * building a jansson tree only to serialise it cost more than all the rest of the request
 * (issue 11, docs/performance.md §2b). These functions append to a buffer, whose sticky
 * error says whether everything fit (buffer.h). Parsing stays with jansson. */
#ifndef CALLLOG_JSON_TEXT_H
#define CALLLOG_JSON_TEXT_H

#include "common/buffer.h"

/* Appends `s` as a JSON string literal: quote, backslash and control characters escaped,
 * every byte that is not part of valid UTF-8 replaced by U+FFFD (a caller name in Latin-1
 * must not cost the call), everything else as is. */
void json_text_string(buffer *b, const char *s);

/* A malloc'ed copy of `s` repaired the way json_text_string writes it (each byte that is
 * not part of valid UTF-8 becomes U+FFFD), for fields that must equal what the JSON says;
 * NULL out of memory. */
char *json_text_utf8_copy(const char *s);

/* Appends `"name":` after a comma, or without one when `*first` (then clears it). */
void json_text_key(buffer *b, int *first, const char *name);

#endif
