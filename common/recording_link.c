/* recording_link — signing and checking the recording links of notes (see the header).
 *
 * Why an HMAC and not a random id stored somewhere: the link must keep working for as
 * long as the note exists, across restarts and without a table to look it up in, and the
 * ingest must be able to refuse a guessed CallSid without asking Twilio anything. The
 * MAC covers the expiry too, so it cannot be stretched by editing the number. */
#include "common/recording_link.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest expiry accepted in a token (digits): far beyond any real date. */
#define EXPIRY_DIGITS_MAX 12

/* 1 when `sid` is "CA" + 32 hex digits. */
int recording_link_call_sid_ok(const char *sid)
{
    if (sid == NULL || strncmp(sid, "CA", 2) != 0 || strlen(sid) != 34)
        return 0;
    for (size_t i = 2; i < 34; i++)
        if (!((sid[i] >= '0' && sid[i] <= '9') || (sid[i] >= 'a' && sid[i] <= 'f') ||
              (sid[i] >= 'A' && sid[i] <= 'F')))
            return 0;
    return 1;
}

/* Encodes `n` bytes as base64url without padding into `out` (room for 4n/3 + 2). */
static void b64url(const unsigned char *in, size_t n, char *out)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
        out[o++] = alphabet[v & 63];
    }
    if (n - i == 1) {
        unsigned v = (unsigned)in[i] << 16;
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
    } else if (n - i == 2) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
    }
    out[o] = '\0';
}

/* Writes the MAC part (RECORDING_LINK_MAC_LEN characters + NUL) for `call_sid` and the
 * expiry text `exp` ("" for none) into `out`. Returns 0, or -1 when HMAC fails. */
static int mac_text(const char *secret, const char *call_sid, const char *exp,
                    char out[RECORDING_LINK_MAC_LEN + 1])
{
    char msg[64];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    int n = snprintf(msg, sizeof msg, "%s%s%s", call_sid, exp[0] ? "." : "", exp);
    if (n < 0 || (size_t)n >= sizeof msg ||
        HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)msg, (size_t)n, md,
             &md_len) == NULL ||
        md_len != 32)
        return -1;
    b64url(md, md_len, out);
    OPENSSL_cleanse(md, sizeof md);
    return 0;
}

/* 1 when the secret is long enough to sign with. */
static int secret_ok(const char *secret)
{
    return secret != NULL && strlen(secret) >= RECORDING_LINK_SECRET_MIN;
}

/* Writes the token; see the header. */
int recording_link_token(const char *secret, const char *call_sid, time_t expires, char *out,
                         size_t outlen)
{
    char exp[24] = "", mac[RECORDING_LINK_MAC_LEN + 1];
    if (!secret_ok(secret) || !recording_link_call_sid_ok(call_sid) || out == NULL || expires < 0)
        return -1;
    if (expires > 0)
        snprintf(exp, sizeof exp, "%lld", (long long)expires);
    if (mac_text(secret, call_sid, exp, mac) != 0)
        return -1;
    int n = snprintf(out, outlen, "%s%s%s", exp, exp[0] ? "." : "", mac);
    return n >= 0 && (size_t)n < outlen ? n : -1;
}

/* 1 when the `n` characters at `s` are all of the base64url alphabet. */
static int all_b64url(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_'))
            return 0;
    return 1;
}

/* Splits `token` into its expiry digits (copied into `exp`, "" when none) and its MAC
 * part (`*mac`). Returns 0, or -1 when the token is not shaped like one. */
static int split_token(const char *token, char exp[EXPIRY_DIGITS_MAX + 1], const char **mac)
{
    const char *dot = strchr(token, '.');
    size_t ndigits = dot ? (size_t)(dot - token) : 0;
    exp[0] = '\0';
    *mac = dot ? dot + 1 : token;
    if (dot && (ndigits == 0 || ndigits > EXPIRY_DIGITS_MAX || token[0] == '0'))
        return -1;
    for (size_t i = 0; i < ndigits; i++)
        if (token[i] < '0' || token[i] > '9')
            return -1;
    memcpy(exp, token, ndigits);
    exp[ndigits] = '\0';
    if (strlen(*mac) != RECORDING_LINK_MAC_LEN || !all_b64url(*mac, RECORDING_LINK_MAC_LEN))
        return -1;
    return 0;
}

/* Checks a token; see the header. */
recording_link_verdict recording_link_check(const char *secret, const char *call_sid,
                                            const char *token, time_t now)
{
    char exp[EXPIRY_DIGITS_MAX + 1], want[RECORDING_LINK_MAC_LEN + 1];
    const char *mac;
    if (token == NULL || token[0] == '\0')
        return RECORDING_LINK_MISSING;
    if (split_token(token, exp, &mac) != 0)
        return RECORDING_LINK_MALFORMED;
    if (!secret_ok(secret) || !recording_link_call_sid_ok(call_sid) ||
        mac_text(secret, call_sid, exp, want) != 0)
        return RECORDING_LINK_FORGED;
    int same = CRYPTO_memcmp(want, mac, RECORDING_LINK_MAC_LEN) == 0;
    OPENSSL_cleanse(want, sizeof want);
    if (!same)
        return RECORDING_LINK_FORGED;
    if (exp[0] && (long long)now >= strtoll(exp, NULL, 10))
        return RECORDING_LINK_EXPIRED;
    return RECORDING_LINK_VALID;
}

/* The verdict's name. */
const char *recording_link_verdict_name(recording_link_verdict v)
{
    switch (v) {
    case RECORDING_LINK_VALID:
        return "valid";
    case RECORDING_LINK_MISSING:
        return "missing";
    case RECORDING_LINK_MALFORMED:
        return "malformed";
    case RECORDING_LINK_FORGED:
        return "forged";
    case RECORDING_LINK_EXPIRED:
        return "expired";
    }
    return "unknown";
}

/* Writes the whole link; see the header. */
int recording_link_url(const char *base_url, const char *secret, const char *call_sid,
                       time_t expires, char *out, size_t outlen)
{
    char token[RECORDING_LINK_TOKEN_MAX];
    if (base_url == NULL ||
        recording_link_token(secret, call_sid, expires, token, sizeof token) < 0)
        return -1;
    int n = snprintf(out, outlen, "%s/recordings/%s?t=%s", base_url, call_sid, token);
    return n >= 0 && (size_t)n < outlen ? n : -1;
}
