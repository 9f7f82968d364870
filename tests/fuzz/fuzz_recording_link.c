/* fuzz_recording_link — libFuzzer target for the recording-link token check
 * (common/recording_link.c), which reads the `t` of any URL an outsider sends.
 *
 * The input is split at its first newline into a CallSid candidate and a token. Oracles:
 * the verdict is one of the five; a token the check calls valid is exactly the one the
 * signer writes for that CallSid and expiry (no second spelling is accepted); and the
 * signer's own tokens for the CallSid, with and without expiry, are always valid. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/recording_link.h"

#define FUZZ_SECRET "fuzz-recording-link-secret"
#define FUZZ_NOW 1800000000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Copies `n` bytes of `src` into a new NUL-terminated string (NUL bytes kept: they end
 * it early, as a C caller would see them). */
static char *fuzz_str(const uint8_t *src, size_t n)
{
    char *s = malloc(n + 1);
    if (s == NULL)
        abort();
    memcpy(s, src, n);
    s[n] = '\0';
    return s;
}

/* Aborts unless a token the check accepted is the signer's token for it. */
static void fuzz_check_valid(const char *sid, const char *token)
{
    char want[RECORDING_LINK_TOKEN_MAX];
    const char *dot = strchr(token, '.');
    long long exp = dot ? strtoll(token, NULL, 10) : 0;
    if (recording_link_token(FUZZ_SECRET, sid, (time_t)exp, want, sizeof want) < 0 ||
        strcmp(want, token) != 0)
        abort();
}

/* Aborts unless the signer's own tokens for `sid` pass the check. */
static void fuzz_check_signed(const char *sid)
{
    char t[RECORDING_LINK_TOKEN_MAX];
    if (!recording_link_call_sid_ok(sid))
        return;
    if (recording_link_token(FUZZ_SECRET, sid, 0, t, sizeof t) < 0 ||
        recording_link_check(FUZZ_SECRET, sid, t, FUZZ_NOW) != RECORDING_LINK_VALID)
        abort();
    if (recording_link_token(FUZZ_SECRET, sid, FUZZ_NOW + 1, t, sizeof t) < 0 ||
        recording_link_check(FUZZ_SECRET, sid, t, FUZZ_NOW) != RECORDING_LINK_VALID ||
        recording_link_check(FUZZ_SECRET, sid, t, FUZZ_NOW + 1) != RECORDING_LINK_EXPIRED)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t sid_len = nl ? (size_t)(nl - data) : size;
    char *sid = fuzz_str(data, sid_len);
    char *token = fuzz_str(nl ? nl + 1 : data + size, nl ? size - sid_len - 1 : 0);
    recording_link_verdict v = recording_link_check(FUZZ_SECRET, sid, token, FUZZ_NOW);
    if (v != RECORDING_LINK_VALID && v != RECORDING_LINK_MISSING && v != RECORDING_LINK_MALFORMED &&
        v != RECORDING_LINK_FORGED && v != RECORDING_LINK_EXPIRED)
        abort();
    if (v == RECORDING_LINK_VALID)
        fuzz_check_valid(sid, token);
    fuzz_check_signed(sid);
    free(sid);
    free(token);
    return 0;
}
