/* signature — X-Twilio-Signature verification exactly as Twilio's SDKs do it.
 *
 * The signed string is the URL Twilio requested (fragment dropped, bytes untouched) followed
 * by the POST parameters sorted by key, then by value, each distinct key/value pair once —
 * which is what twilio-python and twilio-node produce. Because Twilio's back end is
 * inconsistent about ports, a request passes when the URL as given, or its one port variant
 * (explicit port removed, or the scheme's default port added), signed with any configured
 * token, equals the header. Each candidate is compared with CRYPTO_memcmp, and the check stops
 * at the first match, as the SDKs do: a forged header is tried against every candidate, so
 * its timing tells an attacker nothing about which bytes matched, and which candidate a
 * genuine request matched is no secret (it follows from the URL and the configuration).
 * JSON bodies are signed over the URL alone; their `bodySHA256` query parameter must equal
 * the SHA-256 of the raw body. Facts: ../shared/reference/twilio.md. */
#include "common/signature.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "common/buffer.h"

#define SIG_SHA1_LEN 20
#define SIG_SHA256_HEX_LEN 64
#define SIG_BODY_HASH_KEY "bodySHA256"
/* The most bytes of sorted parameters signed: above any body the ingest or doctor reads. */
#define SIG_PARAMS_MAX ((size_t)32 << 20)

/* Where the port sits in a URL's authority, as found by sig_find_port. */
typedef struct sig_authority {
    size_t host_end;          /* index where the host ends (the ':' when there is a port) */
    size_t port_end;          /* index just past the port (== host_end without one) */
    int has_port;             /* a ':' follows the host */
    const char *default_port; /* "443" / "80" for https / http, else NULL */
} sig_authority;

/* The length of `url` without its fragment: fragments are never signed. */
static size_t sig_url_len(const char *url)
{
    return strcspn(url, "#");
}

/* ASCII-only case-insensitive comparison of `a[0..len)` with the NUL-terminated `b`. */
static int sig_ascii_ieq(const char *a, size_t len, const char *b)
{
    if (strlen(b) != len)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z')
            x = (unsigned char)(x - 'A' + 'a');
        if (x != y)
            return 0;
    }
    return 1;
}

/* The length of a URL's `scheme://` prefix's scheme, or 0 when `url` has none. */
static size_t sig_scheme_len(const char *url, size_t len)
{
    size_t i = 0;
    unsigned char c;
    if (len == 0 || !((url[0] >= 'a' && url[0] <= 'z') || (url[0] >= 'A' && url[0] <= 'Z')))
        return 0;
    while (i < len) {
        c = (unsigned char)url[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '-' || c == '.'))
            break;
        i++;
    }
    if (len - i < 3 || memcmp(url + i, "://", 3) != 0)
        return 0;
    return i;
}

/* Checks that `s[0..len)` is all decimal digits (an empty port is allowed, as in RFC 3986). */
static int sig_all_digits(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
    }
    return 1;
}

/* Locates the authority's port in `url[0..len)`, skipping userinfo and IPv6 literals and never
 * looking past the authority. Returns 0, or -1 when the URL's authority cannot be understood
 * (then only the URL as given is tried). */
static int sig_find_port(const char *url, size_t len, sig_authority *a)
{
    size_t scheme = sig_scheme_len(url, len), start, end, host;
    const char *hostp, *colon;

    if (scheme == 0)
        return -1;
    start = scheme + 3;
    end = start + strcspn(url + start, "/?#");
    if (end > len)
        end = len;
    host = start;
    for (size_t i = start; i < end; i++) {
        if (url[i] == '@')
            host = i + 1;
    }
    a->default_port = sig_ascii_ieq(url, scheme, "https")  ? "443"
                      : sig_ascii_ieq(url, scheme, "http") ? "80"
                                                           : NULL;
    hostp = url + host;
    if (host < end && *hostp == '[') {
        const char *rb = memchr(hostp, ']', end - host);
        if (rb == NULL)
            return -1;
        colon = rb + 1 < url + end ? rb + 1 : NULL;
        if (colon != NULL && *colon != ':')
            return -1;
    } else {
        colon = memchr(hostp, ':', end - host);
    }
    a->has_port = colon != NULL;
    a->host_end = colon ? (size_t)(colon - url) : end;
    a->port_end = end;
    if (colon && !sig_all_digits(colon + 1, end - a->host_end - 1))
        return -1;
    return 0;
}

/* Builds the one port variant of `url[0..len)`: without its port when it has one, else with
 * the scheme's default port. `*out` is NULL when there is none; else the caller frees it.
 * Returns 0, or -1 when out of memory. */
static int sig_url_variant(const char *url, size_t len, char **out, size_t *out_len)
{
    sig_authority a;
    size_t dp_len, n;
    char *buf;

    *out = NULL;
    *out_len = 0;
    if (sig_find_port(url, len, &a) != 0)
        return 0;
    if (a.has_port) {
        n = len - (a.port_end - a.host_end);
        buf = malloc(n + 1);
        if (buf == NULL)
            return -1;
        memcpy(buf, url, a.host_end);
        memcpy(buf + a.host_end, url + a.port_end, len - a.port_end);
    } else {
        if (a.default_port == NULL)
            return 0;
        dp_len = strlen(a.default_port);
        n = len + 1 + dp_len;
        buf = malloc(n + 1);
        if (buf == NULL)
            return -1;
        memcpy(buf, url, a.host_end);
        buf[a.host_end] = ':';
        memcpy(buf + a.host_end + 1, a.default_port, dp_len);
        memcpy(buf + a.host_end + 1 + dp_len, url + a.host_end, len - a.host_end);
    }
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return 0;
}

/* qsort comparator: by key, then by value, both with strcmp. */
static int sig_param_cmp(const void *pa, const void *pb)
{
    const form_param *a = *(const form_param *const *)pa;
    const form_param *b = *(const form_param *const *)pb;
    int c = strcmp(a->key, b->key);
    return c != 0 ? c : strcmp(a->value, b->value);
}

/* Appends to `out` what Twilio signs after the URL: the parameters sorted by key (then
 * value), each key immediately followed by its value, duplicate pairs once. Built once
 * per request, so each URL variant and token costs one HMAC over two pieces. Returns 0,
 * or -1 when out of memory. */
static int sig_params_text(const form *params, buffer *out)
{
    const form_param **arr;

    if (params == NULL || params->count == 0)
        return buffer_add(out, "", 0) == CALLLOG_OK ? 0 : -1;
    arr = malloc(params->count * sizeof(*arr));
    if (arr == NULL)
        return -1;
    for (size_t i = 0; i < params->count; i++)
        arr[i] = &params->params[i];
    qsort(arr, params->count, sizeof(*arr), sig_param_cmp);
    for (size_t i = 0; i < params->count; i++) {
        if (i == 0 || sig_param_cmp(&arr[i - 1], &arr[i]) != 0) {
            buffer_add_str(out, arr[i]->key);
            buffer_add_str(out, arr[i]->value);
        }
    }
    free(arr);
    return buffer_error(out) == CALLLOG_OK ? 0 : -1;
}

/* OpenSSL's HMAC implementation, fetched once for the process: a fetch looks it up in
 * OpenSSL's locked provider store, which every request thread would otherwise queue on. */
static EVP_MAC *sig_hmac_impl;
static pthread_once_t sig_hmac_fetched = PTHREAD_ONCE_INIT;

/* pthread_once routine: fetches sig_hmac_impl (NULL when OpenSSL has none). */
static void sig_fetch_hmac(void)
{
    sig_hmac_impl = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

/* A fresh HMAC context, or NULL; the caller frees it with EVP_MAC_CTX_free. */
static EVP_MAC_CTX *sig_mac_new(void)
{
    pthread_once(&sig_hmac_fetched, sig_fetch_hmac);
    return sig_hmac_impl ? EVP_MAC_CTX_new(sig_hmac_impl) : NULL;
}

/* HMAC-SHA1 of `url[0..len)` followed by the sorted parameters' text (sig_params_text),
 * keyed with `token`, base64-encoded into `out` (SIGNATURE_LEN + 1 bytes). Returns 0 or -1. */
static int sig_hmac(EVP_MAC_CTX *ctx, const char *token, const char *url, size_t len,
                    const buffer *params, char *out)
{
    char digest[] = "SHA1";
    OSSL_PARAM mac_params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                               OSSL_PARAM_construct_end()};
    unsigned char md[EVP_MAX_MD_SIZE];
    size_t md_len = 0;
    int ok;

    ok = EVP_MAC_init(ctx, (const unsigned char *)token, strlen(token), mac_params) &&
         EVP_MAC_update(ctx, (const unsigned char *)url, len) &&
         EVP_MAC_update(ctx, (const unsigned char *)buffer_ptr(params), buffer_len(params)) &&
         EVP_MAC_final(ctx, md, &md_len, sizeof(md)) && md_len == SIG_SHA1_LEN;
    if (!ok)
        return -1;
    EVP_EncodeBlock((unsigned char *)out, md, SIG_SHA1_LEN);
    return 0;
}

/* Computes a signature; see signature.h. The URL's fragment, if any, is not signed. */
int signature_compute(const char *token, const char *url, const form *params, char *out)
{
    buffer text;
    EVP_MAC_CTX *ctx;
    int rc = -1;

    if (token == NULL || url == NULL || out == NULL)
        return -1;
    buffer_init(&text, SIG_PARAMS_MAX);
    if (sig_params_text(params, &text) != 0) {
        buffer_free(&text);
        return -1;
    }
    ctx = sig_mac_new();
    if (ctx != NULL)
        rc = sig_hmac(ctx, token, url, sig_url_len(url), &text, out);
    EVP_MAC_CTX_free(ctx);
    buffer_free(&text);
    return rc;
}

/* Tries the tokens against the URL variants, comparing each candidate with `header` in
 * constant time, until one matches (see the top comment). Sets `*match`; returns 0 or -1. */
static int sig_try_all(const char *const *tokens, size_t ntokens, const char *const *urls,
                       const size_t *lens, size_t nurls, const buffer *params, const char *header,
                       int *match)
{
    EVP_MAC_CTX *ctx = sig_mac_new();
    char cand[SIGNATURE_LEN + 1];
    int found = 0;

    if (ctx == NULL)
        return -1;
    for (size_t t = 0; t < ntokens && !found; t++) {
        if (tokens[t] == NULL || tokens[t][0] == '\0')
            continue;
        for (size_t u = 0; u < nurls && !found; u++) {
            if (sig_hmac(ctx, tokens[t], urls[u], lens[u], params, cand) != 0) {
                EVP_MAC_CTX_free(ctx);
                return -1;
            }
            found |= CRYPTO_memcmp(cand, header, SIGNATURE_LEN) == 0;
        }
    }
    EVP_MAC_CTX_free(ctx);
    *match = found;
    return 0;
}

/* The shared check behind both public entry points: header present, URL + params signed by
 * one of the tokens in one of the URL's forms. */
static sig_result sig_check(const char *const *tokens, size_t ntokens, const char *url,
                            const form *params, const char *header)
{
    buffer text;
    const char *urls[2];
    size_t lens[2], nurls = 1;
    char *variant = NULL;
    int match = 0, rc;

    if (header == NULL || header[0] == '\0')
        return SIG_MISSING;
    if (url == NULL || (tokens == NULL && ntokens > 0))
        return SIG_ERROR;
    if (strlen(header) != SIGNATURE_LEN) /* the length is public; the bytes are not */
        return SIG_MISMATCH;
    urls[0] = url;
    lens[0] = sig_url_len(url);
    if (sig_url_variant(url, lens[0], &variant, &lens[1]) != 0)
        return SIG_ERROR;
    if (variant != NULL)
        urls[nurls++] = variant;
    buffer_init(&text, SIG_PARAMS_MAX);
    rc = sig_params_text(params, &text) == 0
             ? sig_try_all(tokens, ntokens, urls, lens, nurls, &text, header, &match)
             : -1;
    buffer_free(&text);
    free(variant);
    if (rc != 0)
        return SIG_ERROR;
    return match ? SIG_OK : SIG_MISMATCH;
}

/* Checks a form-encoded request; see signature.h. */
sig_result signature_check_form(const char *const *tokens, size_t ntokens, const char *url,
                                const form *params, const char *header)
{
    return sig_check(tokens, ntokens, url, params, header);
}

/* Finds the first `bodySHA256` in the query of `url[0..len)` and decodes its value into `out`
 * (SIG_SHA256_HEX_LEN + 1 bytes). Returns 1 found and well-formed, 0 absent, -1 present but
 * not 64 characters once decoded. */
static int sig_query_body_hash(const char *url, size_t len, char *out)
{
    const char *q = memchr(url, '?', len), *end = url + len;
    const size_t key_len = sizeof(SIG_BODY_HASH_KEY) - 1;
    char key[3 * sizeof(SIG_BODY_HASH_KEY)], val[3 * SIG_SHA256_HEX_LEN + 1];

    for (const char *p = q ? q + 1 : end; p < end;) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *seg_end = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(seg_end - p));
        size_t klen = eq ? (size_t)(eq - p) : (size_t)(seg_end - p);
        if (klen <= 3 * key_len && form_decode(p, klen, 1, key) == (long)key_len &&
            memcmp(key, SIG_BODY_HASH_KEY, key_len) == 0) {
            size_t vlen = eq ? (size_t)(seg_end - eq - 1) : 0;
            if (eq == NULL || vlen > 3 * SIG_SHA256_HEX_LEN ||
                form_decode(eq + 1, vlen, 0, val) != SIG_SHA256_HEX_LEN)
                return -1;
            memcpy(out, val, SIG_SHA256_HEX_LEN + 1);
            return 1;
        }
        p = amp ? amp + 1 : end;
    }
    return 0;
}

/* Lowercase hex SHA-256 of `body[0..len)` into `out` (SIG_SHA256_HEX_LEN + 1 bytes). */
static int sig_body_sha256_hex(const char *body, size_t len, char *out)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;

    if (!EVP_Digest(body ? body : "", len, md, &md_len, EVP_sha256(), NULL) || md_len != 32)
        return -1;
    for (unsigned int i = 0; i < md_len; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 0x0f];
    }
    out[SIG_SHA256_HEX_LEN] = '\0';
    return 0;
}

/* Compares the URL's bodySHA256 (any hex case) with the body's SHA-256. */
static sig_result sig_check_body_hash(const char *url, const char *body, size_t len)
{
    char want[SIG_SHA256_HEX_LEN + 1], got[SIG_SHA256_HEX_LEN + 1];
    int found = sig_query_body_hash(url, sig_url_len(url), want);

    if (found == 0)
        return SIG_BODY_HASH_MISSING;
    if (found < 0)
        return SIG_BODY_HASH_MISMATCH;
    for (size_t i = 0; i < SIG_SHA256_HEX_LEN; i++) {
        if (want[i] >= 'A' && want[i] <= 'F')
            want[i] = (char)(want[i] - 'A' + 'a');
    }
    if (sig_body_sha256_hex(body, len, got) != 0)
        return SIG_ERROR;
    return CRYPTO_memcmp(want, got, SIG_SHA256_HEX_LEN) == 0 ? SIG_OK : SIG_BODY_HASH_MISMATCH;
}

/* Checks a JSON request; see signature.h. The signature is checked first, so an unsigned
 * request is reported as such whatever its body. */
sig_result signature_check_json(const char *const *tokens, size_t ntokens, const char *url,
                                const char *body, size_t len, const char *header)
{
    sig_result r = sig_check(tokens, ntokens, url, NULL, header);
    if (r != SIG_OK)
        return r;
    return sig_check_body_hash(url, body, len);
}

/* Maps a result onto a short English reason. */
const char *signature_strerror(sig_result r)
{
    switch (r) {
    case SIG_OK:
        return "ok";
    case SIG_MISSING:
        return "missing X-Twilio-Signature";
    case SIG_MISMATCH:
        return "signature mismatch";
    case SIG_BODY_HASH_MISSING:
        return "bodySHA256 missing from URL";
    case SIG_BODY_HASH_MISMATCH:
        return "bodySHA256 does not match body";
    case SIG_ERROR:
        return "signature check failed (internal error)";
    }
    return "unknown signature result";
}
