"""Shared machinery for the mock third-party HTTP APIs used by calllog's tests.

calllog talks to exactly two outside HTTP services, Twilio REST and RD Station CRM
(design §4).  Integration and end-to-end tests replace them with small local servers
that answer like the real ones and can be told to misbehave.  Everything those servers
have in common lives here, so each mock only has to describe its own API:

- a threaded HTTP/1.1 server bound to 127.0.0.1 (keep-alive, chunked request bodies,
  100-continue), writing its port to a file once it listens and stopping on SIGTERM;
- request/response value types and JSON helpers;
- fault injection (answer the next N matching requests with a given status/body, hang
  for a while, or drop the connection), global added latency, a sliding-window rate
  limiter, an in-flight request counter;
- a request log readable over HTTP and one stderr line per request;
- the control API under /_mock (reset, requests, faults, latency, ratelimit, health)
  that each mock extends with its own seeding endpoints.

Only the Python 3.11 standard library is used, so the mocks run with /usr/bin/python3
on a bare Debian machine.
"""

import argparse
import collections
import email.utils
import json
import os
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
import traceback
import urllib.parse
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY_BYTES = 10 * 1024 * 1024
CONTROL_PREFIX = "/_mock"
BRT = timezone(timedelta(hours=-3))  # RD Station answers in Brasília time (no DST since 2019)


class HttpError(Exception):
    """Raised by handlers to answer with the mock's standard error body for a status."""

    def __init__(self, status, detail=None, fields=None):
        super().__init__(detail or "")
        self.status = status
        self.detail = detail
        self.fields = fields


class Request:
    """One parsed HTTP request as the mocks see it."""

    def __init__(self, method, target, headers, body, client):
        parts = urllib.parse.urlsplit(target)
        self.method = method
        self.target = target
        self.path = parts.path or "/"
        self.raw_query = parts.query
        self.args = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        self.headers = headers
        self.body = body
        self.client = client
        self.fault = None  # description of the fault that hit this request, if any
        self.api = None  # which API the mock decided this request belongs to
        self.started = time.monotonic()

    def arg(self, name, default=None):
        """Return the first value of query parameter `name`, or `default`."""
        values = self.args.get(name)
        return values[0] if values else default

    def content_type(self):
        """Return the media type of the body, lowercased, without parameters."""
        value = self.headers.get("Content-Type") or ""
        return value.split(";", 1)[0].strip().lower()

    def is_json(self):
        """Say whether the client declared a JSON body."""
        ctype = self.content_type()
        return ctype == "application/json" or ctype.endswith("+json")

    def json(self):
        """Parse the body as JSON; raise HttpError(400) if it is not valid JSON."""
        if not self.body:
            return None
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HttpError(400, "malformed JSON body: %s" % exc) from None

    def form(self):
        """Parse an application/x-www-form-urlencoded body into {key: first value}."""
        try:
            text = self.body.decode("utf-8")
        except UnicodeDecodeError:
            raise HttpError(400, "form body is not UTF-8") from None
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True)
        out = {}
        for key, value in pairs:
            out.setdefault(key, value)
        return out

    def body_for_log(self):
        """Return the body in a form suitable for the request log (parsed when possible)."""
        if not self.body:
            return None
        if self.is_json():
            try:
                return json.loads(self.body.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                pass
        if self.content_type() == "application/x-www-form-urlencoded":
            try:
                return self.form()
            except HttpError:
                pass
        return self.body[:2000].decode("utf-8", "replace")


class Response:
    """An answer to write back: status, body bytes, content type and extra headers."""

    def __init__(self, status, body=b"", content_type=None, headers=None):
        self.status = int(status)
        self.body = body
        self.content_type = content_type
        self.headers = dict(headers or {})


class Drop:
    """Marker answer: close the connection without writing anything (or reset it)."""

    def __init__(self, reset=False):
        self.reset = reset


def json_response(status, obj, headers=None, content_type="application/json; charset=utf-8"):
    """Build a JSON response from any JSON-serialisable object."""
    body = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(status, body, content_type, headers)


def text_response(status, text, content_type="text/plain; charset=utf-8", headers=None):
    """Build a response with a text body (HTML pages, plain errors)."""
    return Response(status, text.encode("utf-8"), content_type, headers)


def html_error_page(status, title=None, message=None):
    """Return an HTML error page like the ones gateways and Rails apps serve."""
    reason = title or reason_phrase(status)
    msg = message or "The server could not complete your request."
    return (
        "<!DOCTYPE html>\n<html>\n<head>\n  <title>%d %s</title>\n</head>\n<body>\n"
        "  <h1>%s</h1>\n  <p>%s</p>\n</body>\n</html>\n" % (status, reason, reason, msg)
    )


def reason_phrase(status):
    """Return the standard reason phrase for a status code ("Unknown" if none)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def now_utc():
    """Return the current time as an aware UTC datetime."""
    return datetime.now(timezone.utc)


def iso_brt(dt):
    """Format a datetime the way RD Station v1 does: ISO 8601, milliseconds, -03:00."""
    return dt.astimezone(BRT).isoformat(timespec="milliseconds")


def iso_utc(dt):
    """Format a datetime as ISO 8601 UTC with milliseconds and a Z suffix."""
    return dt.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def rfc2822(dt):
    """Format a datetime the way Twilio does: 'Tue, 31 Aug 2010 20:36:29 +0000'."""
    return email.utils.format_datetime(dt.astimezone(timezone.utc))


def parse_time(value):
    """Parse an ISO 8601 or RFC 2822 timestamp into an aware datetime; None if invalid."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc)
    text = str(value).strip()
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            dt = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
    if dt is None:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


class Router:
    """Maps (method, path regex) to handler functions; regex groups become arguments."""

    def __init__(self):
        self._routes = []

    def add(self, method, pattern, func):
        """Register `func(req, *groups)` for `method` on paths fully matching `pattern`."""
        self._routes.append((method, re.compile(pattern), func))

    def match(self, method, path):
        """Return (func, groups) for the request, or (None, path_known) if none fits."""
        path_known = False
        for route_method, regex, func in self._routes:
            found = regex.fullmatch(path)
            if not found:
                continue
            path_known = True
            if route_method == method:
                return func, found.groups()
        return None, path_known


class Fault:
    """One fault rule: which requests it hits and how they are answered."""

    FIELDS = (
        "method", "path", "query", "status", "count", "skip", "delay_ms",
        "retry_after", "body", "content_type", "headers", "drop", "replace",
    )

    def __init__(self, fault_id, spec):
        unknown = set(spec) - set(self.FIELDS)
        if unknown:
            raise HttpError(400, "unknown fault field(s): %s" % ", ".join(sorted(unknown)))
        self.id = fault_id
        self.method = str(spec.get("method") or "*").upper()
        self.path = spec.get("path") or ".*"
        self.query = spec.get("query")
        self.status = _int_field(spec, "status", 0)
        self.count = _int_field(spec, "count", 1)
        self.skip = _int_field(spec, "skip", 0)
        self.delay_ms = _int_field(spec, "delay_ms", 0)
        self.retry_after = spec.get("retry_after")
        self.body = spec.get("body")
        self.content_type = spec.get("content_type")
        self.headers = spec.get("headers") or {}
        self.drop = spec.get("drop") or False
        self.replace = spec.get("replace") or False
        self.hits = 0
        self._validate()
        self._path_re = re.compile(self.path)
        self._query_re = re.compile(self.query) if self.query else None

    def _validate(self):
        """Refuse specs that are malformed or would do nothing."""
        if self.status != 0 and not 100 <= self.status <= 599:
            raise HttpError(400, "status must be 0 or 100..599")
        if self.count == 0 or self.count < -1:
            raise HttpError(400, "count must be >= 1, or -1 for unlimited")
        if self.skip < 0 or self.delay_ms < 0:
            raise HttpError(400, "skip and delay_ms must be >= 0")
        if self.drop not in (False, True, "reset"):
            raise HttpError(400, 'drop must be false, true or "reset"')
        if self.replace not in (False, True):
            raise HttpError(400, "replace must be true or false")
        if self.replace and self.status == 0 and self.body is None and not self.drop \
                and self.content_type is None and not self.headers:
            raise HttpError(400, "replace does nothing: give status, body, content_type, "
                                 "headers or drop")
        if not self.replace and self.status == 0 and not self.drop and self.delay_ms == 0:
            raise HttpError(400, "fault does nothing: give status, delay_ms or drop")
        if self.retry_after is not None and not isinstance(self.retry_after, (int, float, str)):
            raise HttpError(400, "retry_after must be a number, a string or null")
        if not isinstance(self.headers, dict):
            raise HttpError(400, "headers must be an object")
        for name, regex in (("path", self.path), ("query", self.query)):
            try:
                if regex is not None:
                    re.compile(regex)
            except re.error as exc:
                raise HttpError(400, "bad %s regex: %s" % (name, exc)) from None

    def matches(self, method, path, raw_query):
        """Say whether this rule applies to a request."""
        if self.method not in ("*", method):
            return False
        if not self._path_re.search(path):
            return False
        return not self._query_re or bool(self._query_re.search(raw_query))

    def describe(self):
        """Return the rule as a JSON-friendly dict (what is left of it)."""
        out = {name: getattr(self, name) for name in self.FIELDS}
        out["id"] = self.id
        out["hits"] = self.hits
        return out


def _int_field(spec, name, default):
    """Read an integer field from a fault spec, raising HttpError(400) if it is not one."""
    value = spec.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise HttpError(400, "%s must be a number" % name)
    return int(value)


def _rule_body(body):
    """The bytes and content type of a fault rule's `body`: a string is sent as is (HTML
    when it starts with '<', else plain text), anything else as JSON."""
    if isinstance(body, str):
        html = body.lstrip().startswith("<")
        return body.encode("utf-8"), ("text/html; charset=utf-8" if html
                                      else "text/plain; charset=utf-8")
    return (json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
            "application/json; charset=utf-8")


class FaultTable:
    """Ordered list of fault rules; each matching request consumes one use of the first rule."""

    def __init__(self):
        self._lock = threading.Lock()
        self._faults = []
        self._next_id = 1

    def add(self, spec):
        """Validate and append a rule; return its description."""
        if not isinstance(spec, dict):
            raise HttpError(400, "a fault must be a JSON object")
        with self._lock:
            fault = Fault(self._next_id, spec)
            self._next_id += 1
            self._faults.append(fault)
            return fault.describe()

    def take(self, method, path, raw_query):
        """Return the rule that fires for this request (consuming one use), or None."""
        with self._lock:
            for fault in self._faults:
                if not fault.matches(method, path, raw_query):
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    continue
                fault.hits += 1
                if fault.count > 0:
                    fault.count -= 1
                    if fault.count == 0:
                        self._faults.remove(fault)
                return fault
            return None

    def list(self):
        """Return descriptions of the rules still armed."""
        with self._lock:
            return [fault.describe() for fault in self._faults]

    def clear(self):
        """Disarm every rule."""
        with self._lock:
            self._faults.clear()


class SlidingWindowLimiter:
    """Allows `limit` requests in any `window_s`-second window; limit <= 0 disables it.

    Refused requests do not use up budget, so a client that backs off gets back in
    once the oldest admitted request leaves the window.
    """

    def __init__(self, limit, window_s=60.0):
        self._lock = threading.Lock()
        self._stamps = collections.deque()
        self.limit = int(limit)
        self.window_s = float(window_s)

    def try_acquire(self):
        """Admit one request; return (True, 0) or (False, seconds until a slot frees)."""
        now = time.monotonic()
        with self._lock:
            self._evict(now)
            if self.limit <= 0:
                return True, 0.0
            if len(self._stamps) >= self.limit:
                return False, max(0.0, self._stamps[0] + self.window_s - now)
            self._stamps.append(now)
            return True, 0.0

    def _evict(self, now):
        """Forget admissions older than the window (caller holds the lock)."""
        while self._stamps and self._stamps[0] <= now - self.window_s:
            self._stamps.popleft()

    def configure(self, limit=None, window_s=None):
        """Change the limit and/or window at run time."""
        with self._lock:
            if limit is not None:
                self.limit = int(limit)
            if window_s is not None:
                self.window_s = float(window_s)

    def reset(self):
        """Forget every admission."""
        with self._lock:
            self._stamps.clear()

    def describe(self):
        """Return limit, window and the number of admissions in the current window."""
        with self._lock:
            self._evict(time.monotonic())
            return {"limit": self.limit, "window_s": self.window_s, "used": len(self._stamps)}


class RequestLog:
    """Append-only log of the API requests a mock answered (control calls excluded)."""

    def __init__(self, max_entries=100000):
        self._lock = threading.Lock()
        self._entries = collections.deque(maxlen=max_entries)
        self._seq = 0

    def append(self, entry):
        """Add an entry, stamping it with a sequence number."""
        with self._lock:
            self._seq += 1
            entry["seq"] = self._seq
            self._entries.append(entry)

    def list(self, since=0, method=None, path_re=None):
        """Return entries after sequence `since`, optionally filtered."""
        regex = re.compile(path_re) if path_re else None
        with self._lock:
            return [
                entry for entry in self._entries
                if entry["seq"] > since
                and (method is None or entry["method"] == method)
                and (regex is None or regex.search(entry["path"]))
            ]

    def clear(self):
        """Forget every entry (sequence numbers keep increasing)."""
        with self._lock:
            self._entries.clear()


_SECRET_QUERY_RE = re.compile(r"(?i)(^|&)(token|access_token|api_key)=[^&]*")


def redact_query(raw_query):
    """Hide credential values carried in a query string before it is printed."""
    return _SECRET_QUERY_RE.sub(lambda m: "%s%s=***" % (m.group(1), m.group(2)), raw_query)


class MockApp:
    """Base class of a mock API: the request pipeline and the shared control API.

    Subclasses implement serve_api(req) -> Response, default_error(status, req,
    detail) -> Response and reset_data(); they may add control routes to
    self.control.  Every API request goes: added latency, fault rules, then
    serve_api.  Control requests (/_mock/...) skip all three and are not logged.
    """

    name = "mock"

    def __init__(self, rate_limit=0, rate_window_s=60.0, quiet=False):
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self.faults = FaultTable()
        self.requests = RequestLog()
        self.limiter = SlidingWindowLimiter(rate_limit, rate_window_s)
        self.latency_ms = 0
        self.latency_jitter_ms = 0
        self.inflight = 0
        self.quiet = quiet
        self._stderr_lock = threading.Lock()
        self._initial_rate = (rate_limit, rate_window_s)
        self.control = Router()
        self._add_common_control_routes()

    # ---- hooks for subclasses -------------------------------------------------

    def serve_api(self, req):
        """Answer an API request (subclass)."""
        raise NotImplementedError

    def default_error(self, status, req, detail=None):
        """Return the API's usual error answer for `status` (subclass)."""
        return json_response(status, {"error": detail or reason_phrase(status)})

    def reset_data(self, body):
        """Forget the API's data (subclass)."""

    # ---- request pipeline -----------------------------------------------------

    def handle(self, req):
        """Answer one request; returns a Response or a Drop."""
        if req.path == CONTROL_PREFIX or req.path.startswith(CONTROL_PREFIX + "/"):
            req.api = "control"
            return self._guard(req, self._handle_control)
        with self.lock:
            self.inflight += 1
        try:
            return self._guard(req, self._handle_api)
        finally:
            with self.lock:
                self.inflight -= 1

    def _guard(self, req, func):
        """Run a handler, turning HttpError and unexpected exceptions into answers."""
        try:
            return func(req)
        except HttpError as exc:
            if req.api == "control":
                return json_response(exc.status, {"error": exc.detail or reason_phrase(exc.status)})
            return self.default_error(exc.status, req, exc.detail)
        except Exception:  # a bug in the mock must not kill the connection silently
            traceback.print_exc(file=sys.stderr)
            return self.default_error(500, req, "mock internal error")

    def _handle_api(self, req):
        """Apply latency and faults, then let the subclass answer."""
        self._sleep_ms(self._pick_latency())
        fault = self.faults.take(req.method, req.path, req.raw_query)
        if fault is not None:
            req.fault = "fault#%d" % fault.id
            if fault.delay_ms:
                self._sleep_ms(fault.delay_ms)
            if fault.replace:
                return self._replace_answer(fault, self.serve_api(req))
            if fault.drop:
                return Drop(reset=fault.drop == "reset")
            if fault.status:
                return self._fault_response(fault, req)
        return self.serve_api(req)

    def _pick_latency(self):
        """Return this request's added latency in ms (base plus random jitter)."""
        with self.lock:
            base, jitter = self.latency_ms, self.latency_jitter_ms
        return base + (random.randint(0, jitter) if jitter > 0 else 0)

    def _sleep_ms(self, ms):
        """Wait `ms` milliseconds, returning early if the server is stopping."""
        if ms > 0:
            self.stopping.wait(ms / 1000.0)

    @staticmethod
    def _replace_answer(fault, resp):
        """A `replace` rule: the API has answered (its effects happened); what the client
        gets instead is the rule's status (else the API's), body (else the API's),
        content type and headers, or a dropped connection."""
        if fault.drop:
            return Drop(reset=fault.drop == "reset")
        if not isinstance(resp, Response):
            return resp
        if fault.body is not None:
            resp.body, resp.content_type = _rule_body(fault.body)
        if fault.content_type is not None:
            resp.content_type = fault.content_type or None
        if fault.status:
            resp.status = fault.status
        for key, value in fault.headers.items():
            resp.headers[str(key)] = str(value)
        return resp

    def _fault_response(self, fault, req):
        """Build the answer a status fault prescribes."""
        if fault.body is None:
            resp = self.default_error(fault.status, req, None)
        else:
            body, ctype = _rule_body(fault.body)
            resp = Response(fault.status, body, fault.content_type or ctype)
        if fault.retry_after is not None:
            resp.headers["Retry-After"] = str(fault.retry_after)
        for key, value in fault.headers.items():
            resp.headers[str(key)] = str(value)
        return resp

    def check_rate_limit(self):
        """Consume one unit of rate budget; return None or seconds to wait if refused."""
        admitted, wait_s = self.limiter.try_acquire()
        return None if admitted else wait_s

    # ---- logging --------------------------------------------------------------

    def record(self, req, status, note=None):
        """Log an answered request: one stderr line, plus the request log for API calls.

        Called before the answer is written, so a client that has its answer always
        finds the request in the log.  Returns the log entry (None for control calls).
        """
        elapsed_ms = int((time.monotonic() - req.started) * 1000)
        entry = None
        if req.api != "control":
            entry = {
                "time": time.time(),
                "method": req.method,
                "path": req.path,
                "query": req.raw_query,
                "args": req.args,
                "api": req.api,
                "status": status,
                "ms": elapsed_ms,
                "fault": req.fault,
                "note": note,
                "content_type": req.headers.get("Content-Type"),
                "user_agent": req.headers.get("User-Agent"),
                "body": req.body_for_log(),
            }
            self.requests.append(entry)
        if self.quiet:
            return entry
        target = req.path + ("?" + redact_query(req.raw_query) if req.raw_query else "")
        extras = "".join(" " + x for x in (req.fault, note) if x)
        line = "%s %s %s %s -> %s %dms%s\n" % (
            time.strftime("%H:%M:%S"), self.name, req.method, target, status, elapsed_ms, extras)
        with self._stderr_lock:
            sys.stderr.write(line)
            sys.stderr.flush()
        return entry

    # ---- control API ----------------------------------------------------------

    def _handle_control(self, req):
        """Dispatch a /_mock request to the matching control route."""
        func, groups = self.control.match(req.method, req.path)
        if func is None:
            raise HttpError(404, "no control route %s %s" % (req.method, req.path))
        return func(req, *groups)

    def control_body(self, req):
        """Return a control request's JSON body as a dict ({} when empty)."""
        body = req.json()
        if body is None:
            return {}
        if not isinstance(body, (dict, list)):
            raise HttpError(400, "body must be a JSON object")
        return body

    def _add_common_control_routes(self):
        """Register the control endpoints every mock has."""
        c = self.control
        c.add("GET", r"/_mock/health", lambda req: json_response(200, {"ok": True, "name": self.name}))
        c.add("POST", r"/_mock/reset", self._ctl_reset)
        c.add("GET", r"/_mock/requests", self._ctl_requests)
        c.add("DELETE", r"/_mock/requests", self._ctl_requests_clear)
        c.add("GET", r"/_mock/faults", lambda req: json_response(200, {"faults": self.faults.list()}))
        c.add("POST", r"/_mock/faults", self._ctl_faults_add)
        c.add("DELETE", r"/_mock/faults", self._ctl_faults_clear)
        c.add("GET", r"/_mock/latency", self._ctl_latency_get)
        c.add("POST", r"/_mock/latency", self._ctl_latency_set)
        c.add("GET", r"/_mock/ratelimit", lambda req: json_response(200, self.limiter.describe()))
        c.add("POST", r"/_mock/ratelimit", self._ctl_ratelimit_set)

    def _ctl_reset(self, req):
        """Forget data, faults, latency, the request log and rate-limit usage."""
        body = self.control_body(req)
        with self.lock:
            self.reset_data(body if isinstance(body, dict) else {})
            self.latency_ms = 0
            self.latency_jitter_ms = 0
        self.faults.clear()
        self.requests.clear()
        self.limiter.configure(*self._initial_rate)
        self.limiter.reset()
        return json_response(200, {"ok": True})

    def _ctl_requests(self, req):
        """List logged API requests (?since=SEQ&method=M&path=REGEX)."""
        try:
            since = int(req.arg("since", "0"))
        except ValueError:
            raise HttpError(400, "since must be an integer") from None
        try:
            entries = self.requests.list(since, req.arg("method"), req.arg("path"))
        except re.error as exc:
            raise HttpError(400, "bad path regex: %s" % exc) from None
        return json_response(200, {"requests": entries})

    def _ctl_requests_clear(self, req):
        """Empty the request log."""
        self.requests.clear()
        return json_response(200, {"ok": True})

    def _ctl_faults_add(self, req):
        """Arm one fault ({...}) or several ({"faults":[...]})."""
        body = self.control_body(req)
        if isinstance(body, dict) and isinstance(body.get("faults"), list):
            added = [self.faults.add(spec) for spec in body["faults"]]
            return json_response(201, {"faults": added})
        return json_response(201, self.faults.add(body))

    def _ctl_faults_clear(self, req):
        """Disarm every fault."""
        self.faults.clear()
        return json_response(200, {"ok": True})

    def _ctl_latency_get(self, req):
        """Show the added latency."""
        with self.lock:
            return json_response(200, {"ms": self.latency_ms, "jitter_ms": self.latency_jitter_ms})

    def _ctl_latency_set(self, req):
        """Set added latency for every API request: {"ms": N, "jitter_ms": M}."""
        body = self.control_body(req)
        if not isinstance(body, dict):
            raise HttpError(400, "body must be an object")
        ms = _int_field(body, "ms", 0)
        jitter = _int_field(body, "jitter_ms", 0)
        if ms < 0 or jitter < 0:
            raise HttpError(400, "ms and jitter_ms must be >= 0")
        with self.lock:
            self.latency_ms, self.latency_jitter_ms = ms, jitter
        return json_response(200, {"ms": ms, "jitter_ms": jitter})

    def _ctl_ratelimit_set(self, req):
        """Change the rate limit: {"limit": N, "window_s": S}; also clears usage if asked."""
        body = self.control_body(req)
        if not isinstance(body, dict):
            raise HttpError(400, "body must be an object")
        limit = body.get("limit")
        window = body.get("window_s")
        for name, value in (("limit", limit), ("window_s", window)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise HttpError(400, "%s must be a number" % name)
        if window is not None and window <= 0:
            raise HttpError(400, "window_s must be > 0")
        self.limiter.configure(limit, window)
        if body.get("clear"):
            self.limiter.reset()
        return json_response(200, self.limiter.describe())


class _Handler(BaseHTTPRequestHandler):
    """Reads requests off a connection and hands them to the server's MockApp."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server_version = "mock"
    sys_version = ""

    def version_string(self):
        """The Server header value."""
        return self.server_version

    def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
        """Silence the default access log; MockApp.record writes ours."""

    def do_GET(self):
        """Serve GET."""
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _serve(self):
        """Read the body, let the app answer, write the answer, log it."""
        app = self.server.app
        try:
            body = self._read_body()
        except HttpError as exc:
            self.close_connection = True
            req = Request(self.command, self.path, self.headers, b"", self.client_address[0])
            req.api = "invalid"
            app.record(req, exc.status, exc.detail)
            self._write(text_response(exc.status, (exc.detail or "") + "\n"), req)
            return
        req = Request(self.command, self.path, self.headers, body, self.client_address[0])
        answer = app.handle(req)
        if isinstance(answer, Drop):
            app.record(req, 0, "dropped")
            self._drop(answer)
            return
        entry = app.record(req, answer.status)
        if not self._write(answer, req) and entry is not None:
            entry["note"] = "client gone"

    def _read_body(self):
        """Return the request body (Content-Length or chunked); HttpError if unreadable."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length_text = self.headers.get("Content-Length")
        if not length_text:
            return b""
        try:
            length = int(length_text)
        except ValueError:
            raise HttpError(400, "bad Content-Length") from None
        if length < 0:
            raise HttpError(400, "bad Content-Length")
        if length > MAX_BODY_BYTES:
            raise HttpError(413, "body too large")
        return self.rfile.read(length)

    def _read_chunked(self):
        """Decode a chunked request body."""
        chunks, total = [], 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise HttpError(400, "bad chunk size") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                raise HttpError(413, "body too large")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _write(self, resp, req):
        """Send a Response; return False if the client had already gone away."""
        try:
            self.send_response(resp.status)
            for key, value in resp.headers.items():
                self.send_header(key, value)
            if resp.status >= 200 and resp.status not in (204, 304):
                if resp.content_type:
                    self.send_header("Content-Type", resp.content_type)
                self.send_header("Content-Length", str(len(resp.body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if req.method != "HEAD" and resp.status not in (204, 304):
                self.wfile.write(resp.body)
            self.wfile.flush()
            return True
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, socket.timeout):
            self.close_connection = True
            return False

    def _drop(self, answer):
        """Close the connection without answering; with reset, send a TCP RST."""
        self.close_connection = True
        if answer.reset:
            try:
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
            except OSError:
                pass


class MockHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that carries the MockApp its handlers serve."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, app):
        self.app = app
        super().__init__(address, _Handler)

    def handle_error(self, request, client_address):
        """Keep connection-level errors (client went away) out of the way."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, socket.timeout)):
            return
        super().handle_error(request, client_address)


def add_server_arguments(parser):
    """Add the options every mock program takes."""
    parser.add_argument("--port", type=int, default=0,
                        help="TCP port on 127.0.0.1 (0 = pick a free one; default 0)")
    parser.add_argument("--port-file", help="write the port here once listening")
    parser.add_argument("--quiet", action="store_true", help="no per-request lines on stderr")


def write_port_file(path, port):
    """Write the port atomically so a reader never sees a partial file."""
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w", encoding="ascii") as handle:
        handle.write("%d\n" % port)
    os.replace(tmp, path)


def serve(app, port, port_file=None):
    """Listen on 127.0.0.1:port, serve until SIGTERM/SIGINT, then stop cleanly."""
    server = MockHTTPServer(("127.0.0.1", port), app)
    bound_port = server.server_address[1]
    done = threading.Event()

    def on_signal(signum, frame):
        """Ask the main loop to stop."""
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name="serve", daemon=True)
    thread.start()
    if port_file:
        write_port_file(port_file, bound_port)
    sys.stderr.write("%s listening on http://127.0.0.1:%d\n" % (app.name, bound_port))
    sys.stderr.flush()
    while not done.wait(0.2):
        pass
    app.stopping.set()
    server.shutdown()
    server.server_close()
    sys.stderr.write("%s stopped\n" % app.name)
    sys.stderr.flush()
    return 0


def new_argument_parser(description):
    """Return an ArgumentParser preloaded with the common server options."""
    parser = argparse.ArgumentParser(description=description)
    add_server_arguments(parser)
    return parser
