/* fuzz_signature — libFuzzer target for X-Twilio-Signature verification (common/signature.c).
 *
 * The input is split at its first two newlines into a URL, a header and a body. The body
 * is parsed as a form and checked with signature_check_form; the raw body is checked with
 * signature_check_json. As an oracle, the signature signature_compute gives for the URL and
 * params must always be accepted by signature_check_form, and by signature_check_json's
 * signature step (which may then still refuse the body hash). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/form.h"
#include "common/signature.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A NUL-terminated copy of `len` bytes (cut at any embedded NUL), or NULL. */
static char *fuzz_strndup(const uint8_t *p, size_t len)
{
    char *s = malloc(len + 1);
    if (s == NULL)
        return NULL;
    memcpy(s, p, len);
    s[len] = '\0';
    return s;
}

/* Runs both checks on the pieces and the compute/check oracle. */
static void fuzz_run(const char *url, const char *header, const char *body, size_t body_len)
{
    static const char *const tokens[] = {"12345", "secondary"};
    char own[SIGNATURE_LEN + 1];
    form f;
    sig_result r;

    if (form_parse(body, body_len, 512, &f) == FORM_OK) {
        r = signature_check_form(tokens, 2, url, &f, header);
        if (signature_strerror(r) == NULL)
            abort();
        if (signature_compute("secondary", url, &f, own) != 0 ||
            signature_check_form(tokens, 2, url, &f, own) != SIG_OK)
            abort();
        form_free(&f);
    }
    r = signature_check_json(tokens, 2, url, body, body_len, header);
    if (signature_strerror(r) == NULL)
        abort();
    if (signature_compute("12345", url, NULL, own) != 0)
        abort();
    r = signature_check_json(tokens, 2, url, body, body_len, own);
    if (r == SIG_MISSING || r == SIG_MISMATCH || r == SIG_ERROR)
        abort();
}

/* One fuzz input: split into url / header / body and run the checks. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl1 = memchr(data, '\n', size), *nl2;
    size_t url_len, hdr_len;
    char *url, *header;

    if (nl1 == NULL)
        return 0;
    url_len = (size_t)(nl1 - data);
    nl2 = memchr(nl1 + 1, '\n', size - url_len - 1);
    if (nl2 == NULL)
        return 0;
    hdr_len = (size_t)(nl2 - nl1 - 1);
    url = fuzz_strndup(data, url_len);
    header = fuzz_strndup(nl1 + 1, hdr_len);
    if (url != NULL && header != NULL)
        fuzz_run(url, header, (const char *)nl2 + 1, size - url_len - hdr_len - 2);
    free(url);
    free(header);
    return 0;
}
