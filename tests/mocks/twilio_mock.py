#!/usr/bin/python3
"""Mock of the Twilio REST API (Calls list, Calls and Recordings) for calllog tests.

The worker may enrich a call event from Twilio REST before writing the CRM note
(design §1 step 2).  Integration and end-to-end tests point TWILIO_API_BASE_URL here.
The reconciler pages the Calls list to find calls whose webhook never arrived (design
§3, "Source of truth").  Following /work/shared/reference/twilio.md, the mock answers
GET /2010-04-01/Accounts/{AC}/Calls.json (newest first, Twilio's filters with their
day granularity, PageSize/Page/PageToken paging and next_page_uri),
GET .../Calls/{CA}.json and .../Calls/{CA}/Recordings.json, a recording's media
(GET .../Recordings/{RE}.mp3|.wav, behind the same Basic auth as the rest, as on accounts
that enforce HTTP auth on media: fixed audio bytes, or a 302 to a short-lived signed
location under /_media/ that needs no auth), the Account resource
(GET /2010-04-01/Accounts/{AC}.json) and its IncomingPhoneNumbers list (seeded through
POST /_mock/numbers, for calllog-admin doctor), with HTTP Basic auth (API
key SID:secret or AccountSid:AuthToken), Twilio's error bodies ({"code","message",
"more_info","status"}), and a 429 (code 20429) when more requests are in flight than
--max-concurrent allows (Twilio's limit is on concurrency).  Calls and recordings are
seeded through the control API; faults (which can target the list path alone),
latency and the request log come from mocklib.

Run: /usr/bin/python3 tests/mocks/twilio_mock.py --port 0 --port-file F [options];
see tests/mocks/README.md.
"""

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import secrets
import sys
import urllib.parse
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mocklib  # noqa: E402
from mocklib import HttpError, json_response  # noqa: E402

API = "/2010-04-01"
ERROR_TEXT = {
    400: (20001, "Bad Request"),
    401: (20003, "Authenticate"),
    403: (20403, "Forbidden"),
    404: (20404, "The requested resource %s was not found"),
    405: (20004, "Method not allowed"),
    429: (20429, "Too Many Requests"),
    500: (20500, "Internal Server Error"),
    503: (20503, "Service Unavailable"),
}
UNANSWERED = ("busy", "no-answer", "failed", "canceled")
RFC2822_RE = re.compile(r"^[A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4} ")
# Calls list filters: query key -> call field.  Exact ones compare strings; the date
# ones also come as KEY< and KEY> (what `EndTime<=D` / `EndTime>=D` decode to).
EXACT_FILTERS = {"Status": "status", "To": "to", "From": "from", "ParentCallSid": "parent_call_sid"}
DATE_FILTERS = {"StartTime": "start_time", "EndTime": "end_time"}
LIST_FILTER_KEYS = tuple(EXACT_FILTERS) + tuple(
    key + suffix for key in DATE_FILTERS for suffix in ("", "<", ">"))
DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
PAGE_SIZE_DEFAULT = 50
PAGE_SIZE_MAX = 1000
# Media: seeded recordings carry these mock-only fields, kept out of the API answers.
MEDIA_FIELDS = ("media_mode", "media_size")
MEDIA_MODES = ("bytes", "redirect")
MEDIA_SIZE_DEFAULT = 48 * 1024
MEDIA_SIGNED_TTL_S = 600  # how long a redirect's signed location works
MEDIA_CONTENT_TYPE = {"mp3": "audio/mpeg", "wav": "audio/x-wav"}


def twilio_error(status, path, message=None):
    """Build Twilio's JSON error answer for a status."""
    code, text = ERROR_TEXT.get(status, (20000 + status if status < 1000 else status,
                                         mocklib.reason_phrase(status)))
    if "%s" in text:
        text = text % path
    return json_response(status, {"code": code, "message": message or text,
                                  "more_info": "https://www.twilio.com/docs/errors/%d" % code,
                                  "status": status})


def twilio_time(value):
    """Render a seeded time as RFC 2822 (Twilio's format); keep unparseable strings as given."""
    if value is None or (isinstance(value, str) and RFC2822_RE.match(value)):
        return value
    parsed = mocklib.parse_time(value)
    return mocklib.rfc2822(parsed) if parsed else value


def utc_day(key, value):
    """The UTC day [start, end) a YYYY-MM-DD filter value names; HttpError(400) otherwise."""
    try:
        if not DAY_RE.match(value):
            raise ValueError(value)
        start = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    except ValueError:
        raise HttpError(400, "Invalid value for %s: %r is not YYYY-MM-DD" % (key, value)) from None
    return start, start + timedelta(days=1)


def list_filters(req):
    """The Calls list filters of a request: ([(field, value)], [(field, lo, hi)]).

    Date bounds are day-granular: KEY=D is [D, D+1), KEY>=D is [D, ∞), KEY<=D is
    (-∞, D+1).  Unknown keys are ignored, as Twilio ignores them.
    """
    exact = [(field, req.arg(key)) for key, field in EXACT_FILTERS.items() if req.arg(key) is not None]
    bounds = []
    for key, field in DATE_FILTERS.items():
        for suffix in ("", "<", ">"):
            value = req.arg(key + suffix)
            if value is None:
                continue
            lo, hi = utc_day(key + suffix, value)
            bounds.append((field, None if suffix == "<" else lo, None if suffix == ">" else hi))
    return exact, bounds


def call_matches(call, exact, bounds):
    """Say whether a call passes every filter; a call without the time never matches its bound."""
    if any(call.get(field) != value for field, value in exact):
        return False
    for field, lo, hi in bounds:
        when = mocklib.parse_time(call.get(field))
        if when is None or (lo is not None and when < lo) or (hi is not None and when >= hi):
            return False
    return True


def list_key(call):
    """Calls list order: newest start_time (date_created before the call starts) first, then sid."""
    when = mocklib.parse_time(call.get("start_time")) or mocklib.parse_time(call.get("date_created"))
    return (-(when.timestamp() if when else 0.0), call["sid"])


def int_arg(req, name, default, low, high=None):
    """An integer query parameter within [low, high]; HttpError(400) otherwise."""
    text = req.arg(name)
    if text is None:
        return default
    value = int(text) if text.isascii() and text.isdigit() else None
    if value is None or value < low or (high is not None and value > high):
        limits = "between %d and %d" % (low, high) if high is not None else ">= %d" % low
        raise HttpError(400, "Invalid value for %s: must be an integer %s" % (name, limits))
    return value


def media_bytes(recording_sid, size):
    """The fixed audio bytes the mock serves for a recording: an ID3 header, then a
    SHA-256 chain seeded with the SID, `size` bytes in all (same SID, same bytes)."""
    out = bytearray(b"ID3\x03\x00\x00\x00\x00\x00\x00")
    block = recording_sid.encode("ascii")
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


def random_sid(prefix):
    """A Twilio-shaped SID: two letters and 32 hex digits."""
    return prefix + secrets.token_hex(16)


class TwilioMock(mocklib.MockApp):
    """The Twilio REST mock."""

    name = "twilio-mock"

    def __init__(self, opts):
        super().__init__(opts.rate_limit, opts.rate_window, opts.quiet)
        self.account_sid = opts.account_sid
        self.credentials = {}
        if opts.auth_token:
            self.credentials[opts.account_sid] = opts.auth_token
        if opts.api_key_sid and opts.api_key_secret:
            self.credentials[opts.api_key_sid] = opts.api_key_secret
        self.max_concurrent = opts.max_concurrent
        self.calls = {}
        self.recordings = {}
        self.media = {}  # recording SID -> {"media_mode", "media_size"}
        self.media_launch_mode = self.media_default_mode = opts.media_mode
        self.media_key = secrets.token_bytes(16)  # signs the redirect's locations
        self.numbers = {}
        self.api = mocklib.Router()
        acc = API + r"/Accounts/([^/]+)"
        self.api.add("GET", acc + r"\.json", self._account_show)
        self.api.add("GET", acc + r"/IncomingPhoneNumbers\.json", self._number_list)
        self.api.add("GET", acc + r"/Calls\.json", self._call_list)
        self.api.add("GET", acc + r"/Calls/([^/]+)\.json", self._call_show)
        self.api.add("GET", acc + r"/Calls/([^/]+)/Recordings\.json", self._call_recordings)
        self.api.add("GET", acc + r"/Recordings/([^/]+)\.json", self._recording_show)
        self.api.add("GET", acc + r"/Recordings/([^/.]+)(?:\.(mp3|wav))?", self._recording_media)
        c = self.control
        c.add("POST", r"/_mock/calls", self._ctl_seed_calls)
        c.add("GET", r"/_mock/calls", lambda req: json_response(200, {"calls": list(self.calls.values())}))
        c.add("POST", r"/_mock/numbers", self._ctl_seed_numbers)
        c.add("GET", r"/_mock/numbers", lambda req: json_response(200, {"numbers": list(self.numbers.values())}))
        c.add("POST", r"/_mock/recordings", self._ctl_seed_recordings)
        c.add("GET", r"/_mock/recordings",
              lambda req: json_response(200, {"recordings": list(self.recordings.values())}))
        c.add("GET", r"/_mock/media/([^/]+)", self._ctl_media_bytes)
        c.add("POST", r"/_mock/media", self._ctl_media_mode)

    # ---- pipeline ---------------------------------------------------------------------

    def serve_api(self, req):
        """Rate/concurrency limits, Basic auth, then the routes."""
        req.api = "twilio"
        if req.path.startswith("/_media/"):
            return self._signed_media(req)
        with self.lock:
            too_many = self.max_concurrent > 0 and self.inflight > self.max_concurrent
        if too_many or self.check_rate_limit() is not None:
            return twilio_error(429, req.path)
        if not self._authorized(req):
            return twilio_error(401, req.path)
        func, groups = self.api.match(req.method, req.path)
        if func is None:
            return twilio_error(405 if groups else 404, req.path)
        account = groups[0]
        if account != self.account_sid:
            return twilio_error(401, req.path)
        with self.lock:
            return func(req, *groups[1:])

    def finish(self, resp):
        """Add the headers Twilio puts on every answer."""
        resp.headers.setdefault("Twilio-Request-Id", random_sid("RQ"))
        return resp

    def handle(self, req):
        """Answer a request, stamping Twilio's headers on API answers."""
        answer = super().handle(req)
        if isinstance(answer, mocklib.Response) and req.api != "control":
            self.finish(answer)
        if isinstance(answer, mocklib.Response) and answer.status == 401 and req.api != "control":
            answer.headers.setdefault("WWW-Authenticate", 'Basic realm="Twilio API"')
        return answer

    def _authorized(self, req):
        """Check HTTP Basic credentials against the configured pairs."""
        header = req.headers.get("Authorization") or ""
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode(
                "utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        expected = self.credentials.get(user)
        return bool(sep) and expected is not None and secrets.compare_digest(
            password.encode("utf-8"), expected.encode("utf-8"))

    def default_error(self, status, req, detail=None):
        """Twilio's error body for any status."""
        return twilio_error(status, req.path, detail)

    # ---- API --------------------------------------------------------------------------

    def _call_list(self, req):
        """GET .../Calls.json: the account's calls, newest first, filtered and paged like Twilio.

        PageToken is PA<sid> (the page after that call) or PB<sid> (the page before it),
        so following next_page_uri neither repeats nor skips calls when new ones arrive.
        """
        page_size = int_arg(req, "PageSize", PAGE_SIZE_DEFAULT, 1, PAGE_SIZE_MAX)
        page = int_arg(req, "Page", 0, 0)
        exact, bounds = list_filters(req)
        items = sorted((c for c in self.calls.values() if call_matches(c, exact, bounds)), key=list_key)
        begin, end = self._page_slice(req, items, page, page_size)
        shown = items[begin:end]
        start = page * page_size
        body = {
            "calls": shown, "page": page, "page_size": page_size, "start": start,
            "end": start + max(0, len(shown) - 1),
            "uri": self._list_uri(req, page_size, page, req.arg("PageToken")),
            "first_page_uri": self._list_uri(req, page_size, 0),
            "next_page_uri": self._list_uri(req, page_size, page + 1, "PA" + shown[-1]["sid"])
            if shown and end < len(items) else None,
            "previous_page_uri": self._list_uri(req, page_size, max(0, page - 1), "PB" + shown[0]["sid"])
            if shown and begin > 0 else None,
        }
        return json_response(200, body, content_type="application/json")

    def _page_slice(self, req, items, page, page_size):
        """[begin, end) of the sorted list that a Page/PageToken pair asks for."""
        token = req.arg("PageToken")
        if token is None:
            begin = page * page_size
            return begin, begin + page_size
        anchor = self.calls.get(token[2:])
        if token[:2] not in ("PA", "PB") or anchor is None:
            raise HttpError(400, "Invalid value for PageToken")
        key = list_key(anchor)
        if token[:2] == "PA":
            begin = sum(1 for c in items if list_key(c) <= key)
            return begin, begin + page_size
        end = sum(1 for c in items if list_key(c) < key)
        return max(0, end - page_size), end

    def _list_uri(self, req, page_size, page, token=None):
        """A Calls list page's path: the request's filters, then PageSize, Page and PageToken."""
        pairs = [(key, value) for key in LIST_FILTER_KEYS for value in req.args.get(key, ())]
        pairs += [("PageSize", page_size), ("Page", page)] + ([("PageToken", token)] if token else [])
        query = "&".join("%s=%s" % (urllib.parse.quote(k, safe=""), urllib.parse.quote(str(v), safe=""))
                         for k, v in pairs)
        return "%s/Accounts/%s/Calls.json?%s" % (API, self.account_sid, query)

    def _account_show(self, req):
        """GET /2010-04-01/Accounts/{AC}.json: the account the credentials belong to."""
        acc = self.account_sid
        now = mocklib.rfc2822(mocklib.now_utc())
        return json_response(200, {
            "auth_token": "********", "date_created": now, "date_updated": now,
            "friendly_name": "Mock account", "owner_account_sid": acc, "sid": acc,
            "status": "active", "type": "Full", "uri": "%s/Accounts/%s.json" % (API, acc),
            "subresource_uris": {
                "calls": "%s/Accounts/%s/Calls.json" % (API, acc),
                "incoming_phone_numbers": "%s/Accounts/%s/IncomingPhoneNumbers.json" % (API, acc)},
        }, content_type="application/json")

    def _number_list(self, req):
        """GET .../IncomingPhoneNumbers.json: the account's numbers by phone number, paged
        with PageSize/Page and next_page_uri like every Twilio list."""
        page_size = int_arg(req, "PageSize", PAGE_SIZE_DEFAULT, 1, PAGE_SIZE_MAX)
        page = int_arg(req, "Page", 0, 0)
        items = sorted(self.numbers.values(), key=lambda n: (n["phone_number"], n["sid"]))
        shown = items[page * page_size:(page + 1) * page_size]
        path = "%s/Accounts/%s/IncomingPhoneNumbers.json" % (API, self.account_sid)

        def uri(num):
            return "%s?PageSize=%d&Page=%d" % (path, page_size, num)
        return json_response(200, {
            "incoming_phone_numbers": shown, "page": page, "page_size": page_size,
            "start": page * page_size, "end": page * page_size + max(0, len(shown) - 1),
            "uri": uri(page), "first_page_uri": uri(0),
            "next_page_uri": uri(page + 1) if (page + 1) * page_size < len(items) else None,
            "previous_page_uri": uri(page - 1) if page > 0 else None,
        }, content_type="application/json")

    def _call_show(self, req, call_sid):
        """GET .../Calls/{CA}.json."""
        call = self.calls.get(call_sid)
        if call is None:
            return twilio_error(404, req.path)
        return json_response(200, call, content_type="application/json")

    def _call_recordings(self, req, call_sid):
        """GET .../Calls/{CA}/Recordings.json: the call's recordings, Twilio's list envelope."""
        if call_sid not in self.calls:
            return twilio_error(404, req.path)
        # As Twilio lists them under a call: the `uri` is call-scoped, not a media URL.
        items = [dict(r, uri="%s/Accounts/%s/Calls/%s/Recordings/%s.json" % (
            API, self.account_sid, call_sid, r["sid"]))
            for r in self.recordings.values() if r["call_sid"] == call_sid]
        uri = req.path
        page_size = 50
        return json_response(200, {
            "recordings": items, "start": 0, "end": max(0, len(items) - 1), "page": 0,
            "page_size": page_size, "uri": "%s?PageSize=%d&Page=0" % (uri, page_size),
            "first_page_uri": "%s?PageSize=%d&Page=0" % (uri, page_size),
            "next_page_uri": None, "previous_page_uri": None}, content_type="application/json")

    def _recording_show(self, req, recording_sid):
        """GET .../Recordings/{RE}.json."""
        rec = self.recordings.get(recording_sid)
        if rec is None:
            return twilio_error(404, req.path)
        return json_response(200, rec, content_type="application/json")

    def _recording_media(self, req, recording_sid, ext):
        """GET .../Recordings/{RE}.mp3|.wav (no suffix: wav, Twilio's default): the audio,
        behind Basic auth. Only a completed recording has media (404 otherwise). In
        redirect mode the answer is a 302 to a signed location that works without auth
        for a short while, as Twilio sends a browser to its storage."""
        rec = self.recordings.get(recording_sid)
        if rec is None or rec.get("status") != "completed":
            return twilio_error(404, req.path)
        ext = ext or "wav"
        media = self.media.get(recording_sid, {})
        if media.get("media_mode", self.media_default_mode) == "redirect":
            expires = int(mocklib.now_utc().timestamp()) + MEDIA_SIGNED_TTL_S
            target = "/_media/%s.%s?Expires=%d&Signature=%s" % (
                recording_sid, ext, expires, self._media_signature(recording_sid, ext, expires))
            host = req.headers.get("Host") or "127.0.0.1"
            return mocklib.Response(302, b"", None, {"Location": "http://%s%s" % (host, target)})
        return self._media_answer(recording_sid, ext, req.headers.get("Range"))

    def _media_answer(self, recording_sid, ext, range_header=None):
        """200 with the recording's fixed bytes (Accept-Ranges: bytes), or for one
        `Range: bytes=a-b` (or `a-`, `-n`) 206 with that slice and Content-Range; 416 for a
        range past the end. Other Range forms are ignored (200), as RFC 9110 allows."""
        size = self.media.get(recording_sid, {}).get("media_size", MEDIA_SIZE_DEFAULT)
        data = media_bytes(recording_sid, size)
        found = re.fullmatch(r"bytes=(\d*)-(\d*)", (range_header or "").strip())
        if not found or found.groups() == ("", ""):
            return mocklib.Response(200, data, MEDIA_CONTENT_TYPE[ext], {"Accept-Ranges": "bytes"})
        first, last = found.groups()
        if first == "":
            start, end = max(0, size - int(last)), size - 1
        else:
            start, end = int(first), min(size - 1, int(last)) if last else size - 1
        if start >= size or start > end:
            return mocklib.Response(416, b"", None, {"Content-Range": "bytes */%d" % size})
        return mocklib.Response(206, data[start:end + 1], MEDIA_CONTENT_TYPE[ext],
                                {"Accept-Ranges": "bytes",
                                 "Content-Range": "bytes %d-%d/%d" % (start, end, size)})

    def _media_signature(self, recording_sid, ext, expires):
        """The signature of a redirect location."""
        msg = ("%s.%s.%d" % (recording_sid, ext, expires)).encode("ascii")
        return hmac.new(self.media_key, msg, hashlib.sha256).hexdigest()

    def _signed_media(self, req):
        """GET /_media/{RE}.{ext}?Expires=&Signature=: the redirect's target; no Basic auth,
        but a valid, unexpired signature (403 otherwise, like a signed storage URL)."""
        found = re.fullmatch(r"/_media/([^/.]+)\.(mp3|wav)", req.path)
        expires = req.arg("Expires") or ""
        if found is None or not expires.isdigit():
            return twilio_error(404, req.path)
        sid, ext = found.groups()
        good = hmac.compare_digest(req.arg("Signature") or "",
                                   self._media_signature(sid, ext, int(expires)))
        if not good or int(expires) < mocklib.now_utc().timestamp():
            return mocklib.text_response(403, "<Error><Code>AccessDenied</Code></Error>",
                                         "application/xml")
        with self.lock:
            if sid not in self.recordings:
                return twilio_error(404, req.path)
            return self._media_answer(sid, ext, req.headers.get("Range"))

    # ---- seeding ----------------------------------------------------------------------

    def reset_data(self, body):
        """Forget seeded calls, recordings and numbers."""
        self.calls.clear()
        self.recordings.clear()
        self.media.clear()
        self.media_default_mode = self.media_launch_mode
        self.numbers.clear()

    def build_call(self, spec):
        """Complete a seeded call with Twilio's fields; seeded values win."""
        if not isinstance(spec, dict):
            raise HttpError(400, "a call must be an object")
        sid = spec.get("sid") or random_sid("CA")
        acc = self.account_sid
        base = "%s/Accounts/%s/Calls/%s" % (API, acc, sid)
        status = spec.get("status", "completed")
        now = mocklib.now_utc()
        duration = spec.get("duration",
                            "0" if status == "completed" else "" if status in UNANSWERED else None)
        call = {
            "account_sid": acc, "annotation": None, "answered_by": None, "api_version": "2010-04-01",
            "caller_name": None, "date_created": mocklib.rfc2822(now),
            "date_updated": mocklib.rfc2822(now), "direction": "inbound", "duration": duration,
            "end_time": mocklib.rfc2822(now) if status in ("completed",) + UNANSWERED else None,
            "forwarded_from": None, "from": "+14155550100", "from_formatted": None,
            "group_sid": None, "parent_call_sid": None, "phone_number_sid": random_sid("PN"),
            "price": None, "price_unit": "USD", "queue_time": "0", "sid": sid,
            "start_time": mocklib.rfc2822(now), "status": status, "to": "+14155550101",
            "to_formatted": None, "trunk_sid": None, "uri": base + ".json",
            "subresource_uris": {
                "feedback": base + "/Feedback.json", "notifications": base + "/Notifications.json",
                "recordings": base + "/Recordings.json", "streams": base + "/Streams.json",
                "payments": base + "/Payments.json", "siprec": base + "/Siprec.json",
                "events": base + "/Events.json",
                "feedback_summaries": "%s/Accounts/%s/Calls/FeedbackSummary.json" % (API, acc)},
        }
        call.update(spec)
        for key in ("date_created", "date_updated", "start_time", "end_time"):
            call[key] = twilio_time(call[key])
        call["from_formatted"] = call["from_formatted"] or call["from"]
        call["to_formatted"] = call["to_formatted"] or call["to"]
        if call["duration"] is not None and not isinstance(call["duration"], str):
            call["duration"] = str(call["duration"])
        return call

    def build_recording(self, spec):
        """Complete a seeded recording with Twilio's fields; seeded values win."""
        if not isinstance(spec, dict) or not spec.get("call_sid"):
            raise HttpError(400, "a recording needs call_sid")
        sid = spec.get("sid") or random_sid("RE")
        acc = self.account_sid
        now = mocklib.rfc2822(mocklib.now_utc())
        rec = {
            "account_sid": acc, "api_version": "2010-04-01", "call_sid": spec["call_sid"],
            "conference_sid": None, "channels": 1, "date_created": now, "date_updated": now,
            "start_time": now, "duration": "0", "encryption_details": None, "error_code": None,
            "price": None, "price_unit": "USD", "sid": sid, "source": "DialVerb",
            "status": "completed", "track": "both",
            "uri": "%s/Accounts/%s/Recordings/%s.json" % (API, acc, sid),
            "subresource_uris": {
                "add_on_results": "%s/Accounts/%s/Recordings/%s/AddOnResults.json" % (API, acc, sid),
                "transcriptions": "%s/Accounts/%s/Recordings/%s/Transcriptions.json" % (API, acc, sid)},
        }
        media = {k: spec[k] for k in MEDIA_FIELDS if k in spec}
        if media.get("media_mode", "bytes") not in MEDIA_MODES:
            raise HttpError(400, "media_mode must be one of %s" % ", ".join(MEDIA_MODES))
        size = media.get("media_size", MEDIA_SIZE_DEFAULT)
        if not isinstance(size, int) or size < 10 or size > 64 * 1024 * 1024:
            raise HttpError(400, "media_size must be an integer from 10 to 64 MiB")
        self.media[sid] = media
        rec.update({k: v for k, v in spec.items() if k not in MEDIA_FIELDS})
        for key in ("date_created", "date_updated", "start_time"):
            rec[key] = twilio_time(rec[key])
        if rec["duration"] is not None and not isinstance(rec["duration"], str):
            rec["duration"] = str(rec["duration"])
        return rec

    def _ctl_seed_calls(self, req):
        """POST /_mock/calls: one call {...} or {"calls": [...]}; returns the stored calls."""
        body = self.control_body(req)
        specs = body["calls"] if isinstance(body, dict) and isinstance(body.get("calls"), list) else [body]
        with self.lock:
            calls = [self.build_call(s) for s in specs]
            for call in calls:
                self.calls[call["sid"]] = call
        if isinstance(body, dict) and "calls" in body:
            return json_response(201, {"calls": calls})
        return json_response(201, calls[0])

    def build_number(self, spec):
        """Complete a seeded IncomingPhoneNumber with Twilio's fields; seeded values win."""
        if not isinstance(spec, dict) or not spec.get("phone_number"):
            raise HttpError(400, "a number needs phone_number")
        sid = spec.get("sid") or random_sid("PN")
        now = mocklib.rfc2822(mocklib.now_utc())
        number = {
            "account_sid": self.account_sid, "address_requirements": "none",
            "api_version": "2010-04-01", "capabilities": {"voice": True, "sms": True, "mms": False},
            "date_created": now, "date_updated": now, "friendly_name": spec["phone_number"],
            "phone_number": spec["phone_number"], "sid": sid, "status": "in-use",
            "status_callback": "", "status_callback_method": "POST", "voice_method": "POST",
            "voice_url": "", "voice_application_sid": None,
            "uri": "%s/Accounts/%s/IncomingPhoneNumbers/%s.json" % (API, self.account_sid, sid),
        }
        number.update(spec)
        return number

    def _ctl_seed_numbers(self, req):
        """POST /_mock/numbers: one number {phone_number, status_callback, ...} or
        {"numbers": [...]}; {"numbers": [...], "replace": true} forgets the others first."""
        body = self.control_body(req)
        many = isinstance(body, dict) and isinstance(body.get("numbers"), list)
        specs = body["numbers"] if many else [body]
        with self.lock:
            numbers = [self.build_number(s) for s in specs]
            if many and body.get("replace"):
                self.numbers.clear()
            for number in numbers:
                self.numbers[number["sid"]] = number
        return json_response(201, {"numbers": numbers} if many else numbers[0])

    def _ctl_media_bytes(self, req, recording_sid):
        """GET /_mock/media/{RE}[?ext=mp3]: the bytes the media endpoint serves for it."""
        with self.lock:
            if recording_sid not in self.recordings:
                raise HttpError(404, "no recording %s" % recording_sid)
            return self._media_answer(recording_sid, req.arg("ext") or "mp3")

    def _ctl_media_mode(self, req):
        """POST /_mock/media {"mode": "bytes"|"redirect"}: the default for every recording
        seeded without its own media_mode (a reset restores --media-mode)."""
        mode = self.control_body(req).get("mode")
        if mode not in MEDIA_MODES:
            raise HttpError(400, "mode must be one of %s" % ", ".join(MEDIA_MODES))
        with self.lock:
            self.media_default_mode = mode
        return json_response(200, {"mode": mode})

    def _ctl_seed_recordings(self, req):
        """POST /_mock/recordings: one recording {call_sid, ...} or {"recordings": [...]}."""
        body = self.control_body(req)
        many = isinstance(body, dict) and isinstance(body.get("recordings"), list)
        specs = body["recordings"] if many else [body]
        with self.lock:
            recs = [self.build_recording(s) for s in specs]
            for rec in recs:
                self.recordings[rec["sid"]] = rec
        return json_response(201, {"recordings": recs} if many else recs[0])


def parse_args(argv):
    """Command-line options."""
    parser = mocklib.new_argument_parser("Mock Twilio REST (Calls, Recordings) for calllog tests.")
    parser.add_argument("--account-sid", default="AC" + "0" * 31 + "1")
    parser.add_argument("--auth-token", default="mock-auth-token",
                        help="accepted as AccountSid:AuthToken ('' disables)")
    parser.add_argument("--api-key-sid", default="SK" + "0" * 31 + "1")
    parser.add_argument("--api-key-secret", default="mock-api-key-secret",
                        help="accepted as ApiKeySid:Secret ('' disables)")
    parser.add_argument("--max-concurrent", type=int, default=0,
                        help="429 (20429) when more requests are in flight (0 = no limit)")
    parser.add_argument("--rate-limit", type=int, default=0,
                        help="requests per window (0 = off, the default)")
    parser.add_argument("--rate-window", type=float, default=60.0)
    parser.add_argument("--media-mode", choices=MEDIA_MODES, default="bytes",
                        help="recording media: the bytes, or a 302 to a signed location")
    parser.add_argument("--seed", help='JSON file {"calls": [...], "recordings": [...]} to load at start')
    return parser.parse_args(argv)


def main(argv):
    """Start the mock and serve until SIGTERM."""
    opts = parse_args(argv)
    app = TwilioMock(opts)
    if opts.seed:
        with open(opts.seed, encoding="utf-8") as handle:
            seed = json.load(handle)
        for spec in seed.get("calls", []):
            call = app.build_call(spec)
            app.calls[call["sid"]] = call
        for spec in seed.get("recordings", []):
            rec = app.build_recording(spec)
            app.recordings[rec["sid"]] = rec
    return mocklib.serve(app, opts.port, opts.port_file)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
