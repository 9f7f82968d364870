/* phone — matching Twilio's E.164 numbers to the phones RD Station contacts hold.
 *
 * Twilio gives the customer's number in E.164 (`+5511971730783`). RD accounts hold
 * whatever a person typed: `+55 11 97173-0783`, `(11) 97173-0783`, `011 97173-0783`,
 * or the pre-2016 mobile form without the 9th digit (`(11) 7173-0783`). RD does not
 * document which of these its `phone=` filter matches, so the worker queries the likely
 * forms (phone_variants) and then confirms each candidate by comparing canonical digits
 * (phone_same_number) — design §3 "Mapping".
 *
 * Brazilian numbers: +55, a two-digit area code (DDD, both digits 1–9), then the
 * subscriber number. A 9-digit subscriber number starting with 9 is a mobile; an 8-digit
 * one starting with 6–9 is a mobile in the old format (the same line without the 9th
 * digit); 8 digits starting with 2–5 is a landline, which has no 9th-digit form.
 *
 * Pure functions: no I/O, no allocation, no global state; safe from any thread. */
#ifndef CALLLOG_PHONE_H
#define CALLLOG_PHONE_H

#include <stddef.h>

/* At most this many query forms are produced for one number. */
#define PHONE_MAX_VARIANTS 12
/* Room for one formatted variant, terminator included. */
#define PHONE_VARIANT_LEN 32

/* The query forms of one number, most likely first, no duplicates. */
typedef struct phone_variant_list {
    size_t count;
    char v[PHONE_MAX_VARIANTS][PHONE_VARIANT_LEN];
} phone_variant_list;

/* Copies only the ASCII digits of `in` into `out` (always NUL-terminated when outlen > 0).
 * Returns the number of digits, or -1 when `in`/`out` is NULL or the digits do not fit. */
int phone_digits(const char *in, char *out, size_t outlen);

/* Fills `out` with the forms RD accounts hold for the E.164 number `e164` ('+' then 7–15
 * digits, nothing else). For a Brazilian number: "+5511971730783", "5511971730783",
 * "11971730783", "(11) 97173-0783", "971730783", then for mobiles the same five forms of
 * the other 9th-digit variant, then the trunk-prefixed national forms ("011971730783").
 * Other countries: "+<digits>", "<digits>". Returns the count (>= 1), or -1 when `e164`
 * is not an E.164 number (e.g. "client:alice", "anonymous") — `out->count` is then 0. */
int phone_variants(const char *e164, phone_variant_list *out);

/* 1 when `stored` (any formatting: spaces, dashes, dots, parentheses; with or without
 * +55, 55, 0055 or a leading 0 trunk prefix, optionally with a 2-digit carrier code;
 * with or without a mobile's 9th digit) is the same line as the E.164 number
 * `twilio_e164`; 0 otherwise, including for unparseable input. A number with a different
 * area code or country never matches. A stored number with no area code at all (8 or 9
 * digits) matches on the subscriber number: the account holds nothing that contradicts
 * it, and RD's `phone=` filter only returns it for a query of that exact local form. */
int phone_same_number(const char *twilio_e164, const char *stored);

/* Most index keys one phone has, and the room for one key. */
#define PHONE_KEYS_MAX 2
#define PHONE_KEY_LEN 48

/* The keys of a phone in the phone index (phone_index.h). */
typedef struct phone_key_list {
    size_t count;
    char k[PHONE_KEYS_MAX][PHONE_KEY_LEN];
} phone_key_list;

/* The keys a stored phone (any form phone_same_number accepts) is filed under in the
 * phone index: "b<DDD><canonical subscriber>" for a Brazilian number with area code,
 * "s<canonical subscriber>" for one without, and "d<digits>" (an international prefix
 * "00" dropped) for the exact comparison other countries get. The keys are built so that
 * phone_same_number(e164, stored) holds exactly when phone_lookup_keys(e164) and
 * phone_index_keys(stored) share a key. Returns the count (0 when nothing to file). */
int phone_index_keys(const char *stored, phone_key_list *out);

/* The keys to look the E.164 number `e164` up under: "b…" and "s…" for a Brazilian
 * number, "d<digits>" otherwise. Returns the count, or -1 when `e164` is not E.164. */
int phone_lookup_keys(const char *e164, phone_key_list *out);

/* The customer's number of a call: `from` on inbound calls (and trunking-terminating),
 * `to` on outbound ones (outbound-api, outbound-dial, trunking-originating). Returns one of
 * the two pointers (not a copy), or NULL for a NULL or unknown direction. */
const char *phone_customer(const char *direction, const char *from, const char *to);

#endif
