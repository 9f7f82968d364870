"""Self-tests of the mock third-party APIs (RD Station CRM, Twilio REST).

The integration and end-to-end suites trust these mocks to behave like the real
services described in /work/shared/reference/, so the mocks get tests of their own:
each mock is started as a subprocess exactly as the other suites start it (--port 0
--port-file), and the behaviours calllog's worker depends on are exercised over HTTP:
authentication, exact phone matching, 200-vs-201 creates, refresh-token rotation,
rate limits, Twilio's Calls list (order, filters with day granularity, paging through
next_page_uri), fault injection (counted faults, hangs, dropped connections), latency,
the request log and SIGTERM shutdown.

Run: /usr/bin/python3 -m pytest -q tests/mocks/test_mocks.py
"""

import base64
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
RD_SCRIPT = os.path.join(HERE, "rdstation_mock.py")
TWILIO_SCRIPT = os.path.join(HERE, "twilio_mock.py")
V1_TOKEN = "mock-v1-token"
CLIENT = {"client_id": "mock-client-id", "client_secret": "mock-client-secret"}
RATE_LIMIT_BODY = {"errors": {"error_type": "RATE_LIMIT_EXCEDDED",
                              "error_message": "API usage limit exceeded"}}
AC = "AC" + "0" * 31 + "1"
SK = "SK" + "0" * 31 + "1"
CA = "CA" + "a" * 32
E164 = "+5511971730783"


class MockProcess:
    """A mock server running as a child process, as the other suites run it."""

    def __init__(self, script, *args):
        self.dir = tempfile.mkdtemp(prefix="mocktest-")
        port_file = os.path.join(self.dir, "port")
        self.stderr_path = os.path.join(self.dir, "stderr")
        self.stderr = open(self.stderr_path, "w", encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, script, "--port", "0", "--port-file", port_file, *args],
            stdout=subprocess.DEVNULL, stderr=self.stderr)
        deadline = time.monotonic() + 10
        while not os.path.exists(port_file):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("mock did not start: %s" % self.read_stderr())
            time.sleep(0.02)
        with open(port_file, encoding="ascii") as handle:
            self.port = int(handle.read().strip())

    def read_stderr(self):
        """Everything the mock has written to stderr so far."""
        if not self.stderr.closed:
            self.stderr.flush()
        with open(self.stderr_path, encoding="utf-8") as handle:
            return handle.read()

    def request(self, method, path, body=None, headers=None, timeout=5, raw=None):
        """Send one request on a fresh connection; return (status, headers, parsed body)."""
        return http_request(self.port, method, path, body, headers, timeout, raw)

    def stop(self):
        """SIGTERM the mock and return its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=5)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.stderr.close()


def http_request(port, method, path, body=None, headers=None, timeout=5, raw=None):
    """Send a request to 127.0.0.1:port; JSON-encode `body`, or send `raw` bytes/str as is."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    hdrs = dict(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body).encode("utf-8")
        hdrs.setdefault("Content-Type", "application/json")
    elif raw is not None:
        data = raw.encode("utf-8") if isinstance(raw, str) else raw
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        payload = resp.read()
        resp_headers = {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()
    ctype = resp_headers.get("content-type", "")
    parsed = json.loads(payload) if "json" in ctype and payload else payload.decode("utf-8")
    return resp.status, resp_headers, parsed


def v1(path, **params):
    """A v1 path with the token and the given query parameters."""
    query = dict(params)
    query.setdefault("token", V1_TOKEN)
    if query["token"] is None:
        del query["token"]
    return "/api/v1" + path + "?" + urllib.parse.urlencode(query)


def refresh(mock, refresh_token, **overrides):
    """POST /oauth2/token with the form RD documents; return (status, body)."""
    form = dict(CLIENT, grant_type="refresh_token", refresh_token=refresh_token)
    form.update(overrides)
    status, _, body = mock.request(
        "POST", "/oauth2/token", raw=urllib.parse.urlencode(form),
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    return status, body


def bearer(token):
    """Authorization header for a v2 request."""
    return {"Authorization": "Bearer " + token}


def access_token(mock):
    """Get a fresh v2 access token through the current refresh token."""
    current = mock.request("GET", "/_mock/oauth")[2]["refresh_token"]
    status, body = refresh(mock, current)
    assert status == 200, body
    return body["access_token"]


def basic(user, password):
    """Authorization header for HTTP Basic."""
    return {"Authorization": "Basic " + base64.b64encode(
        ("%s:%s" % (user, password)).encode()).decode()}


def seed(mock, **spec):
    """Seed one RD contact (with deals) through the control API; return the ids."""
    status, _, body = mock.request("POST", "/_mock/contacts", body=spec)
    assert status == 201, body
    return body


# ---- fixtures ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rd_proc():
    """One RD mock for most tests (rate limit high enough not to interfere)."""
    proc = MockProcess(RD_SCRIPT, "--rate-limit", "10000")
    yield proc
    proc.stop()


@pytest.fixture
def rd(rd_proc):
    """The shared RD mock, reset to its start state."""
    assert rd_proc.request("POST", "/_mock/reset")[0] == 200
    return rd_proc


@pytest.fixture(scope="module")
def tw_proc():
    """One Twilio mock with both credential pairs configured."""
    proc = MockProcess(TWILIO_SCRIPT, "--account-sid", AC, "--auth-token", "tok",
                       "--api-key-sid", SK, "--api-key-secret", "sec")
    yield proc
    proc.stop()


@pytest.fixture
def tw(tw_proc):
    """The shared Twilio mock, reset."""
    assert tw_proc.request("POST", "/_mock/reset")[0] == 200
    return tw_proc


# ---- process behaviour -----------------------------------------------------------------------

def test_listens_on_loopback_only_and_logs_each_request(rd):
    status, _, body = rd.request("GET", "/_mock/health")
    assert status == 200 and body["name"] == "rdstation-mock"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", rd.port), timeout=2).close()
    rd.request("GET", v1("/contacts", phone="123"))
    time.sleep(0.05)
    log = rd.read_stderr()
    assert "GET /api/v1/contacts?phone=123&token=*** -> 200" in log
    assert V1_TOKEN not in log


def test_sigterm_stops_promptly_even_with_a_hung_request():
    proc = MockProcess(RD_SCRIPT)
    proc.request("POST", "/_mock/faults", body={"path": "^/api/v1/users$", "delay_ms": 30000})
    hung = threading.Thread(target=lambda: _swallow(proc.request, "GET", v1("/users"), timeout=10),
                            daemon=True)
    hung.start()
    time.sleep(0.2)
    started = time.monotonic()
    assert proc.stop() == 0
    assert time.monotonic() - started < 5
    assert "stopped" in proc.read_stderr()


def _swallow(func, *args, **kwargs):
    """Call func, ignoring connection errors (used for requests cut short on purpose)."""
    try:
        func(*args, **kwargs)
    except (OSError, http.client.HTTPException):
        pass


# ---- RD v1 -----------------------------------------------------------------------------------

def test_v1_requires_the_token(rd):
    assert rd.request("GET", v1("/contacts", token=None))[::2] == (401, {"error": "Permission denied."})
    assert rd.request("GET", v1("/contacts", token="wrong"))[::2] == (401, {"error": "Permission denied."})
    assert rd.request("GET", v1("/contacts", token=access_token(rd)))[0] == 401
    assert rd.request("GET", v1("/contacts"))[0] == 200


def test_v1_phone_filter_matches_only_the_stored_forms(rd):
    ana = seed(rd, name="Ana", phones=[E164, "(11) 97173-0783"], deals=[{"name": "D"}])
    bia = seed(rd, name="Bia", phones=[{"phone": "11 7173-0783", "type": "home"}])

    def ids(phone):
        """Contact ids the v1 phone filter returns."""
        return [c["_id"] for c in rd.request("GET", v1("/contacts", phone=phone))[2]["contacts"]]

    assert ids(E164) == [ana["contact_id"]]
    assert ids("11971730783") == [ana["contact_id"]]          # (11) 97173-0783 stripped
    assert ids("1197173-0783") == [ana["contact_id"]]
    assert ids("(11) 97173-0783") == [ana["contact_id"]]
    assert ids("5511971730783") == []                         # no +55 guessing
    assert ids("+55 (11) 97173-0783") == [ana["contact_id"]]  # only spaces/dashes/parens go
    assert ids("55 11 97173-0783") == []
    assert ids("+55.11.97173.0783") == []
    assert ids("1171730783") == [bia["contact_id"]]           # without the ninth digit
    assert ids("11971730783") != [bia["contact_id"]]
    # An unencoded '+' is a space in a query string: the E.164 form then finds nothing.
    status, _, body = rd.request("GET", "/api/v1/contacts?phone=+5511971730783&token=" + V1_TOKEN)
    assert status == 200 and body["contacts"] == []


def test_v1_contact_list_shape_and_paging(rd):
    for i in range(3):
        seed(rd, name="Caio %d" % i, emails=["caio%d@example.com" % i],
             phones=["+551130000000"], deals=[{"name": "N%d" % i, "status": "lost"}])
    status, _, body = rd.request("GET", v1("/contacts", phone="+551130000000", limit=2))
    assert status == 200 and body["total"] == 3 and body["has_more"] is True
    assert len(body["contacts"]) == 2
    contact = body["contacts"][0]
    assert contact["_id"] == contact["id"]
    assert contact["phones"] == [{"phone": "+551130000000", "type": "cellphone"}]
    deal = contact["deals"][0]
    assert deal["_id"] == deal["id"] and deal["win"] is False and deal["closed_at"]
    assert set(deal) >= {"_id", "id", "name", "win", "closed_at", "updated_at"}
    page2 = rd.request("GET", v1("/contacts", phone="+551130000000", limit=2, page=2))[2]
    assert len(page2["contacts"]) == 1 and page2["has_more"] is False
    by_mail = rd.request("GET", v1("/contacts", email="CAIO1@example.com"))[2]
    assert [c["name"] for c in by_mail["contacts"]] == ["Caio 1"]


def test_v1_contact_show_and_deal_show(rd):
    ids = seed(rd, name="Duda", phones=[E164], deals=[
        {"name": "Open", "updated_at": "2024-05-01T10:00:00Z"},
        {"name": "Won", "status": "won"}, {"name": "Hidden", "visible": False}])
    status, _, contact = rd.request("GET", v1("/contacts/" + ids["contact_id"]))
    assert status == 200 and contact["deal_ids"] == ids["deal_ids"] and "deals" not in contact
    status, _, deal = rd.request("GET", v1("/deals/" + ids["deal_ids"][0]))
    assert status == 200
    assert deal["_id"] == deal["id"] == ids["deal_ids"][0]
    assert deal["win"] is None and deal["closed_at"] is None
    assert deal["updated_at"].startswith("2024-05-01T07:00:00.000-03:00")
    assert deal["deal_stage"]["name"] and deal["user"]["id"]
    assert deal["contacts"][0]["phones"][0]["phone"] == E164
    assert rd.request("GET", v1("/deals/" + ids["deal_ids"][1]))[2]["win"] is True
    for missing in (ids["deal_ids"][2], "000000000000000000000000"):
        status, _, body = rd.request("GET", v1("/deals/" + missing))
        assert status == 404 and body["errors"]["error_type"] == "RESOURCE_NOT_FOUND"
    # No documented contact filter on GET /deals: it is ignored, every visible deal comes back.
    other = seed(rd, name="Eva", deals=[{"name": "Eva's"}])
    listed = rd.request("GET", v1("/deals", contact_id=other["contact_id"]))[2]
    assert listed["total"] == 3


def test_v1_activity_create_answers_200_and_validates(rd):
    deal_id = seed(rd, name="Fabi", deals=[{"name": "D"}])["deal_ids"][0]
    note = {"activity": {"deal_id": deal_id, "user_id": "u1", "text": "Ligação CA123 concluída"}}
    status, _, body = rd.request("POST", v1("/activities"), body=note)
    assert status == 200
    assert body["_id"] == body["id"] and body["deal_id"] == deal_id
    assert body["user_id"] == "u1" and body["text"] == "Ligação CA123 concluída" and body["date"]

    missing = {"activity": {"deal_id": deal_id, "user_id": "u1"}}
    status, _, body = rd.request("POST", v1("/activities"), body=missing)
    assert status == 422 and list(body["errors"]) == ["text"]
    assert isinstance(body["errors"]["text"][0], str)

    unknown = {"activity": {"deal_id": "ffffffffffffffffffffffff", "user_id": "u1", "text": "x"}}
    status, _, body = rd.request("POST", v1("/activities"), body=unknown)
    assert status == 404 and body["errors"]["error_type"] == "RESOURCE_NOT_FOUND"
    assert body["errors"]["error_message"]

    # Without a JSON content type Rails sees no parameters at all.
    status, _, body = rd.request("POST", v1("/activities"), raw=json.dumps(note),
                                 headers={"Content-Type": "text/plain"})
    assert status == 422 and set(body["errors"]) == {"deal_id", "user_id", "text"}

    status, _, body = rd.request("POST", v1("/activities"), raw="{not json",
                                 headers={"Content-Type": "application/json"})
    assert status == 400 and body["errors"]["error_type"] == "BAD_REQUEST"

    listed = rd.request("GET", v1("/activities", deal_id=deal_id))[2]["activities"]
    assert [a["text"] for a in listed] == ["Ligação CA123 concluída"]
    notes = rd.request("GET", "/_mock/notes")[2]["notes"]
    assert [(n["version"], n["deal_id"], n["text"], n["user_id"]) for n in notes] == [
        ("v1", deal_id, "Ligação CA123 concluída", "u1")]


def test_v1_tasks_create_then_complete(rd):
    deal_id = seed(rd, name="Gil", deals=[{"name": "D"}])["deal_ids"][0]
    good = {"deal_id": deal_id, "subject": "Ligação recebida", "type": "call",
            "date": "2024-05-10", "hour": "14:03", "user_ids": ["u1"], "notes": "CA123",
            "done": True}
    for field, value in (("subject", "ab"), ("type", "sms"), ("date", "10/05/2024"),
                         ("date", "2024-02-30"), ("hour", "25:00"), ("user_ids", [])):
        status, _, body = rd.request("POST", v1("/tasks"), body={"task": dict(good, **{field: value})})
        assert status == 422 and field in body["errors"], (field, value, body)
    status, _, task = rd.request("POST", v1("/tasks"), body={"task": good})
    assert status == 200 and task["done"] is False and task["_id"] == task["id"]
    assert task["subject"] == "Ligação recebida" and task["type"] == "call" and task["hour"] == "14:03"
    status, _, done = rd.request("PUT", v1("/tasks/" + task["id"]), body={"task": {"done": True}})
    assert status == 200 and done["done"] is True and done["done_date"]
    assert rd.request("PUT", v1("/tasks/ffffffffffffffffffffffff"),
                      body={"task": {"done": True}})[0] == 404
    calls = rd.request("GET", v1("/tasks", deal_id=deal_id, type="call"))[2]["tasks"]
    assert [t["id"] for t in calls] == [task["id"]]
    assert rd.request("GET", v1("/tasks", deal_id=deal_id, type="email"))[2]["tasks"] == []
    mocked = rd.request("GET", "/_mock/tasks")[2]["tasks"]
    assert [(t["version"], t["done"], t["subject"]) for t in mocked] == [("v1", True, "Ligação recebida")]


def test_v1_create_contact_and_deal(rd):
    status, _, contact = rd.request("POST", v1("/contacts"), body={"contact": {
        "name": "Hugo", "phones": [{"phone": E164, "type": "cellphone"}]}})
    assert status == 200 and contact["_id"]
    assert rd.request("POST", v1("/contacts"), body={"contact": {}})[::2] == (
        422, {"errors": {"name": ["não pode ficar em branco"]}})
    stage = rd.request("GET", v1("/deal_stages"))[2]["deal_stages"][0]["id"]
    status, _, body = rd.request("POST", v1("/deals"), body={"deal": {"name": "Novo"}})
    assert status == 422 and "deal_stage_id" in body["errors"]
    status, _, deal = rd.request("POST", v1("/deals"), body={
        "deal": {"name": "Novo", "deal_stage_id": stage}, "contacts": [{"_id": contact["id"]}]})
    assert status == 200 and deal["win"] is None
    found = rd.request("GET", v1("/contacts", phone=E164))[2]["contacts"]
    assert [d["id"] for d in found[0]["deals"]] == [deal["id"]]


def test_v1_500_is_an_html_page(rd):
    rd.request("POST", "/_mock/faults", body={"path": "^/api/v1/contacts$", "status": 500})
    status, headers, body = rd.request("GET", v1("/contacts"))
    assert status == 500 and headers["content-type"].startswith("text/html")
    assert "<html>" in body


# ---- OAuth and v2 ---------------------------------------------------------------------------

def test_refresh_rotates_and_invalidates_the_old_token(rd):
    status, first = refresh(rd, "mock-refresh-token")
    assert status == 200 and first["expires_in"] == 7200
    assert first["refresh_token"] != "mock-refresh-token" and first["access_token"]
    assert refresh(rd, "mock-refresh-token") == (401, {"error": "invalid_grant"})
    status, second = refresh(rd, first["refresh_token"])
    assert status == 200 and second["refresh_token"] != first["refresh_token"]
    assert refresh(rd, first["refresh_token"]) == (401, {"error": "invalid_grant"})
    assert refresh(rd, second["refresh_token"], client_secret="nope") == (401, {"error": "invalid_client"})
    state = rd.request("GET", "/_mock/oauth")[2]
    assert state["refresh_token"] == second["refresh_token"]
    assert state["refresh_count"] == 2 and state["rejected_count"] == 3
    # Access tokens issued earlier stay valid until they expire or are expired on purpose.
    for token in (first["access_token"], second["access_token"]):
        assert rd.request("GET", "/crm/v2/contacts", headers=bearer(token))[0] == 200
    assert rd.request("POST", "/_mock/oauth/expire")[2] == {"expired": 2}
    status, headers, body = rd.request("GET", "/crm/v2/contacts", headers=bearer(second["access_token"]))
    assert status == 401 and body["errors"][0]["title"] == "Unauthorized"
    # JSON bodies are accepted too; a missing grant_type is a 400.
    status, _, body = rd.request("POST", "/oauth2/token", body=dict(CLIENT, refresh_token="x"))
    assert status == 400 and body["error"] == "invalid_request"


def test_access_tokens_expire_after_the_ttl(rd):
    rd.request("POST", "/_mock/oauth", body={"access_ttl": 0.3})
    token = access_token(rd)
    assert rd.request("GET", "/crm/v2/tasks", headers=bearer(token))[0] == 200
    time.sleep(0.4)
    assert rd.request("GET", "/crm/v2/tasks", headers=bearer(token))[0] == 401


def test_reset_restores_the_configured_refresh_token(rd):
    assert refresh(rd, "mock-refresh-token")[0] == 200
    assert refresh(rd, "mock-refresh-token")[0] == 401
    rd.request("POST", "/_mock/reset")
    assert refresh(rd, "mock-refresh-token")[0] == 200


def test_v2_requires_a_bearer_token(rd):
    for headers in ({}, bearer("made-up"), {"Authorization": "Basic eDp5"}):
        status, _, body = rd.request("GET", "/crm/v2/contacts", headers=headers)
        assert status == 401 and body["errors"][0]["title"] == "Unauthorized"
    assert rd.request("GET", "/crm/v2/contacts?token=" + V1_TOKEN)[0] == 401


def test_v2_contacts_deals_notes_and_tasks(rd):
    auth = bearer(access_token(rd))
    ana = seed(rd, name="Ana", phones=[E164, "1197173-0783"],
               deals=[{"name": "Open"}, {"name": "Lost", "status": "lost"},
                      {"name": "Paused", "status": "paused"}])
    bia = seed(rd, name="Bia", deals=[{"name": "B"}])

    def contact_ids(value):
        """Contact ids the v2 phone filter returns."""
        query = urllib.parse.urlencode({"filter": "phone:" + value})
        return [c["id"] for c in rd.request("GET", "/crm/v2/contacts?" + query, headers=auth)[2]["data"]]

    assert contact_ids(E164) == [ana["contact_id"]]
    assert contact_ids("11971730783") == [ana["contact_id"]]
    assert contact_ids("5511971730783") == [] and contact_ids("1171730783") == []

    status, _, body = rd.request("GET", "/crm/v2/deals?filter=contact_id:" + ana["contact_id"], headers=auth)
    assert status == 200 and "links" in body
    assert [d["status"] for d in body["data"]] == ["ongoing", "lost", "paused"]
    query = urllib.parse.urlencode({"filter": "contact_ids:(%s,%s)" % (ana["contact_id"], bia["contact_id"])})
    assert len(rd.request("GET", "/crm/v2/deals?" + query, headers=auth)[2]["data"]) == 4

    deal_id = ana["deal_ids"][0]
    status, _, note = rd.request("POST", "/crm/v2/deals/%s/notes" % deal_id, headers=auth,
                                 body={"data": {"description": "Chamada CA9", "user_id": "u2"}})
    assert status == 201
    assert set(note["data"]) >= {"id", "description", "user_id", "registered_at", "deal_id"}
    assert note["data"]["description"] == "Chamada CA9" and note["data"]["deal_id"] == deal_id
    status, _, body = rd.request("POST", "/crm/v2/deals/%s/notes" % deal_id, headers=auth,
                                 body={"data": {"user_id": "u2"}})
    assert status == 422 and body["errors"][0]["source"]["pointer"] == "/data/description"
    status, _, body = rd.request("POST", "/crm/v2/deals/ffffffffffffffffffffffff/notes", headers=auth,
                                 body={"data": {"description": "x"}})
    assert status == 404 and body["errors"][0]["title"] == "Not Found"
    listed = rd.request("GET", "/crm/v2/deals/%s/notes" % deal_id, headers=auth)[2]["data"]
    assert [n["description"] for n in listed] == ["Chamada CA9"]
    # Same account: the v2 note is visible through v1 and in the control log.
    assert rd.request("GET", v1("/activities", deal_id=deal_id))[2]["activities"][0]["text"] == "Chamada CA9"
    assert rd.request("GET", "/_mock/notes")[2]["notes"][0]["version"] == "v2"

    task_body = {"data": {"name": "Ligação", "type": "call", "description": "CA9",
                          "due_date": "2024-05-10T14:03:00-03:00", "deal_id": deal_id,
                          "owner_ids": ["u2"]}}
    status, _, task = rd.request("POST", "/crm/v2/tasks", headers=auth, body=task_body)
    assert status == 201 and task["data"]["status"] == "open"
    status, _, body = rd.request("POST", "/crm/v2/tasks", headers=auth,
                                 body={"data": dict(task_body["data"], type="fax")})
    assert status == 422
    status, _, done = rd.request("PUT", "/crm/v2/tasks/" + task["data"]["id"], headers=auth,
                                 body={"data": {"status": "completed"}})
    assert status == 200 and done["data"]["status"] == "completed" and done["data"]["completed_at"]
    found = rd.request("GET", "/crm/v2/tasks?filter=deal_id:" + deal_id, headers=auth)[2]["data"]
    assert [t["id"] for t in found] == [task["data"]["id"]]
    assert rd.request("GET", "/crm/v2/tasks?filter=deal_id:" + bia["deal_ids"][0],
                      headers=auth)[2]["data"] == []

    status, _, contact = rd.request("POST", "/crm/v2/contacts", headers=auth,
                                    body={"data": {"name": "Novo", "phones": [{"phone": "+5521999990000"}]}})
    assert status == 201
    status, _, deal = rd.request("POST", "/crm/v2/deals", headers=auth,
                                 body={"data": {"name": "Novo", "contact_ids": [contact["data"]["id"]]}})
    assert status == 201 and deal["data"]["status"] == "ongoing"
    assert deal["data"]["contact_ids"] == [contact["data"]["id"]]


def test_v2_bad_filter_is_a_400(rd):
    auth = bearer(access_token(rd))
    status, _, body = rd.request("GET", "/crm/v2/contacts?filter=shoe_size:42", headers=auth)
    assert status == 400 and body["errors"][0]["status"] == "400"


# ---- rate limits ---------------------------------------------------------------------------

def test_rate_limit_counts_v1_and_v2_but_not_control_or_oauth():
    proc = MockProcess(RD_SCRIPT, "--rate-limit", "5", "--rate-window", "1.5")
    try:
        token = access_token(proc)  # the OAuth endpoint is not counted
        for _ in range(10):
            assert proc.request("GET", "/_mock/health")[0] == 200
        assert proc.request("GET", v1("/contacts", token="bad"))[0] == 401  # errors count
        for _ in range(2):
            assert proc.request("GET", v1("/contacts"))[0] == 200
        for _ in range(2):
            assert proc.request("GET", "/crm/v2/contacts", headers=bearer(token))[0] == 200
        status, headers, body = proc.request("GET", v1("/contacts"))
        assert (status, body) == (429, RATE_LIMIT_BODY) and "retry-after" not in headers
        status, headers, body = proc.request("GET", "/crm/v2/contacts", headers=bearer(token))
        assert status == 429 and body["errors"][0]["status"] == "429"
        assert 1 <= int(headers["retry-after"]) <= 2
        assert proc.request("GET", "/_mock/ratelimit")[2]["used"] == 5
        time.sleep(1.6)
        assert proc.request("GET", v1("/contacts"))[0] == 200
    finally:
        assert proc.stop() == 0


# ---- fault injection, latency, request log --------------------------------------------------

def test_fault_with_count_answers_that_many_requests(rd):
    deal_id = seed(rd, name="Ivo", deals=[{"name": "D"}])["deal_ids"][0]
    status, _, fault = rd.request("POST", "/_mock/faults", body={
        "method": "POST", "path": "^/api/v1/activities$", "status": 503, "count": 2,
        "delay_ms": 0, "retry_after": None, "body": None})
    assert status == 201 and fault["id"]
    note = {"activity": {"deal_id": deal_id, "user_id": "u", "text": "t"}}
    assert rd.request("GET", v1("/activities"))[0] == 200  # other method: untouched
    answers = [rd.request("POST", v1("/activities"), body=note) for _ in range(3)]
    assert [a[0] for a in answers] == [503, 503, 200]
    assert answers[0][1]["content-type"].startswith("text/html")
    assert len(rd.request("GET", "/_mock/notes")[2]["notes"]) == 1
    assert rd.request("GET", "/_mock/faults")[2]["faults"] == []


def test_fault_replace_runs_the_api_then_swaps_the_answer(rd):
    deal_id = seed(rd, name="Rui", deals=[{"name": "D"}])["deal_ids"][0]
    status, _, _ = rd.request("POST", "/_mock/faults", body={
        "method": "POST", "path": "^/api/v1/activities$", "replace": True, "status": 200,
        "body": "<html>oops</html>", "content_type": "text/html"})
    assert status == 201
    note = {"activity": {"deal_id": deal_id, "user_id": "u", "text": "t"}}
    status, headers, _ = rd.request("POST", v1("/activities"), body=note)
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert len(rd.request("GET", "/_mock/notes")[2]["notes"]) == 1, "the API ran first"
    assert rd.request("POST", "/_mock/faults", body={"path": "^/x$", "replace": True})[0] == 400


def test_fault_skip_body_and_retry_after(rd):
    rd.request("POST", "/_mock/faults", body={
        "path": "^/api/v1/users$", "skip": 1, "status": 429, "retry_after": 7,
        "body": {"custom": True}})
    assert rd.request("GET", v1("/users"))[0] == 200
    status, headers, body = rd.request("GET", v1("/users"))
    assert (status, body, headers["retry-after"]) == (429, {"custom": True}, "7")
    # Default bodies: the v1 rate-limit body without Retry-After, the v2 one with it.
    rd.request("POST", "/_mock/faults", body={"faults": [
        {"path": "^/api/v1/", "status": 429}, {"path": "^/crm/v2/", "status": 429}]})
    status, headers, body = rd.request("GET", v1("/users"))
    assert (status, body) == (429, RATE_LIMIT_BODY) and "retry-after" not in headers
    status, headers, body = rd.request("GET", "/crm/v2/contacts")
    assert status == 429 and "retry-after" in headers and body["errors"][0]["status"] == "429"


def test_fault_hang_then_answer_normally(rd):
    rd.request("POST", "/_mock/faults", body={"path": "^/api/v1/users$", "status": 0, "delay_ms": 1500})
    with pytest.raises(socket.timeout):
        rd.request("GET", v1("/users"), timeout=0.3)
    assert rd.request("GET", v1("/users"), timeout=1)[0] == 200  # the fault was used up
    rd.request("POST", "/_mock/faults", body={"path": "^/api/v1/users$", "delay_ms": 300})
    started = time.monotonic()
    assert rd.request("GET", v1("/users"))[0] == 200
    assert time.monotonic() - started >= 0.3


def test_fault_drop_closes_without_answer(rd):
    rd.request("POST", "/_mock/faults", body={"path": "^/api/v1/users$", "drop": True})
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        rd.request("GET", v1("/users"))
    rd.request("POST", "/_mock/faults", body={"path": "^/api/v1/users$", "drop": "reset"})
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        rd.request("GET", v1("/users"))
    assert rd.request("GET", v1("/users"))[0] == 200
    statuses = [r["status"] for r in rd.request("GET", "/_mock/requests")[2]["requests"]]
    assert statuses == [0, 0, 200]


def test_invalid_faults_are_refused(rd):
    for spec in ({"path": "x"}, {"status": 99}, {"status": 500, "count": 0},
                 {"status": 500, "path": "("}, {"status": 500, "colour": "red"}):
        assert rd.request("POST", "/_mock/faults", body=spec)[0] == 400, spec


def test_latency_applies_to_api_requests(rd):
    assert rd.request("POST", "/_mock/latency", body={"ms": 250})[0] == 200
    started = time.monotonic()
    assert rd.request("GET", v1("/users"))[0] == 200
    assert time.monotonic() - started >= 0.25


def test_request_log_records_api_calls_only(rd):
    rd.request("GET", v1("/contacts", phone=E164))
    rd.request("POST", v1("/activities"), body={"activity": {}})
    rd.request("GET", "/_mock/notes")
    log = rd.request("GET", "/_mock/requests")[2]["requests"]
    assert [(r["method"], r["path"], r["status"], r["api"]) for r in log] == [
        ("GET", "/api/v1/contacts", 200, "v1"), ("POST", "/api/v1/activities", 422, "v1")]
    assert log[0]["args"]["phone"] == [E164] and "phone=%2B55" in log[0]["query"]
    assert log[1]["body"] == {"activity": {}}
    since = log[-1]["seq"]
    rd.request("GET", v1("/users"))
    assert [r["path"] for r in rd.request("GET", "/_mock/requests?since=%d" % since)[2]["requests"]] == [
        "/api/v1/users"]
    rd.request("POST", "/_mock/reset")
    assert rd.request("GET", "/_mock/requests")[2]["requests"] == []


def test_free_plan_and_configured_users():
    proc = MockProcess(RD_SCRIPT, "--free-plan", "--user-id", "u-ok")
    try:
        deal_id = seed(proc, name="Jo", deals=[{"name": "D"}])["deal_ids"][0]
        task = {"deal_id": deal_id, "subject": "Ligação", "type": "call", "date": "2024-05-10",
                "hour": "10:00", "user_ids": ["u-ok"]}
        assert proc.request("POST", v1("/tasks"), body={"task": task})[::2] == (403, {"error": "forbidden"})
        assert proc.request("POST", v1("/tasks"), body={"task": dict(task, type="task")})[0] == 200
        bad_user = {"activity": {"deal_id": deal_id, "user_id": "someone", "text": "t"}}
        status, _, body = proc.request("POST", v1("/activities"), body=bad_user)
        assert status == 422 and "user_id" in body["errors"]
    finally:
        proc.stop()


def test_v2_refuses_phone_types_it_does_not_have(rd):
    auth = bearer(access_token(rd))
    status, _, body = rd.request("POST", "/crm/v2/contacts", headers=auth, body={"data": {
        "name": "Caio", "phones": [{"phone": E164, "type": "cellphone"}]}})
    assert status == 422
    assert body["errors"][0]["source"]["pointer"] == "/data/phones/0/type"
    status, _, body = rd.request("POST", "/crm/v2/contacts", headers=auth, body={"data": {
        "name": "Caio", "phones": [{"phone": E164, "type": "mobile"}]}})
    assert status == 201 and body["data"]["phones"] == [{"phone": E164, "type": "mobile"}]
    # One account, two vocabularies: v1 shows the same phone as a cellphone.
    contact = rd.request("GET", v1("/contacts/" + body["data"]["id"]))[2]
    assert contact["phones"] == [{"phone": E164, "type": "cellphone"}]


def test_v1_contact_update_replaces_deal_ids(rd):
    ids = seed(rd, name="Duda", deals=[{"name": "Old"}])
    stage = rd.request("GET", v1("/deal_stages"))[2]["deal_stages"][0]["id"]
    deal = rd.request("POST", v1("/deals"), body={"deal": {"name": "New", "deal_stage_id": stage}})[2]
    assert rd.request("GET", v1("/contacts/" + ids["contact_id"]))[2]["deal_ids"] == ids["deal_ids"]
    status, _, body = rd.request("PUT", v1("/contacts/" + ids["contact_id"]), body={
        "contact": {"deal_ids": ids["deal_ids"] + [deal["id"]]}})
    assert status == 200 and body["deal_ids"] == ids["deal_ids"] + [deal["id"]]
    assert rd.request("GET", v1("/deals/" + deal["id"]))[2]["contacts"][0]["id"] == ids["contact_id"]
    # deal_ids replaces the list: what is left out is unlinked.
    body = rd.request("PUT", v1("/contacts/" + ids["contact_id"]), body={
        "contact": {"deal_ids": [deal["id"]]}})[2]
    assert body["deal_ids"] == [deal["id"]]
    assert rd.request("PUT", v1("/contacts/" + ids["contact_id"]), body={
        "contact": {"deal_ids": ["nope"]}})[0] == 404
    assert rd.request("PUT", v1("/contacts/unknown"), body={"contact": {}})[0] == 404


def test_plan_switch_refuses_call_tasks_until_reset(rd):
    deal_id = seed(rd, name="Eva", deals=[{"name": "D"}])["deal_ids"][0]
    task = {"deal_id": deal_id, "subject": "Ligação", "type": "call", "date": "2024-05-10",
            "hour": "10:00", "user_ids": ["u1"]}
    assert rd.request("GET", "/_mock/plan")[2] == {"call_tasks": True}
    assert rd.request("POST", "/_mock/plan", body={"call_tasks": False})[::2] == (200, {"call_tasks": False})
    assert rd.request("POST", v1("/tasks"), body={"task": task})[::2] == (403, {"error": "forbidden"})
    assert rd.request("POST", v1("/tasks"), body={"task": dict(task, type="task")})[0] == 200
    v2_task = {"name": "Ligação", "type": "call", "due_date": "2024-05-10T10:00:00Z", "deal_id": deal_id}
    auth = bearer(access_token(rd))
    status, _, body = rd.request("POST", "/crm/v2/tasks", headers=auth, body={"data": v2_task})
    assert status == 403 and body["errors"][0]["status"] == "403"
    assert rd.request("POST", "/_mock/plan", body={"call_tasks": "no"})[0] == 400
    rd.request("POST", "/_mock/reset", body={})
    assert rd.request("GET", "/_mock/plan")[2] == {"call_tasks": True}


def test_added_users_are_listed_by_both_versions_until_reset(rd):
    user = {"id": "5e00000000000000000000f7", "email": "vendas@example.com", "name": "Vendas"}
    assert rd.request("POST", "/_mock/users", body=user)[0] == 201
    assert rd.request("POST", "/_mock/users", body=user)[0] == 409
    assert rd.request("POST", "/_mock/users", body={"id": "x"})[0] == 400
    v1_users = rd.request("GET", v1("/users"))[2]["users"]
    assert {"_id": user["id"], "id": user["id"], "email": user["email"]}.items() <= v1_users[-1].items()
    v2_users = rd.request("GET", "/crm/v2/users", headers=bearer(access_token(rd)))[2]["data"]
    assert v2_users[-1] == user
    rd.request("POST", "/_mock/reset", body={})
    assert user["id"] not in [u["id"] for u in rd.request("GET", v1("/users"))[2]["users"]]


# ---- Twilio ---------------------------------------------------------------------------------

CALL_PATH = "/2010-04-01/Accounts/%s/Calls/%s.json" % (AC, CA)


def test_twilio_basic_auth(tw):
    tw.request("POST", "/_mock/calls", body={"sid": CA})
    assert tw.request("GET", CALL_PATH, headers=basic(SK, "sec"))[0] == 200
    assert tw.request("GET", CALL_PATH, headers=basic(AC, "tok"))[0] == 200
    expected = {"code": 20003, "message": "Authenticate",
                "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401}
    for headers in ({}, basic(SK, "tok"), basic(AC, "sec"), {"Authorization": "Basic !!!"}):
        status, resp_headers, body = tw.request("GET", CALL_PATH, headers=headers)
        assert (status, body) == (401, expected)
        assert resp_headers["www-authenticate"].startswith("Basic")
    other = CALL_PATH.replace(AC, "AC" + "f" * 32)
    assert tw.request("GET", other, headers=basic(SK, "sec"))[0] == 401


def test_twilio_call_fields(tw):
    seeded = {"sid": CA, "parent_call_sid": None, "from": E164, "to": "+551140040000",
              "status": "completed", "direction": "inbound", "duration": 42,
              "start_time": "2024-05-10T17:03:00Z", "end_time": "2024-05-10T17:03:42Z",
              "price": None, "answered_by": "human", "caller_name": "ANA"}
    assert tw.request("POST", "/_mock/calls", body=seeded)[0] == 201
    status, headers, call = tw.request("GET", CALL_PATH, headers=basic(SK, "sec"))
    assert status == 200 and headers["twilio-request-id"].startswith("RQ")
    assert call["sid"] == CA and call["account_sid"] == AC and call["duration"] == "42"
    assert call["start_time"] == "Fri, 10 May 2024 17:03:00 +0000"
    assert call["end_time"] == "Fri, 10 May 2024 17:03:42 +0000"
    assert call["price"] is None and call["price_unit"] == "USD"
    assert call["from_formatted"] == E164 and call["answered_by"] == "human"
    for field in ("parent_call_sid", "to_formatted", "direction", "date_created",
                  "forwarded_from", "queue_time", "caller_name"):
        assert field in call
    assert call["subresource_uris"]["recordings"] == CALL_PATH.replace(".json", "/Recordings.json")
    status, _, body = tw.request("GET", CALL_PATH.replace(CA, "CA" + "b" * 32), headers=basic(SK, "sec"))
    assert status == 404 and body["code"] == 20404 and body["status"] == 404
    assert body["more_info"] == "https://www.twilio.com/docs/errors/20404"
    busy_sid = "CA" + "c" * 32
    tw.request("POST", "/_mock/calls", body={"sid": busy_sid, "status": "busy"})
    busy = tw.request("GET", CALL_PATH.replace(CA, busy_sid), headers=basic(SK, "sec"))[2]
    assert busy["duration"] == ""


def test_twilio_recordings(tw):
    tw.request("POST", "/_mock/calls", body={"sid": CA})
    status, _, rec = tw.request("POST", "/_mock/recordings", body={
        "call_sid": CA, "sid": "RE" + "1" * 32, "duration": 12})
    assert status == 201
    status, _, body = tw.request("GET", CALL_PATH.replace(".json", "/Recordings.json"),
                                 headers=basic(SK, "sec"))
    assert status == 200 and len(body["recordings"]) == 1
    item = body["recordings"][0]
    assert item["duration"] == "12" and item["status"] == "completed"
    # Listed under the call, the uri is call-scoped (twilio.md); the account-level resource
    # is the one whose path (without .json) is the media URL.
    assert item["uri"] == "/2010-04-01/Accounts/%s/Calls/%s/Recordings/RE%s.json" % (
        AC, CA, "1" * 32)
    account_level = "/2010-04-01/Accounts/%s/Recordings/RE%s.json" % (AC, "1" * 32)
    assert tw.request("GET", account_level, headers=basic(SK, "sec"))[2]["sid"] == item["sid"]


def test_twilio_faults_use_twilio_error_bodies(tw):
    tw.request("POST", "/_mock/calls", body={"sid": CA})
    tw.request("POST", "/_mock/faults", body={"faults": [
        {"path": "/Calls/", "status": 429}, {"path": "/Calls/", "status": 503}]})
    status, headers, body = tw.request("GET", CALL_PATH, headers=basic(SK, "sec"))
    assert (status, body["code"], body["message"], body["status"]) == (429, 20429, "Too Many Requests", 429)
    assert "retry-after" not in headers
    status, _, body = tw.request("GET", CALL_PATH, headers=basic(SK, "sec"))
    assert (status, body["code"]) == (503, 20503)
    assert tw.request("GET", CALL_PATH, headers=basic(SK, "sec"))[0] == 200
    paths = [(r["path"], r["status"]) for r in tw.request("GET", "/_mock/requests")[2]["requests"]]
    assert paths == [(CALL_PATH, 429), (CALL_PATH, 503), (CALL_PATH, 200)]


def test_twilio_concurrency_limit_gives_429():
    proc = MockProcess(TWILIO_SCRIPT, "--max-concurrent", "1", "--account-sid", AC,
                       "--api-key-sid", SK, "--api-key-secret", "sec")
    try:
        proc.request("POST", "/_mock/calls", body={"sid": CA})
        proc.request("POST", "/_mock/faults", body={"path": "/Calls/", "delay_ms": 600})
        results = []
        slow = threading.Thread(target=lambda: results.append(
            proc.request("GET", CALL_PATH, headers=basic(SK, "sec"))[0]))
        slow.start()
        time.sleep(0.2)
        status, _, body = proc.request("GET", CALL_PATH, headers=basic(SK, "sec"))
        listed = proc.request("GET", LIST_PATH, headers=basic(SK, "sec"))
        slow.join(5)
        assert (status, body["code"]) == (429, 20429)
        assert (listed[0], listed[2]["code"]) == (429, 20429)
        assert results == [200]
        assert proc.request("GET", CALL_PATH, headers=basic(SK, "sec"))[0] == 200
    finally:
        proc.stop()


# ---- Twilio Calls list -------------------------------------------------------------------------

LIST_PATH = "/2010-04-01/Accounts/%s/Calls.json" % AC


def sid(n):
    """The n-th test CallSid (sorts by n)."""
    return "CA%032x" % n


def seed_calls(tw, *specs):
    """Seed several Twilio calls through the control API."""
    status, _, body = tw.request("POST", "/_mock/calls", body={"calls": list(specs)})
    assert status == 201, body


def list_calls(tw, query="", **params):
    """GET the Calls list with a raw query and/or encoded params; return (status, body)."""
    parts = [query] if query else []
    if params:
        parts.append(urllib.parse.urlencode(params))
    path = LIST_PATH + ("?" + "&".join(parts) if parts else "")
    status, _, body = tw.request("GET", path, headers=basic(SK, "sec"))
    return status, body


def listed_sids(tw, query="", **params):
    """The sids of one Calls list page (asserting a 200)."""
    status, body = list_calls(tw, query, **params)
    assert status == 200, body
    return [c["sid"] for c in body["calls"]]


def test_twilio_call_list_newest_first_in_twilio_envelope(tw):
    seed_calls(tw, {"sid": sid(1), "start_time": "2026-12-01T10:00:00Z"},
               {"sid": sid(2), "start_time": "2026-12-01T12:00:00Z"},
               {"sid": sid(4), "start_time": "2026-12-01T11:00:00Z"},
               {"sid": sid(3), "start_time": "2026-12-01T11:00:00Z"},
               {"sid": sid(5), "status": "queued", "start_time": None,
                "date_created": "2026-12-01T11:30:00Z"})
    status, body = list_calls(tw)
    assert status == 200
    assert [c["sid"] for c in body["calls"]] == [sid(2), sid(5), sid(3), sid(4), sid(1)]
    assert body["calls"][0]["start_time"] == "Tue, 01 Dec 2026 12:00:00 +0000"
    assert body["calls"][0]["subresource_uris"]["recordings"].endswith("/Recordings.json")
    assert (body["page"], body["page_size"], body["start"], body["end"]) == (0, 50, 0, 4)
    assert body["first_page_uri"] == body["uri"] == LIST_PATH + "?PageSize=50&Page=0"
    assert body["next_page_uri"] is None and body["previous_page_uri"] is None
    tw.request("POST", "/_mock/reset")
    status, body = list_calls(tw)
    assert status == 200 and body["calls"] == [] and (body["start"], body["end"]) == (0, 0)


def test_twilio_call_list_exact_filters(tw):
    parent = sid(1)
    seed_calls(tw, {"sid": parent, "from": E164, "to": "+551140040000", "status": "completed"},
               {"sid": sid(2), "parent_call_sid": parent, "direction": "outbound-dial",
                "from": "+551140040000", "to": "+5511988887777", "status": "completed"},
               {"sid": sid(3), "from": E164, "to": "+551140040000", "status": "no-answer"},
               {"sid": sid(4), "from": "+5521999990000", "status": "in-progress"})
    assert sorted(listed_sids(tw, Status="completed")) == [parent, sid(2)]
    assert listed_sids(tw, Status="no-answer") == [sid(3)]
    assert sorted(listed_sids(tw, From=E164)) == [parent, sid(3)]
    assert listed_sids(tw, To="+5511988887777") == [sid(2)]
    assert listed_sids(tw, ParentCallSid=parent) == [sid(2)]
    assert listed_sids(tw, From=E164, Status="completed") == [parent]
    assert listed_sids(tw, Status="busy") == []
    assert listed_sids(tw, "From=+5511971730783") == []  # an unencoded '+' is a space
    assert len(listed_sids(tw, Colour="red")) == 4       # unknown parameters are ignored


def test_twilio_call_list_time_filters_are_day_granular(tw):
    seed_calls(tw,
               {"sid": sid(1), "start_time": "2026-12-01T23:50:00Z", "end_time": "2026-12-01T23:59:59Z"},
               {"sid": sid(2), "start_time": "2026-12-01T23:58:00Z", "end_time": "2026-12-02T00:00:00Z"},
               {"sid": sid(3), "start_time": "2026-11-30T08:00:00Z", "end_time": "2026-11-30T08:05:00Z"},
               {"sid": sid(4), "status": "in-progress", "start_time": "2026-12-01T09:00:00Z"})
    # Sent the way clients send them: `EndTime>=D` decodes to key `EndTime>`.
    assert sorted(listed_sids(tw, "EndTime>=2026-12-01")) == [sid(1), sid(2)]
    assert sorted(listed_sids(tw, "EndTime%3E=2026-12-01")) == [sid(1), sid(2)]
    assert listed_sids(tw, "EndTime>=2026-12-02") == [sid(2)]
    assert sorted(listed_sids(tw, "EndTime<=2026-12-01")) == [sid(1), sid(3)]
    assert listed_sids(tw, "EndTime%3C=2026-11-30") == [sid(3)]
    assert listed_sids(tw, "EndTime=2026-12-01") == [sid(1)]
    assert listed_sids(tw, "EndTime=2026-12-02") == [sid(2)]
    assert listed_sids(tw, "EndTime>=2026-12-01&EndTime<=2026-12-01") == [sid(1)]
    assert listed_sids(tw, "EndTime>=2026-12-03") == []
    # StartTime works the same way; the call that has not ended has a start_time.
    assert sorted(listed_sids(tw, "StartTime=2026-12-01")) == [sid(1), sid(2), sid(4)]
    assert listed_sids(tw, "StartTime<=2026-11-30") == [sid(3)]
    assert listed_sids(tw, "StartTime>=2026-12-02") == []
    assert sid(4) not in listed_sids(tw, "EndTime<=2099-01-01")  # no end_time: never matches


def test_twilio_call_list_bad_parameters_are_400(tw):
    for query in ("PageSize=1001", "PageSize=0", "PageSize=ten", "Page=-1",
                  "EndTime>=2026/12/01", "EndTime=2026-13-01", "StartTime<=2026-12-01T00:00:00Z",
                  "EndTime=", "PageToken=nonsense", "PageToken=PA" + sid(99)):
        status, body = list_calls(tw, query)
        assert (status, body["code"], body["status"]) == (400, 20001, 400), (query, body)
        assert body["more_info"] == "https://www.twilio.com/docs/errors/20001"
    assert "Invalid value for EndTime>" in list_calls(tw, "EndTime>=2026/12/01")[1]["message"]
    assert "PageSize" in list_calls(tw, "PageSize=1001")[1]["message"]
    status, body = list_calls(tw, PageSize=1000)
    assert status == 200 and body["page_size"] == 1000


def test_twilio_call_list_pages_follow_next_page_uri(tw):
    seed_calls(tw, *[{"sid": sid(n), "start_time": "2026-12-01T10:%02d:00Z" % n,
                      "end_time": "2026-12-01T10:%02d:30Z" % n} for n in range(1, 8)],
               {"sid": sid(50), "status": "busy", "start_time": "2026-12-01T10:30:00Z"})
    status, body = list_calls(tw, "Status=completed&EndTime>=2026-12-01", PageSize=3)
    assert status == 200
    filters = "Status=completed&EndTime%3E=2026-12-01"
    assert body["uri"] == body["first_page_uri"] == LIST_PATH + "?" + filters + "&PageSize=3&Page=0"
    pages = [body]
    while pages[-1]["next_page_uri"]:
        uri = pages[-1]["next_page_uri"]
        expected = "%s?%s&PageSize=3&Page=%d&PageToken=PA" % (LIST_PATH, filters, len(pages))
        assert uri.startswith(expected)
        if len(pages) == 1:  # a newer call arriving meanwhile neither repeats nor skips anything
            seed_calls(tw, {"sid": sid(60), "start_time": "2026-12-01T11:00:00Z",
                            "end_time": "2026-12-01T11:00:30Z"})
        status, _, page = tw.request("GET", uri, headers=basic(SK, "sec"))
        assert status == 200 and page["uri"] == uri
        pages.append(page)
    assert [[c["sid"] for c in p["calls"]] for p in pages] == [
        [sid(7), sid(6), sid(5)], [sid(4), sid(3), sid(2)], [sid(1)]]
    assert [(p["page"], p["start"], p["end"]) for p in pages] == [(0, 0, 2), (1, 3, 5), (2, 6, 6)]
    assert pages[0]["previous_page_uri"] is None and pages[2]["next_page_uri"] is None
    back = pages[2]["previous_page_uri"]
    assert back.startswith(LIST_PATH + "?" + filters + "&PageSize=3&Page=1&PageToken=PB")
    status, _, page = tw.request("GET", back, headers=basic(SK, "sec"))
    assert status == 200 and [c["sid"] for c in page["calls"]] == [sid(4), sid(3), sid(2)]
    # Page without a token counts from the current head of the list.
    assert listed_sids(tw, "Status=completed", PageSize=3, Page=1) == [sid(5), sid(4), sid(3)]
    assert listed_sids(tw, PageSize=3, Page=9) == []


def test_twilio_call_list_auth_faults_and_request_log(tw):
    seed_calls(tw, {"sid": CA})
    expected = {"code": 20003, "message": "Authenticate",
                "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401}
    status, headers, body = tw.request("GET", LIST_PATH)
    assert (status, body) == (401, expected) and headers["www-authenticate"].startswith("Basic")
    assert tw.request("GET", LIST_PATH, headers=basic(SK, "tok"))[0] == 401
    assert tw.request("GET", LIST_PATH.replace(AC, "AC" + "f" * 32), headers=basic(SK, "sec"))[0] == 401
    assert tw.request("GET", LIST_PATH, headers=basic(AC, "tok"))[0] == 200
    assert tw.request("POST", LIST_PATH, headers=basic(SK, "sec"))[2]["code"] == 20004
    # The list alone answers 429 twice: a fault rule on its path.
    status, _, rule = tw.request("POST", "/_mock/faults", body={
        "method": "GET", "path": r"/Calls\.json$", "status": 429, "count": 2})
    assert status == 201
    assert tw.request("GET", CALL_PATH, headers=basic(SK, "sec"))[0] == 200
    for _ in range(2):
        status, headers, body = tw.request("GET", LIST_PATH + "?Status=completed",
                                           headers=basic(SK, "sec"))
        assert (status, body["code"], body["status"]) == (429, 20429, 429)
        assert "retry-after" not in headers and headers["twilio-request-id"].startswith("RQ")
    assert listed_sids(tw, Status="completed") == [CA]
    log = [r for r in tw.request("GET", "/_mock/requests?path=Calls\\.json$")[2]["requests"]
           if r["method"] == "GET" and r["status"] != 401]
    assert [(r["status"], r["fault"]) for r in log] == [
        (200, None), (429, "fault#%d" % rule["id"]), (429, "fault#%d" % rule["id"]), (200, None)]
    assert log[-1]["args"] == {"Status": ["completed"]}


def test_twilio_account_resource(tw):
    status, _, body = tw.request("GET", "/2010-04-01/Accounts/%s.json" % AC, headers=basic(SK, "sec"))
    assert status == 200 and body["sid"] == AC and body["status"] == "active"
    assert body["subresource_uris"]["incoming_phone_numbers"].endswith("/IncomingPhoneNumbers.json")
    assert tw.request("GET", "/2010-04-01/Accounts/%s.json" % AC, headers=basic(AC, "wrong"))[0] == 401
    other = "/2010-04-01/Accounts/AC%s.json" % ("f" * 32)
    assert tw.request("GET", other, headers=basic(SK, "sec"))[0] == 401


def test_twilio_incoming_numbers_seeded_and_paged(tw):
    path = "/2010-04-01/Accounts/%s/IncomingPhoneNumbers.json" % AC
    numbers = [{"phone_number": "+5511300010%02d" % i, "status_callback": "https://h/%d" % i}
               for i in range(5)]
    status, _, body = tw.request("POST", "/_mock/numbers", body={"numbers": numbers})
    assert status == 201 and len(body["numbers"]) == 5
    assert body["numbers"][0]["sid"].startswith("PN") and body["numbers"][0]["status_callback_method"] == "POST"
    seen, uri = [], path + "?PageSize=2"
    while uri:
        status, _, page = tw.request("GET", uri, headers=basic(SK, "sec"))
        assert status == 200 and len(page["incoming_phone_numbers"]) <= 2
        seen += [(n["phone_number"], n["status_callback"]) for n in page["incoming_phone_numbers"]]
        uri = page["next_page_uri"]
    assert seen == [(n["phone_number"], n["status_callback"]) for n in numbers]
    tw.request("POST", "/_mock/numbers", body={"numbers": [{"phone_number": "+1"}], "replace": True})
    assert [n["phone_number"] for n in tw.request("GET", "/_mock/numbers")[2]["numbers"]] == ["+1"]
    assert tw.request("POST", "/_mock/numbers", body={"status_callback": "x"})[0] == 400
    tw.request("POST", "/_mock/reset", body={})
    assert tw.request("GET", path, headers=basic(SK, "sec"))[2]["incoming_phone_numbers"] == []


def test_rd_token_check_and_v2_users(rd):
    assert rd.request("GET", v1("/token/check"))[0] == 200
    assert rd.request("GET", "/api/v1/token/check?token=wrong")[0] == 401
    status, _, body = rd.request("GET", "/crm/v2/users", headers=bearer(access_token(rd)))
    assert status == 200 and body["data"] and {"id", "name", "email"} <= set(body["data"][0])
    assert rd.request("GET", "/crm/v2/users", headers=bearer("made-up"))[0] == 401


# ---- Twilio recording media ------------------------------------------------------------------

RE_SID = "RE" + "2" * 32
MEDIA_PATH = "/2010-04-01/Accounts/%s/Recordings/%s.mp3" % (AC, RE_SID)


def media_request(mock, path, headers=None):
    """GET `path` on the mock; return (status, headers, raw body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", mock.port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def seed_recording(tw, **fields):
    """Seeds a call CA and one recording of it."""
    tw.request("POST", "/_mock/calls", body={"sid": CA})
    status, _, rec = tw.request("POST", "/_mock/recordings",
                                body=dict({"call_sid": CA, "sid": RE_SID}, **fields))
    assert status == 201, rec
    return rec


def test_twilio_media_needs_basic_auth_and_serves_fixed_bytes(tw):
    rec = seed_recording(tw, media_size=5000)
    assert "media_size" not in rec and "media_mode" not in rec, "mock-only fields stay hidden"
    status, headers, _ = media_request(tw, MEDIA_PATH)
    assert status == 401 and headers["www-authenticate"].startswith("Basic")
    assert media_request(tw, MEDIA_PATH, basic(SK, "wrong"))[0] == 401
    status, headers, body = media_request(tw, MEDIA_PATH, basic(SK, "sec"))
    assert status == 200 and headers["content-type"] == "audio/mpeg"
    assert len(body) == 5000 and body.startswith(b"ID3")
    assert int(headers["content-length"]) == 5000
    expected = media_request(tw, "/_mock/media/" + RE_SID)[2]
    assert body == expected, "the control API tells tests which bytes to expect"
    assert media_request(tw, MEDIA_PATH, basic(AC, "tok"))[2] == body, "auth token works too"
    wav = media_request(tw, MEDIA_PATH.replace(".mp3", ""), basic(SK, "sec"))
    assert wav[0] == 200 and wav[1]["content-type"] == "audio/x-wav"


def test_twilio_media_of_unfinished_or_unknown_recordings_is_404(tw):
    seed_recording(tw, status="processing")
    status, _, body = media_request(tw, MEDIA_PATH, basic(SK, "sec"))
    assert status == 404 and json.loads(body)["code"] == 20404
    other = MEDIA_PATH.replace(RE_SID, "RE" + "9" * 32)
    assert media_request(tw, other, basic(SK, "sec"))[0] == 404


def test_twilio_media_redirect_mode_signs_a_short_lived_location(tw):
    seed_recording(tw, media_mode="redirect")
    status, headers, body = media_request(tw, MEDIA_PATH, basic(SK, "sec"))
    assert status == 302 and body == b""
    location = urllib.parse.urlsplit(headers["location"])
    assert location.path == "/_media/%s.mp3" % RE_SID
    target = location.path + "?" + location.query
    status, headers, audio = media_request(tw, target)  # no credentials: the link is signed
    assert status == 200 and headers["content-type"] == "audio/mpeg"
    assert audio == media_request(tw, "/_mock/media/" + RE_SID)[2]
    forged = target.replace("Signature=", "Signature=0")
    assert media_request(tw, forged)[0] == 403
    assert media_request(tw, MEDIA_PATH)[0] == 401, "the redirect itself still needs auth"


def test_twilio_media_mode_default_is_switchable_and_reset(tw):
    seed_recording(tw)
    assert tw.request("POST", "/_mock/media", body={"mode": "redirect"})[0] == 200
    assert media_request(tw, MEDIA_PATH, basic(SK, "sec"))[0] == 302
    assert tw.request("POST", "/_mock/media", body={"mode": "sideways"})[0] == 400
    assert tw.request("POST", "/_mock/reset")[0] == 200
    seed_recording(tw)
    assert media_request(tw, MEDIA_PATH, basic(SK, "sec"))[0] == 200


def test_twilio_media_byte_ranges(tw):
    seed_recording(tw, media_size=1000)
    whole = media_request(tw, MEDIA_PATH, basic(SK, "sec"))
    assert whole[0] == 200 and whole[1]["accept-ranges"] == "bytes"
    for rng, (start, end) in (("bytes=100-199", (100, 199)), ("bytes=900-", (900, 999)),
                              ("bytes=-50", (950, 999)), ("bytes=990-5000", (990, 999))):
        status, headers, body = media_request(tw, MEDIA_PATH, dict(basic(SK, "sec"), Range=rng))
        assert status == 206, rng
        assert headers["content-range"] == "bytes %d-%d/1000" % (start, end), rng
        assert body == whole[2][start:end + 1], rng
    status, headers, _ = media_request(tw, MEDIA_PATH, dict(basic(SK, "sec"), Range="bytes=1000-"))
    assert status == 416 and headers["content-range"] == "bytes */1000"
    assert media_request(tw, MEDIA_PATH, dict(basic(SK, "sec"), Range="pages=1-2"))[0] == 200
