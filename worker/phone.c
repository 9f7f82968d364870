/* phone — matching Twilio's E.164 numbers to the phones RD Station contacts hold.
 *
 * Everything works on digit strings. A Brazilian number is split into its area code
 * (DDD) and subscriber number; mobiles are compared in their 9-digit canonical form so
 * that a contact saved before the 9th digit was added (2012–2016) still matches. The
 * query forms are what RD accounts were seen to hold; the comparison is what decides.
 * See phone.h for the rules. */
#include "worker/phone.h"

#include <stdio.h>
#include <string.h>

/* Longest digit string we look at: E.164 allows 15; hand-typed input gets some slack. */
#define PHONE_DIGITS_MAX 40

/* The shapes a Brazilian subscriber number can have. */
typedef enum br_kind {
    BR_LANDLINE, /* 8 digits starting 2–5 */
    BR_MOBILE9,  /* 9 digits starting 9 */
    BR_MOBILE8,  /* 8 digits starting 6–9: old mobile format */
    BR_OTHER     /* anything else of 8 or 9 digits (service numbers, new ranges) */
} br_kind;

/* A Brazilian number split into area code and subscriber number (digits only). */
typedef struct br_number {
    int has_ddd;
    char ddd[3];
    char sub[10];
    size_t sublen;
    br_kind kind;
} br_number;

/* Copies the digits of `in` into `out`; see phone.h. */
int phone_digits(const char *in, char *out, size_t outlen)
{
    size_t n = 0;

    if (in == NULL || out == NULL || outlen == 0)
        return -1;
    for (const char *p = in; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            continue;
        if (n + 1 >= outlen) {
            out[0] = '\0';
            return -1;
        }
        out[n++] = *p;
    }
    out[n] = '\0';
    return (int)n;
}

/* 1 when `s` is '+' followed by 7–15 digits and nothing else. */
static int phone_is_e164(const char *s)
{
    size_t n = 0;

    if (s == NULL || s[0] != '+')
        return 0;
    for (const char *p = s + 1; *p != '\0'; p++, n++) {
        if (*p < '0' || *p > '9')
            return 0;
    }
    return n >= 7 && n <= 15;
}

/* Classifies a subscriber number of `len` digits. */
static br_kind phone_br_kind(const char *sub, size_t len)
{
    if (len == 9 && sub[0] == '9')
        return BR_MOBILE9;
    if (len == 8 && sub[0] >= '6' && sub[0] <= '9')
        return BR_MOBILE8;
    if (len == 8 && sub[0] >= '2' && sub[0] <= '5')
        return BR_LANDLINE;
    return BR_OTHER;
}

/* Fills `out` with the subscriber part `sub` (8 or 9 digits). Returns 0, or -1. */
static int phone_br_set_sub(br_number *out, const char *sub, size_t len)
{
    if (len != 8 && len != 9)
        return -1;
    memcpy(out->sub, sub, len);
    out->sub[len] = '\0';
    out->sublen = len;
    out->kind = phone_br_kind(out->sub, len);
    return 0;
}

/* Parses a national number (DDD + subscriber, 10 or 11 digits). Returns 0, or -1. */
static int phone_br_parse_national(const char *nat, br_number *out)
{
    size_t len = strlen(nat);

    if (len != 10 && len != 11)
        return -1;
    if (nat[0] < '1' || nat[0] > '9' || nat[1] < '1' || nat[1] > '9')
        return -1;
    out->has_ddd = 1;
    out->ddd[0] = nat[0];
    out->ddd[1] = nat[1];
    out->ddd[2] = '\0';
    return phone_br_set_sub(out, nat + 2, len - 2);
}

/* Parses the digits of an E.164 number as Brazilian. Returns 0, or -1 when not one. */
static int phone_br_parse_e164_digits(const char *digits, br_number *out)
{
    if (strncmp(digits, "55", 2) != 0)
        return -1;
    return phone_br_parse_national(digits + 2, out);
}

/* Writes the other 9th-digit form of a mobile's subscriber number into `alt` (>= 10
 * bytes). Returns 1 when there is one, 0 for landlines and unknown shapes. A 9-digit
 * mobile has an old form only when the remaining 8 digits look like an old mobile. */
static int phone_br_alt_sub(const br_number *n, char *alt)
{
    if (n->kind == BR_MOBILE9 && n->sub[1] >= '6' && n->sub[1] <= '9') {
        memcpy(alt, n->sub + 1, 9);
        return 1;
    }
    if (n->kind == BR_MOBILE8) {
        alt[0] = '9';
        memcpy(alt + 1, n->sub, 9);
        return 1;
    }
    return 0;
}

/* Writes the canonical subscriber number (old mobiles get their 9th digit) into `out`
 * (>= 10 bytes). */
static void phone_br_canonical_sub(const br_number *n, char *out)
{
    if (n->kind == BR_MOBILE8) {
        out[0] = '9';
        memcpy(out + 1, n->sub, n->sublen + 1);
    } else {
        memcpy(out, n->sub, n->sublen + 1);
    }
}

/* Appends `s` to the list unless it is already there or the list is full. */
static void phone_variant_add(phone_variant_list *out, const char *s)
{
    if (out->count >= PHONE_MAX_VARIANTS || strlen(s) >= PHONE_VARIANT_LEN)
        return;
    for (size_t i = 0; i < out->count; i++) {
        if (strcmp(out->v[i], s) == 0)
            return;
    }
    memcpy(out->v[out->count], s, strlen(s) + 1);
    out->count++;
}

/* Appends the five usual forms of DDD `ddd` + subscriber `sub` (8 or 9 digits). */
static void phone_variant_add_br(phone_variant_list *out, const char *ddd, const char *sub)
{
    char buf[PHONE_VARIANT_LEN];
    size_t len = strlen(sub);
    int head = len == 9 ? 5 : 4;

    snprintf(buf, sizeof buf, "+55%s%s", ddd, sub);
    phone_variant_add(out, buf);
    snprintf(buf, sizeof buf, "55%s%s", ddd, sub);
    phone_variant_add(out, buf);
    snprintf(buf, sizeof buf, "%s%s", ddd, sub);
    phone_variant_add(out, buf);
    snprintf(buf, sizeof buf, "(%s) %.*s-%s", ddd, head, sub, sub + head);
    phone_variant_add(out, buf);
    phone_variant_add(out, sub);
}

/* Appends the trunk-prefixed national form ("0" + DDD + subscriber). */
static void phone_variant_add_trunk(phone_variant_list *out, const char *ddd, const char *sub)
{
    char buf[PHONE_VARIANT_LEN];

    snprintf(buf, sizeof buf, "0%s%s", ddd, sub);
    phone_variant_add(out, buf);
}

/* Fills `out` with the query forms of `e164`; see phone.h. */
int phone_variants(const char *e164, phone_variant_list *out)
{
    char digits[PHONE_DIGITS_MAX];
    char alt[10];
    br_number br;
    int has_alt;

    if (out == NULL)
        return -1;
    out->count = 0;
    if (!phone_is_e164(e164) || phone_digits(e164, digits, sizeof digits) < 0)
        return -1;
    if (phone_br_parse_e164_digits(digits, &br) != 0) {
        phone_variant_add(out, e164);
        phone_variant_add(out, digits);
        return (int)out->count;
    }
    phone_variant_add_br(out, br.ddd, br.sub);
    has_alt = phone_br_alt_sub(&br, alt);
    if (has_alt)
        phone_variant_add_br(out, br.ddd, alt);
    phone_variant_add_trunk(out, br.ddd, br.sub);
    if (has_alt)
        phone_variant_add_trunk(out, br.ddd, alt);
    return (int)out->count;
}

/* Strips a trunk prefix from hand-typed national digits: "0" + DDD + number, or
 * "0" + 2-digit carrier code + DDD + number. Returns the national part, or NULL. */
static const char *phone_strip_trunk(const char *d)
{
    size_t len;

    if (d[0] != '0')
        return d;
    d++;
    len = strlen(d);
    if (len == 10 || len == 11)
        return d;
    if (len == 12 || len == 13)
        return d + 2;
    return NULL;
}

/* Parses a stored phone as a Brazilian number; `intl` says it was written with '+' or
 * "00". Returns 0 with `out` filled (possibly without DDD), or -1 when it is not one. */
static int phone_br_parse_stored(const char *d, int intl, br_number *out)
{
    size_t len = strlen(d);

    memset(out, 0, sizeof *out);
    if (intl) {
        if (strncmp(d, "55", 2) != 0)
            return -1;
        d += 2;
        if (d[0] == '0')
            d++; /* "+55 (011) …" */
        return phone_br_parse_national(d, out);
    }
    if (d[0] == '0') {
        const char *nat = phone_strip_trunk(d);
        return nat == NULL ? -1 : phone_br_parse_national(nat, out);
    }
    if ((len == 12 || len == 13) && strncmp(d, "55", 2) == 0)
        return phone_br_parse_national(d + 2, out);
    if (len == 10 || len == 11)
        return phone_br_parse_national(d, out);
    if (len == 8 || len == 9)
        return phone_br_set_sub(out, d, len);
    return -1;
}

/* 1 when two Brazilian numbers are the same line: same DDD (or none stored) and the same
 * canonical subscriber number. */
static int phone_br_same(const br_number *twilio, const br_number *stored)
{
    char a[11], b[11];

    if (stored->has_ddd && strcmp(twilio->ddd, stored->ddd) != 0)
        return 0;
    phone_br_canonical_sub(twilio, a);
    phone_br_canonical_sub(stored, b);
    return strcmp(a, b) == 0;
}

/* Reads a stored phone's digits into `sd` and returns where its number starts (after an
 * international "00"), setting `*intl` when it was written with '+' or "00"; NULL when it
 * holds no digits (or too many). */
static const char *phone_stored_digits(const char *stored, char *sd, size_t sdlen, int *intl)
{
    const char *sp = stored;
    if (stored == NULL || phone_digits(stored, sd, sdlen) <= 0)
        return NULL;
    while (*sp == ' ' || *sp == '\t')
        sp++;
    *intl = *sp == '+';
    if (!*intl && strncmp(sd, "00", 2) == 0) {
        *intl = 1;
        return sd + 2;
    }
    return sd;
}

/* Compares a stored phone with an E.164 number; see phone.h. */
int phone_same_number(const char *twilio_e164, const char *stored)
{
    char td[PHONE_DIGITS_MAX], sd[PHONE_DIGITS_MAX];
    const char *s;
    br_number tb, sb;
    int intl;

    if (!phone_is_e164(twilio_e164) || phone_digits(twilio_e164, td, sizeof td) < 0 ||
        (s = phone_stored_digits(stored, sd, sizeof sd, &intl)) == NULL)
        return 0;
    if (phone_br_parse_e164_digits(td, &tb) != 0)
        return strcmp(td, s) == 0;
    if (phone_br_parse_stored(s, intl, &sb) != 0)
        return 0;
    return phone_br_same(&tb, &sb);
}

/* Appends "<tag><a><b>" to `out`. */
static void phone_key_add(phone_key_list *out, char tag, const char *a, const char *b)
{
    if (out->count < PHONE_KEYS_MAX &&
        snprintf(out->k[out->count], PHONE_KEY_LEN, "%c%s%s", tag, a, b) < PHONE_KEY_LEN)
        out->count++;
}

/* Appends the key of a parsed Brazilian number ("b" with area code, "s" without). */
static void phone_key_add_br(phone_key_list *out, const br_number *n)
{
    char canon[11];
    phone_br_canonical_sub(n, canon);
    if (n->has_ddd)
        phone_key_add(out, 'b', n->ddd, canon);
    else
        phone_key_add(out, 's', "", canon);
}

/* The index keys of a stored phone; see phone.h. Parses like phone_same_number. */
int phone_index_keys(const char *stored, phone_key_list *out)
{
    char sd[PHONE_DIGITS_MAX];
    const char *s;
    br_number sb;
    int intl;
    out->count = 0;
    if ((s = phone_stored_digits(stored, sd, sizeof sd, &intl)) == NULL)
        return 0;
    if (*s != '\0')
        phone_key_add(out, 'd', s, "");
    if (phone_br_parse_stored(s, intl, &sb) == 0)
        phone_key_add_br(out, &sb);
    return (int)out->count;
}

/* The look-up keys of an E.164 number; see phone.h. */
int phone_lookup_keys(const char *e164, phone_key_list *out)
{
    char td[PHONE_DIGITS_MAX];
    br_number tb;
    out->count = 0;
    if (!phone_is_e164(e164) || phone_digits(e164, td, sizeof td) < 0)
        return -1;
    if (phone_br_parse_e164_digits(td, &tb) != 0) {
        phone_key_add(out, 'd', td, "");
        return (int)out->count;
    }
    phone_key_add_br(out, &tb);
    tb.has_ddd = 0;
    phone_key_add_br(out, &tb);
    return (int)out->count;
}

/* Picks the customer's number by call direction; see phone.h. */
const char *phone_customer(const char *direction, const char *from, const char *to)
{
    if (direction == NULL)
        return NULL;
    if (strcmp(direction, "inbound") == 0 || strcmp(direction, "trunking-terminating") == 0)
        return from;
    if (strcmp(direction, "outbound-api") == 0 || strcmp(direction, "outbound-dial") == 0 ||
        strcmp(direction, "trunking-originating") == 0 || strcmp(direction, "outbound") == 0)
        return to;
    return NULL;
}
