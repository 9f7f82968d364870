"""test_ingest — calllog-ingest end to end: real process, real Redis, loopback HTTP.

Checks the outside contract of design §2 and §3: a signed Twilio status callback is
answered 204 only once it is durable (an entry in `<prefix>:events`, or the local spool
that is replayed into Redis when Redis is back); each refusal has its status code and is
counted in /metrics; SIGTERM drains in-flight requests. Signatures come from
twilio_sign.py, an independent implementation of twilio-python's RequestValidator that
is checked here against the SDKs' published vectors first.
"""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid

import pytest

import twilio_sign
from conftest import (DEFAULT_TOKEN, PUBLIC_BASE_URL, WEBHOOK_PATH,
                      bin_path, call_params, clean_env, free_port, http_request,
                      metric_sum, parse_metrics, stream_entries, wait_for)

FORM = "application/x-www-form-urlencoded"

# ---------------------------------------------------------------------------------------
# The oracle itself: the official SDK vectors (shared/reference/twilio.md).

VECTOR_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
VECTOR_PARAMS = {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675309", "Digits": "1234",
                 "From": "+14158675309", "To": "+18005551212"}


@pytest.mark.parametrize("url,params,expected", [
    (VECTOR_URL, VECTOR_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
    ("https://mycompany.com:443/myapp.php?foo=1&bar=2", VECTOR_PARAMS,
     "kvajT1Ptam85bY51eRf/AJRuM3w="),
    ("http://mycompany.com:80/myapp.php?foo=1&bar=2", VECTOR_PARAMS,
     "0ZXoZLH/DfblKGATFgpif+LLRf4="),
    (VECTOR_URL, [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"),
                  ("Digits", "1234"), ("Digits", "1234")], "IK+Dwps556ElfBT0I3Rgjkr1wJU="),
    (VECTOR_URL, dict(VECTOR_PARAMS, ReasonConferenceEnded="test", Reason="Participant"),
     "vOEb5UThFn24KEfnOFLQY2AE5FY="),
])
def test_oracle_matches_published_vectors(url, params, expected):
    assert twilio_sign.compute_signature("12345", url, params) == expected


def test_oracle_body_sha256_vector():
    body = '{"property": "value", "boolean": true}'
    signed_url, sig = twilio_sign.sign_json("12345", VECTOR_URL, body)
    assert signed_url == VECTOR_URL + (
        "&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620")
    assert sig == "a9nBmqA0ju/hNViExpshrM61xv4="


def test_oracle_rejects_key_value_sorting():
    params = dict(VECTOR_PARAMS, ReasonConferenceEnded="test", Reason="Participant")
    assert twilio_sign.compute_signature("12345", VECTOR_URL, params) != \
        "95+Bu0JVPi0r/SsESZCVf0dWAjw="


# ---------------------------------------------------------------------------------------
# Command line and settings.

def run_ingest_once(args=(), env=None, unset=(), timeout=10):
    """Runs calllog-ingest expecting it to exit by itself; returns (rc, output)."""
    proc = subprocess.run([str(bin_path("calllog-ingest")), *args],
                          env=clean_env(env, unset), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


def test_help_and_version():
    rc, out = run_ingest_once(["--help"])
    assert rc == 0, out
    assert re.search(r"usage", out, re.I), out
    assert "TWILIO_AUTH_TOKEN" in out or "--env-file" in out, out
    rc, out = run_ingest_once(["--version"])
    assert rc == 0, out
    assert re.search(r"\d+\.\d+\.\d+", out), out


def base_settings():
    return {"REDIS_URL": "redis://127.0.0.1:1/0", "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
            "TWILIO_AUTH_TOKEN": DEFAULT_TOKEN, "INGEST_LISTEN": f"127.0.0.1:{free_port()}",
            "METRICS_LISTEN": f"127.0.0.1:{free_port()}", "LOG_FORMAT": "json"}


@pytest.mark.parametrize("name,value", [
    ("TWILIO_AUTH_TOKEN", None),
    ("PUBLIC_BASE_URL", None),
    ("INGEST_LISTEN", "not-a-listen-address"),
    ("INGEST_MAX_BODY_BYTES", "lots"),
    ("PUBLIC_BASE_URL", "hooks.example.com"),
    ("REDIS_URL", "http://127.0.0.1:6379"),
])
def test_refuses_to_start_naming_the_setting(name, value, tmp_path):
    env = base_settings()
    env["INGEST_SPOOL_DIR"] = str(tmp_path / "spool")
    unset = ()
    if value is None:
        unset = (name,)
    else:
        env[name] = value
    rc, out = run_ingest_once(env=env, unset=unset)
    assert rc != 0, f"started with {name}={value!r}:\n{out}"
    assert name in out, f"the refusal does not name {name}:\n{out}"
    assert len(out.strip().splitlines()) <= 3, f"not one clear line:\n{out}"


def test_first_start_without_settings_names_every_missing_one(tmp_path):
    env = base_settings()
    env["INGEST_SPOOL_DIR"] = str(tmp_path / "spool")
    rc, out = run_ingest_once(env=env, unset=("TWILIO_AUTH_TOKEN", "PUBLIC_BASE_URL"))
    assert rc == 2, out
    assert out.strip() == ("calllog-ingest: settings PUBLIC_BASE_URL, TWILIO_AUTH_TOKEN are "
                           "required but not set"), out


def test_secrets_come_from_files(start_ingest, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(DEFAULT_TOKEN + "\n")  # as `kubectl create secret` writes it
    ing = start_ingest(unset=("TWILIO_AUTH_TOKEN",),
                       env={"TWILIO_AUTH_TOKEN_FILE": str(token_file)})
    assert ing.post_form(call_params()).status == 204
    empty = tmp_path / "empty"
    empty.write_text("")
    env = base_settings()
    env.update({"INGEST_SPOOL_DIR": str(tmp_path / "spool"),
                "TWILIO_AUTH_TOKEN_SECONDARY_FILE": str(empty)})
    rc, out = run_ingest_once(env=env)
    assert rc == 2 and "TWILIO_AUTH_TOKEN_SECONDARY_FILE" in out, out


def test_env_file_supplies_settings(start_ingest, rdb, tmp_path):
    env_file = tmp_path / "ingest.env"
    env_file.write_text("# settings for the e2e test\n"
                        f"TWILIO_AUTH_TOKEN={DEFAULT_TOKEN}\n"
                        f"PUBLIC_BASE_URL={PUBLIC_BASE_URL}\n")
    ing = start_ingest(unset=("TWILIO_AUTH_TOKEN", "PUBLIC_BASE_URL"),
                       args=("--env-file", str(env_file)))
    res = ing.post_form(call_params())
    assert res.status == 204, res
    assert len(ing.events(rdb)) == 1


# ---------------------------------------------------------------------------------------
# Accepted requests.

def test_signed_form_post_becomes_one_stream_entry(ingest, rdb):
    params = call_params()
    before = time.time()
    res = ingest.post_form(params, headers={"I-Twilio-Idempotency-Token": "idem-123"})
    assert res.status == 204, res
    assert res.body == b""

    entries = ingest.events(rdb)
    assert len(entries) == 1, entries
    _, fields = entries[0]
    assert fields["call_sid"] == params["CallSid"]
    assert fields["status"] == "completed"
    assert fields["attempt"] == "0"
    assert fields["request_id"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", fields["received_at"]), fields

    ev = json.loads(fields["event"])
    assert ev["v"] == 1
    assert ev["call_sid"] == params["CallSid"]
    assert ev["status"] == "completed"
    assert ev["from"] == "+5511987654321"
    assert ev["to"] == "+551130304040"
    assert ev["direction"] == "inbound"
    assert ev["duration"] == "42"
    assert ev["account_sid"] == params["AccountSid"]
    assert ev["caller_name"] == "José da Silva & Cia"
    assert ev["timestamp"] == params["Timestamp"]
    assert ev["sequence_number"] == "3"
    assert ev["request_id"] == fields["request_id"]
    assert ev["received_at"] == fields["received_at"]
    assert ev["idempotency_token"] == "idem-123"
    assert ev["geo"]["from_city"] == "SAO PAULO"
    received = time.mktime(time.strptime(fields["received_at"][:19], "%Y-%m-%dT%H:%M:%S"))
    received -= time.timezone  # received_at is UTC
    assert before - 5 <= received <= time.time() + 5


def test_absent_twilio_fields_are_absent_in_event(ingest, rdb):
    params = {"CallSid": "CA" + uuid.uuid4().hex, "CallStatus": "ringing",
              "From": "+5511987654321", "To": "+551130304040", "Direction": "outbound-api"}
    res = ingest.post_form(params)
    assert res.status == 204, res
    ev = json.loads(ingest.events(rdb)[0][1]["event"])
    assert ev["status"] == "ringing"
    assert ev["direction"] == "outbound-api"
    for absent in ("duration", "recording_url", "caller_name", "parent_call_sid"):
        assert absent not in ev, ev


def test_form_content_type_with_charset_accepted(ingest, rdb):
    res = ingest.post_form(call_params(), content_type=FORM + "; charset=utf-8")
    assert res.status == 204, res
    assert len(ingest.events(rdb)) == 1


def test_signature_covers_raw_query(ingest, rdb):
    path = WEBHOOK_PATH + "?source=e2e&who=O%27Brien&plus=a+b"
    res = ingest.post_form(call_params(), path=path)
    assert res.status == 204, res
    # Signed as if the query were absent: refused.
    res = ingest.post_form(call_params(), path=path, sign_url=ingest.signed_url(WEBHOOK_PATH))
    assert res.status == 403, res
    assert len(ingest.events(rdb)) == 1


def test_signature_with_default_port_accepted(ingest, rdb):
    # Every SDK accepts the URL with or without the scheme's default port.
    url = PUBLIC_BASE_URL.replace(".com", ".com:443") + WEBHOOK_PATH
    res = ingest.post_form(call_params(), sign_url=url)
    assert res.status == 204, res


def test_loopback_public_base_url(start_ingest, rdb):
    ing = start_ingest(public_base_url="http://127.0.0.1:{port}")
    assert ing.base_url == f"http://127.0.0.1:{ing.port}"
    res = ing.post_form(call_params())
    assert res.status == 204, res
    assert len(ing.events(rdb)) == 1


def test_json_body_with_body_sha256(ingest, rdb):
    sid = "CA" + uuid.uuid4().hex
    doc = {"CallSid": sid, "CallStatus": "busy", "From": "+5511987654321",
           "To": "+551130304040", "Direction": "inbound", "CallDuration": "0"}
    res = ingest.post_json(doc)
    assert res.status == 204, res
    entries = ingest.events(rdb)
    assert len(entries) == 1
    fields = entries[0][1]
    assert fields["call_sid"] == sid and fields["status"] == "busy"
    ev = json.loads(fields["event"])
    assert ev["call_sid"] == sid and ev["status"] == "busy" and ev["from"] == "+5511987654321"


def test_secondary_token_accepted(start_ingest, rdb):
    ing = start_ingest(env={"TWILIO_AUTH_TOKEN_SECONDARY": "e2e-secondary-token-abcdef"})
    assert ing.post_form(call_params(), token="e2e-secondary-token-abcdef").status == 204
    assert ing.post_form(call_params()).status == 204
    assert ing.post_form(call_params(), token="e2e-some-other-token").status == 403
    assert len(ing.events(rdb)) == 2
    assert "e2e-secondary-token-abcdef" not in ing.log_text()


def test_health_and_readiness(ingest):
    assert ingest.get("/healthz").status == 200
    assert ingest.get("/readyz").status == 200


def test_unknown_path_is_404(ingest):
    assert ingest.get("/nope").status == 404


def test_keep_alive(ingest, rdb):
    conn = http.client.HTTPConnection("127.0.0.1", ingest.port, timeout=20)
    try:
        assert ingest.post_form(call_params(), conn=conn).status == 204
        sock = conn.sock
        assert sock is not None, "the ingest closed the connection after a 204"
        for _ in range(4):
            assert ingest.post_form(call_params(), conn=conn).status == 204
            assert conn.sock is sock, "the connection was not kept alive"
    finally:
        conn.close()
    assert len(ingest.events(rdb)) == 5


def raw_exchange(port, request):
    """Sends raw request bytes, returns everything the server sends until it closes or
    goes quiet for a second, and whether it closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        s.settimeout(1.0)
        data = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return data, True
                data += chunk
        except socket.timeout:
            return data, False


@pytest.mark.parametrize("version,connection,closes", [
    ("1.1", None, False),
    ("1.1", "close", True),
    ("1.1", "Keep-Alive", False),
    ("1.0", None, True),
    ("1.0", "keep-alive", False),
])
def test_answers_say_what_the_connection_does(ingest, version, connection, closes):
    """The ingest writes each answer in one piece (ingest/http_answer.c): its status line,
    Date, Content-Length and a Connection header that matches what civetweb then does."""
    hdr = f"Connection: {connection}\r\n" if connection else ""
    data, closed = raw_exchange(
        ingest.port, f"GET /healthz HTTP/{version}\r\nHost: x\r\n{hdr}\r\n".encode())
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK"
    fields = dict(line.split(": ", 1) for line in lines[1:])
    assert re.fullmatch(r"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT",
                        fields["Date"])
    assert fields["Content-Length"] == "3" and body == b"ok\n"
    assert fields["Connection"] == ("close" if closes else "keep-alive")
    assert closed == closes


def test_refusal_answers_are_whole(ingest):
    """A 405 carries Allow, its reason as the body and its length; a pipelined second
    request on the same connection is answered after it."""
    data, closed = raw_exchange(
        ingest.port, b"GET " + WEBHOOK_PATH.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    first, _, rest = data.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
    assert b"\r\nAllow: POST\r\n" in first + b"\r\n"
    assert b"\r\nContent-Length: 18\r\n" in first + b"\r\n"
    assert rest.startswith(b"method_not_allowed" + b"HTTP/1.1 200 OK\r\n")
    assert closed


# ---------------------------------------------------------------------------------------
# Refusals (design §2): status code, nothing enqueued, logged and counted.

def raw_post(ing, body, content_type=FORM, signature="x", path=WEBHOOK_PATH):
    headers = {"Content-Type": content_type}
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    return http_request(ing.port, "POST", path, body=body, headers=headers)


def signed_raw_form(ing, body_text):
    """Signs a hand-written form body by decoding it leniently the way Twilio would."""
    from urllib.parse import parse_qsl
    params = parse_qsl(body_text, keep_blank_values=True)
    return twilio_sign.compute_signature(ing.token, ing.signed_url(), params)


def test_bad_or_missing_signature_is_403(ingest, rdb):
    params = call_params()
    assert ingest.post_form(params, token="wrong-token").status == 403
    assert ingest.post_form(params, signature="").status == 403  # header absent
    assert ingest.post_form(params, signature="WRONG_SIGNATURE").status == 403
    body, sig = twilio_sign.sign_form(ingest.token, ingest.signed_url(), params)
    tampered = body.replace(b"completed", b"no-answer")
    assert raw_post(ingest, tampered, signature=sig).status == 403
    assert ingest.events(rdb) == []


def test_json_body_hash_mismatch_is_403(ingest, rdb):
    doc = {"CallSid": "CA" + uuid.uuid4().hex, "CallStatus": "completed"}
    other = json.dumps(dict(doc, CallStatus="failed")).encode()
    assert ingest.post_json(doc, tamper=other).status == 403
    # JSON without bodySHA256 in the URL cannot be verified.
    body = json.dumps(doc).encode()
    sig = twilio_sign.compute_signature(ingest.token, ingest.signed_url())
    res = http_request(ingest.port, "POST", WEBHOOK_PATH, body=body,
                       headers={"Content-Type": "application/json", "X-Twilio-Signature": sig})
    assert res.status == 403, res
    assert ingest.events(rdb) == []


@pytest.mark.parametrize("body", [
    "CallSid=CA123&CallStatus=compl%zzeted",
    "CallSid=CA123&CallStatus=completed%4",
    "CallSid=CA%G0123&CallStatus=completed",
])
def test_bad_percent_escape_is_400(ingest, rdb, body):
    res = raw_post(ingest, body.encode(), signature=signed_raw_form(ingest, body))
    assert res.status == 400, res
    assert ingest.events(rdb) == []


@pytest.mark.parametrize("missing", ["CallSid", "CallStatus"])
def test_missing_required_parameter_is_400(ingest, rdb, missing):
    params = call_params()
    del params[missing]
    res = ingest.post_form(params)
    assert res.status == 400, res
    params[missing] = ""
    res = ingest.post_form(params)
    assert res.status == 400, res
    assert ingest.events(rdb) == []


def test_malformed_json_is_400(ingest, rdb):
    res = ingest.post_json(None, raw=b'{"CallSid": "CA1", "CallStatus": ')
    assert res.status == 400, res
    res = ingest.post_json(None, raw=b'["CallSid", "CallStatus"]')
    assert res.status == 400, res
    res = ingest.post_json({"CallSid": "CA" + uuid.uuid4().hex})
    assert res.status == 400, res
    assert ingest.events(rdb) == []


def test_get_on_webhook_is_405(ingest):
    res = ingest.get(WEBHOOK_PATH)
    assert res.status == 405, res
    res = http_request(ingest.port, "PUT", WEBHOOK_PATH, body=b"CallSid=CA1",
                       headers={"Content-Type": FORM})
    assert res.status == 405, res


def test_body_over_limit_is_413(start_ingest, rdb):
    ing = start_ingest(env={"INGEST_MAX_BODY_BYTES": "2048"})
    params = call_params(Padding="x" * 4000)
    res = ing.post_form(params)
    assert res.status == 413, res
    # At the limit's near side it is accepted.
    assert ing.post_form(call_params(Padding="y" * 1000)).status == 204
    assert len(ing.events(rdb)) == 1


def test_default_body_limit_is_64k(ingest, rdb):
    res = ingest.post_form(call_params(Padding="x" * 70000))
    assert res.status == 413, res
    assert ingest.events(rdb) == []


def test_text_plain_is_415(ingest, rdb):
    params = call_params()
    res = ingest.post_form(params, content_type="text/plain")
    assert res.status == 415, res
    assert ingest.events(rdb) == []


def test_refusals_are_counted_and_logged(ingest, rdb):
    assert ingest.post_form(call_params()).status == 204
    assert ingest.post_form(call_params()).status == 204
    assert ingest.post_form(call_params(), token="wrong").status == 403
    assert ingest.post_form(call_params(), signature="").status == 403
    body = "CallSid=CA1&CallStatus=%zz"
    assert raw_post(ingest, body.encode(), signature=signed_raw_form(ingest, body)).status == 400
    assert ingest.get(WEBHOOK_PATH).status == 405
    assert ingest.post_form(call_params(), content_type="text/plain").status == 415

    text = ingest.metrics()
    name = "calllog_ingest_requests_total"
    assert metric_sum(text, name, code="204") == 2, text
    assert metric_sum(text, name, code="403") == 2, text
    assert metric_sum(text, name, code="400") == 1, text
    assert metric_sum(text, name, code="405") == 1, text
    assert metric_sum(text, name, code="415") == 1, text
    assert metric_sum(text, "calllog_ingest_signature_failures_total") == 2, text

    # One JSON line per log record; each refusal is logged with its code.
    lines = ingest.log_lines()
    records = []
    for ln in lines:
        records.append(json.loads(ln))  # LOG_FORMAT=json: every line is JSON
    def mentions(rec, code):
        return any(v in (code, str(code)) for v in rec.values())
    for code, n in ((403, 2), (400, 1), (405, 1), (415, 1)):
        found = [r for r in records if mentions(r, code)]
        assert len(found) >= n, f"{n} refusal(s) with {code} not logged:\n" + "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Durability: Redis outage, spool, replay.

def test_redis_outage_is_spooled_and_replayed_in_order(start_ingest, private_redis):
    ing = start_ingest(redis_url_=private_redis.url, env={"INGEST_REDIS_TIMEOUT_MS": "300"})
    n = 200
    tag = uuid.uuid4().hex[:20]
    sids = [f"CA{tag}{i:012d}" for i in range(n)]
    results = [None] * n  # (status or exception text, t_start, t_end)
    acked = []            # indexes answered 204, in order of acknowledgement
    done = [0]

    def sender():
        for i, sid in enumerate(sids):
            t0 = time.monotonic()
            try:
                status = ing.post_form(call_params(call_sid=sid)).status
            except OSError as exc:
                status = f"error: {exc}"
            t1 = time.monotonic()
            results[i] = (status, t0, t1)
            if status == 204:
                acked.append(i)
            done[0] = i + 1
            time.sleep(0.004)

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    assert wait_for(lambda: done[0] >= 50, 60), "the first 50 requests did not complete"
    private_redis.stop()
    t_down = time.monotonic()
    at_down = done[0]
    ready_during_outage = None
    if wait_for(lambda: done[0] >= at_down + 5, 20):
        ready_during_outage = ing.get("/readyz").status
    wait_for(lambda: done[0] >= 130, 30)
    t_up = time.monotonic()
    private_redis.start()
    thread.join(180)
    assert not thread.is_alive(), "the sender did not finish within 180 s"

    statuses = [r[0] for r in results]
    others = {s for s in statuses if s != 204}
    count_503 = statuses.count(503)
    assert count_503 == 0, f"{count_503} requests got 503 although the spool was writable"
    assert not others, f"answers other than 204: {sorted(map(str, others))}"
    assert ready_during_outage == 200, \
        f"/readyz answered {ready_during_outage} while Redis was down and the spool writable"

    during = [i for i in acked if results[i][1] > t_down and results[i][2] < t_up]
    assert len(during) >= 20, f"only {len(during)} requests fell inside the outage window"

    client = private_redis.client()
    key = ing.events_key
    wanted = {sids[i] for i in acked}

    def all_present():
        present = {f["call_sid"] for _, f in stream_entries(client, key)}
        return wanted <= present

    assert wait_for(all_present, 20, 0.2), (
        "acknowledged events missing from the stream 20 s after Redis came back: "
        f"{sorted(wanted - {f['call_sid'] for _, f in stream_entries(client, key)})[:10]}")

    entries = stream_entries(client, key)
    first_pos = {}
    for pos, (_, fields) in enumerate(entries):
        first_pos.setdefault(fields["call_sid"], pos)
    spooled_positions = [first_pos[sids[i]] for i in during]
    assert spooled_positions == sorted(spooled_positions), \
        "events spooled during the outage were replayed out of acknowledgement order"
    dupes = len(entries) - len(first_pos)
    print(f"outage: {len(acked)} acked, {len(during)} inside the outage, "
          f"{dupes} duplicate entries, stream order of all acks "
          f"{'preserved' if [first_pos[sids[i]] for i in acked] == sorted(first_pos[sids[i]] for i in acked) else 'not preserved'}")
    for _, fields in entries:
        assert fields["attempt"] == "0"
        assert json.loads(fields["event"])["call_sid"] == fields["call_sid"]
    # If the ingest exports a spool depth gauge, it must drain back to zero.
    for name in {n for n, _, _ in parse_metrics(ing.metrics()) if "spool" in n and "depth" in n}:
        assert wait_for(lambda: metric_sum(ing.metrics(), name) == 0, 10), \
            f"{name} did not return to 0 after the replay"


def fill_until_503(ing, max_requests, caller_name_len):
    """Sends large signed events until one is refused; returns (acked sids, status)."""
    acked = []
    for _ in range(max_requests):
        sid = "CA" + uuid.uuid4().hex
        res = ing.post_form(call_params(call_sid=sid, CallerName="n" * caller_name_len))
        if res.status != 204:
            return acked, res.status
        acked.append(sid)
    return acked, 204


def assert_replayed(client, key, sids, timeout=20):
    """Every sid in `sids` reaches stream `key` within `timeout` seconds."""
    def present():
        return set(sids) <= {f["call_sid"] for _, f in stream_entries(client, key)}
    assert wait_for(present, timeout, 0.2), "spooled events were not replayed into Redis"


def test_503_when_redis_down_and_spool_full(start_ingest, private_redis):
    # The smallest spool the ingest allows (1 MiB); each event carries ~30 KB.
    ing = start_ingest(redis_url_=private_redis.url,
                       env={"INGEST_REDIS_TIMEOUT_MS": "300",
                            "INGEST_SPOOL_MAX_BYTES": str(1 << 20)})
    assert ing.post_form(call_params()).status == 204
    private_redis.stop()
    assert ing.get("/readyz").status == 200  # Redis down, spool writable

    acked, status = fill_until_503(ing, 100, 30000)
    assert status == 503, "the spool never filled up"
    assert 20 <= len(acked) <= 40, f"{len(acked)} events of 30 KB fit a 1 MiB spool"
    text = ing.metrics()
    assert metric_sum(text, "calllog_ingest_requests_total", code="503") == 1, text

    private_redis.start()
    assert_replayed(private_redis.client(), ing.events_key, acked)
    assert wait_for(lambda: ing.post_form(call_params()).status == 204, 10)
    assert wait_for(lambda: ing.get("/readyz").status == 200, 10)


def test_503_when_redis_down_and_disk_full(tiny_tmpfs, start_ingest, private_redis):
    ing = start_ingest(redis_url_=private_redis.url, spool_dir=tiny_tmpfs / "spool",
                       env={"INGEST_REDIS_TIMEOUT_MS": "300"})
    private_redis.stop()
    # Leave the spool room for a handful of events only.
    fd = os.open(tiny_tmpfs / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"\0" * 4096) > 0:
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    os.truncate(tiny_tmpfs / "filler", os.path.getsize(tiny_tmpfs / "filler") - 64 * 1024)

    acked, status = fill_until_503(ing, 60, 8000)
    assert status == 503, "writes to a full disk were acknowledged"
    assert len(acked) >= 1
    os.unlink(tiny_tmpfs / "filler")
    private_redis.start()
    assert_replayed(private_redis.client(), ing.events_key, acked)
    assert wait_for(lambda: ing.post_form(call_params()).status == 204, 10)


# ---------------------------------------------------------------------------------------
# Shutdown: SIGTERM drains.

def test_sigterm_finishes_in_flight_request(ingest, rdb):
    params = call_params()
    body, sig = twilio_sign.sign_form(ingest.token, ingest.signed_url(), params)
    head = (f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{ingest.port}\r\n"
            f"Content-Type: {FORM}\r\nContent-Length: {len(body)}\r\n"
            f"X-Twilio-Signature: {sig}\r\nConnection: close\r\n\r\n").encode()
    sock = socket.create_connection(("127.0.0.1", ingest.port), timeout=20)
    try:
        sock.sendall(head + body[:20])
        time.sleep(0.5)  # the server is now inside the request, waiting for its body
        ingest.proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert ingest.running(), "the ingest exited with a request in flight"
        sock.sendall(body[20:])
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    finally:
        sock.close()
    status_line = reply.split(b"\r\n", 1)[0].decode(errors="replace")
    assert re.match(r"HTTP/1\.[01] 204", status_line), \
        f"in-flight request got {reply!r}; ingest log:\n{ingest.log_text()[-3000:]}"
    assert ingest.stop() == 0
    assert [f["call_sid"] for _, f in ingest.events(rdb)] == [params["CallSid"]]


def test_sigterm_under_load_loses_nothing(ingest, rdb):
    stop_at = time.monotonic() + 0.6
    outcomes = []
    lock = threading.Lock()

    def client(k):
        while True:
            sid = "CA" + uuid.uuid4().hex
            try:
                status = ingest.post_form(call_params(call_sid=sid)).status
            except (OSError, http.client.HTTPException):
                return  # refused or closed after SIGTERM: Twilio would retry
            with lock:
                outcomes.append((sid, status))
            if time.monotonic() > stop_at + 5:
                return

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.6)
    ingest.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(30)
    rc = ingest.stop()
    assert rc == 0, ingest.log_text()[-3000:]
    bad = [(sid, s) for sid, s in outcomes if s != 204]
    assert not bad, f"answers other than 204 during the drain: {bad[:5]}"
    in_stream = {f["call_sid"] for _, f in ingest.events(rdb)}
    missing = [sid for sid, _ in outcomes if sid not in in_stream]
    assert len(outcomes) > 0
    assert not missing, f"{len(missing)} acknowledged events are not in the stream"
