"""twilio_sign — computes X-Twilio-Signature the way Twilio and twilio-python do.

This is the end-to-end tests' oracle for signed webhooks, written independently of the
ingest's C code with nothing but hmac/hashlib/base64 so it can be checked by reading.
It follows twilio-python's RequestValidator (twilio/request_validator.py):

    compute_signature(uri, params):
        s = uri
        for name in sorted(set(params)):            # keys, sorted once each
            for value in sorted(set(values(name))):  # distinct values, sorted
                s += name + value
        base64(HMAC-SHA1(token, s))

For JSON bodies Twilio appends `bodySHA256=<hex sha256 of the body>` to the URL's query
and signs the URL alone (no parameters). test_ingest.py checks this module against the
SDKs' published vectors (shared/reference/twilio.md) before trusting it.
"""

import base64
import hashlib
import hmac
from urllib.parse import urlencode


def _group(params):
    """Returns {key: [values...]} from a dict or a list of (key, value) pairs."""
    items = params.items() if isinstance(params, dict) else params
    grouped = {}
    for key, value in items:
        grouped.setdefault(key, []).append(value)
    return grouped


def string_to_sign(url, params=None):
    """The exact text Twilio feeds to HMAC: the URL, then key+value per sorted param."""
    s = url
    for key, values in sorted(_group(params or []).items()):
        for value in sorted(set(values)):
            s += key + value
    return s


def compute_signature(token, url, params=None):
    """X-Twilio-Signature for a request to `url` with decoded POST `params`."""
    mac = hmac.new(token.encode("utf-8"), string_to_sign(url, params).encode("utf-8"),
                   hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def body_sha256(body):
    """Lowercase hex SHA-256 of a raw request body (bytes or str)."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    return hashlib.sha256(body).hexdigest()


def url_with_body_hash(url, body):
    """`url` with bodySHA256 appended to its query, as Twilio does for JSON bodies."""
    sep = "&" if "?" in url else "?"
    return url + sep + "bodySHA256=" + body_sha256(body)


def sign_form(token, url, params):
    """Returns (body_bytes, signature) for a form POST of `params` to `url`.

    The body is standard form encoding (spaces as '+', everything else %XX); the
    signature is over the decoded values, as Twilio computes it."""
    body = urlencode(params).encode("ascii")
    return body, compute_signature(token, url, params)


def sign_json(token, url, body):
    """Returns (url_with_hash, signature) for a JSON POST of raw `body` to `url`."""
    signed_url = url_with_body_hash(url, body)
    return signed_url, compute_signature(token, signed_url)
