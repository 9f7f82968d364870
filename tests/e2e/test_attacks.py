"""test_attacks — calllog-ingest faces the internet: each attack of issue "The public
endpoint under attack", reproduced against the real program and shown harmless.

Attackers connect from 127.0.0.2, the legitimate sender (Twilio) from 127.0.0.1, both to
the ingest on loopback; every attack is bounded in time. The ingest runs with its
default thread count and timeouts here (conftest's start_ingest lowers the threads).
"""

import json
import socket
import threading
import time

import pytest

import twilio_sign
from conftest import call_params, http_request, metric_sum, wait_for

ATTACKER = "127.0.0.2"
DEFAULTS = ("INGEST_THREADS",)  # unset: the documented default


def attacker_socket(port, timeout=30):
    """A connection to the ingest from the attacker's address."""
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((ATTACKER, 0))
    s.connect(("127.0.0.1", port))
    return s


def signed_form_request(ingest, params, extra_headers=b""):
    """The raw bytes of a signed form POST, as Twilio sends it, plus `extra_headers`."""
    body, sig = twilio_sign.sign_form(ingest.token, ingest.signed_url(), params)
    head = (f"POST /twilio/log-call HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\n"
            f"X-Twilio-Signature: {sig}\r\nContent-Length: {len(body)}\r\n")
    return head.encode() + extra_headers + b"\r\n" + body


def status_of(raw):
    """The status code of a raw HTTP answer."""
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/") else None


class Trickler:
    """Attack connections held open in background threads until stop(); each one that
    the ingest closes is opened again at once, as an attacker would."""

    def __init__(self):
        self.stopping = threading.Event()
        self.threads = []
        self.answers = []

    def start(self, n, port, mode):
        for _ in range(n):
            t = threading.Thread(target=self._run, args=(port, mode), daemon=True)
            t.start()
            self.threads.append(t)

    def _run(self, port, mode):
        while not self.stopping.is_set():
            self._hold(port, mode)

    def _hold(self, port, mode):
        try:
            s = attacker_socket(port)
        except OSError:
            time.sleep(0.1)
            return
        try:
            if mode == "body":  # headers at once, then the body one byte a second
                s.sendall(b"POST /twilio/log-call HTTP/1.1\r\nHost: x\r\nContent-Type: "
                          b"application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n")
            while not self.stopping.wait(1.0):
                s.sendall(b"a" if mode == "body" else b"X-Slow: 1\r\n" if mode == "headers"
                          else b"")
        except OSError:
            pass  # the ingest closed it: exactly what should happen
        finally:
            try:
                s.settimeout(0.2)
                self.answers.append(s.recv(200))
            except OSError:
                pass
            s.close()

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(5)


def timed_webhook(ingest):
    """One signed webhook from 127.0.0.1; returns (status, seconds)."""
    t0 = time.time()
    res = ingest.post_form(call_params())
    return res.status, time.time() - t0


def test_slow_and_idle_clients_from_one_address_never_starve_webhooks(start_ingest):
    ingest = start_ingest(unset=DEFAULTS)
    attack = Trickler()
    attack.start(150, ingest.port, "headers")
    attack.start(150, ingest.port, "idle")
    attack.start(64, ingest.port, "body")
    try:
        time.sleep(2)  # every attacker connected and holding
        worst = 0.0
        for _ in range(12):
            status, secs = timed_webhook(ingest)
            assert status == 204
            worst = max(worst, secs)
            time.sleep(0.5)
        print(f"\nworst webhook latency under 364 attacking connections: {worst * 1000:.0f} ms")
        assert worst < 1.0, worst
    finally:
        attack.stop()
    m = ingest.metrics()
    assert metric_sum(m, "calllog_ingest_refusals_total", reason="too_many_from_address") > 0
    slow = metric_sum(m, "calllog_ingest_refusals_total", reason="body_too_slow") or 0
    assert slow > 0, "body tricklers are cut off at the request deadline"


def test_a_body_trickled_a_byte_a_second_is_cut_off_at_the_deadline(start_ingest):
    ingest = start_ingest(unset=DEFAULTS, env={"INGEST_REQUEST_TIMEOUT_MS": "2000"})
    s = attacker_socket(ingest.port)
    s.sendall(b"POST /twilio/log-call HTTP/1.1\r\nHost: x\r\nContent-Type: "
              b"application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n")
    t0, answer = time.time(), b""
    try:
        while not answer and time.time() - t0 < 15:
            s.sendall(b"a")
            s.settimeout(1.0)
            try:
                answer = s.recv(200)
            except socket.timeout:
                pass
    finally:
        s.close()
    assert status_of(answer) == 408, answer
    assert time.time() - t0 < 2 + 2 + 1, "the body deadline, plus one read at most"


def test_deeply_nested_signed_json_is_refused_not_a_crash(ingest):
    deep = b"[" * 5000 + b"]" * 5000
    doc = b'{"CallSid":"CA1","CallStatus":"completed","x":' + deep + b"}"
    res = ingest.post_json(None, raw=doc)
    assert res.status == 400 and b"json_too_deep" in res.body, res
    assert ingest.get("/healthz").status == 200
    ok = ingest.post_json(None, raw=b'{"CallSid":"CA2","CallStatus":"completed",'
                                    b'"x":[[[{"a":[1]}]]]}')
    assert ok.status == 204, ok


def test_a_valid_callback_with_a_non_utf8_header_is_accepted(ingest, rdb):
    s = socket.create_connection(("127.0.0.1", ingest.port), timeout=10)
    params = call_params()
    s.sendall(signed_form_request(ingest, params,
                                  b"I-Twilio-Idempotency-Token: caf\xe9-\xff\xfe\r\n"))
    answer = s.recv(500)
    s.close()
    assert status_of(answer) == 204, answer
    ev = json.loads(ingest.events(rdb)[-1][1]["event"])
    assert ev["idempotency_token"].startswith("caf\ufffd"), ev


def test_a_flood_of_unsigned_requests_cannot_fill_the_log(ingest):
    conn = None
    n = 3000
    for i in range(n):
        res = http_request(ingest.port, "POST", "/twilio/log-call", body=b"CallSid=CA1",
                           headers={"Content-Type": "application/x-www-form-urlencoded"},
                           conn=conn)
        assert res.status == 403
    refused_lines = [ln for ln in ingest.log_lines() if '"webhook answered"' in ln]
    assert len(refused_lines) < 600, f"{len(refused_lines)} log lines for {n} refusals"
    assert any('"log_lines_suppressed"' in ln for ln in refused_lines) or len(refused_lines) < n
    m = ingest.metrics()
    assert metric_sum(m, "calllog_ingest_refusals_total", reason="bad_signature") == n, \
        "metrics count every refusal"


def raw_exchange(port, data, timeout=10):
    """Sends raw bytes, returns the raw answer."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        chunks = []
        while True:
            try:
                c = s.recv(4096)
            except (socket.timeout, ConnectionResetError):
                break
            if not c:
                break
            chunks.append(c)
            if b"\r\n\r\n" in b"".join(chunks):
                break
        return b"".join(chunks)
    finally:
        s.close()


@pytest.mark.parametrize("headers", [
    "Content-Length: 5\r\nContent-Length: 500\r\n",
    "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
])
def test_ambiguous_request_framing_is_refused(ingest, headers):
    answer = raw_exchange(ingest.port,
                          (f"POST /twilio/log-call HTTP/1.1\r\nHost: x\r\nContent-Type: "
                           f"application/x-www-form-urlencoded\r\n{headers}\r\nCallSid=CA1")
                          .encode())
    assert status_of(answer) == 400, answer


def test_the_http_servers_own_refusals_are_logged_and_counted(ingest):
    answers = {
        "not_found": raw_exchange(ingest.port, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"),
        "huge_headers": raw_exchange(ingest.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "
                                     + b"a" * 70000 + b"\r\n\r\n"),
    }
    assert status_of(answers["not_found"]) == 404, answers
    m = ingest.metrics()
    assert metric_sum(m, "calllog_ingest_refusals_total", reason="http_404") >= 1, m
    text = ingest.log_text()
    assert "refused by the http server" in text, text[-2000:]


def test_sigterm_stops_accepting_at_once_and_exits_0(start_ingest):
    ingest = start_ingest(unset=DEFAULTS, env={"INGEST_REQUEST_TIMEOUT_MS": "2000"})
    attack = Trickler()
    attack.start(20, ingest.port, "body")
    time.sleep(1)
    ingest.proc.send_signal(15)
    time.sleep(0.3)
    with pytest.raises(OSError):
        for _ in range(20):  # every new connection is refused
            socket.create_connection(("127.0.0.1", ingest.port), timeout=1).close()
            time.sleep(0.05)
    try:
        rc = ingest.proc.wait(15)
    finally:
        attack.stop()
    assert rc == 0, ingest.log_text()[-3000:]


def fill(directory):
    """Fills the file system of `directory` to the last byte."""
    try:
        with open(directory / "filler", "wb") as f:
            while True:
                f.write(b"x" * 4096)
                f.flush()
    except OSError:
        pass  # full: the close's flush fails too


def test_readyz_says_not_ready_when_nothing_can_take_an_event(start_ingest, tiny_tmpfs):
    ingest = start_ingest(redis_url_="redis://:wrong-password@127.0.0.1:1/0",
                          spool_dir=str(tiny_tmpfs / "spool"))
    res = ingest.get("/readyz")
    doc = json.loads(res.body)
    assert res.status == 200 and doc["spool"] == "ok" and doc["redis"] != "ok", doc
    fill(tiny_tmpfs)
    res = ingest.get("/readyz")
    doc = json.loads(res.body)
    assert res.status == 503, doc
    assert "No space left on device" in doc["spool"], doc
    assert "wrong-password" not in res.body.decode()
    answer = ingest.post_form(call_params())
    assert answer.status == 503, answer
    errors = [ln for ln in ingest.log_lines() if "spool append failed" in ln]
    assert errors and "No space left on device" in errors[-1], errors


def test_readyz_names_a_wrong_redis_password(start_ingest, tmp_path):
    import subprocess
    from conftest import free_port
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                               "--requirepass", "right-password", "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, 10)
        ingest = start_ingest(redis_url_=f"redis://:wrong-password@127.0.0.1:{port}/0")
        doc = json.loads(ingest.get("/readyz").body)
        assert doc["redis"] != "ok" and "wrong-password" not in doc["redis"], doc
        assert "WRONGPASS" in doc["redis"] or "invalid" in doc["redis"], doc
        assert doc["ready"] is True and doc["spool"] == "ok", "the spool still takes events"
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture
def nginx_in_front(tmp_path):
    """Factory: nginx running deploy/nginx/calllog.conf in front of an ingest port.
    Returns nginx's port; stopped at the end of the test."""
    import shutil
    import subprocess
    from conftest import ROOT, free_port
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not shutil.which(nginx):
        pytest.skip("nginx not installed (deploy/install-deps.sh installs nginx-light)")
    procs = []

    def start(ingest_port):
        port = free_port()
        d = tmp_path / "nginx"
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (d / sub).mkdir(parents=True, exist_ok=True)
            (d / sub).chmod(0o777)
        site = (ROOT / "deploy" / "nginx" / "calllog.conf").read_text()
        site = site.replace("server 127.0.0.1:8080;", f"server 127.0.0.1:{ingest_port};")
        site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
        (d / "calllog.conf").write_text(site)
        temp = "".join(f"{k}_temp_path {d / v};\n" for k, v in (
            ("client_body", "body"), ("proxy", "proxy"), ("fastcgi", "fastcgi"),
            ("uwsgi", "uwsgi"), ("scgi", "scgi")))
        (d / "nginx.conf").write_text(
            f"daemon off;\npid {d / 'nginx.pid'};\nerror_log {d / 'error.log'};\n"
            "worker_processes 1;\nevents { worker_connections 2048; }\n"
            f"http {{\naccess_log off;\n{temp}include {d / 'calllog.conf'};\n}}\n")
        check = subprocess.run([nginx, "-t", "-c", str(d / "nginx.conf")], capture_output=True,
                               text=True)
        assert check.returncode == 0, check.stderr
        procs.append(subprocess.Popen([nginx, "-c", str(d / "nginx.conf")],
                                      stderr=subprocess.DEVNULL))
        assert wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, 10)
        return port

    yield start
    for p in procs:
        p.terminate()
        p.wait(10)


def test_the_documented_nginx_config_buffers_slow_clients_away(start_ingest, nginx_in_front):
    ingest = start_ingest(unset=DEFAULTS)
    port = nginx_in_front(ingest.port)
    body, sig = twilio_sign.sign_form(ingest.token, ingest.signed_url(), call_params())
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": sig}
    assert http_request(port, "POST", "/twilio/log-call", body=body, headers=headers).status == 204
    assert http_request(port, "GET", "/metrics").status == 404, "only the three routes pass"
    attack = Trickler()
    attack.start(64, port, "body")
    try:
        time.sleep(1)
        for _ in range(5):
            t0 = time.time()
            body, sig = twilio_sign.sign_form(ingest.token, ingest.signed_url(), call_params())
            headers["X-Twilio-Signature"] = sig
            res = http_request(port, "POST", "/twilio/log-call", body=body, headers=headers)
            assert res.status == 204 and time.time() - t0 < 1.0
    finally:
        attack.stop()
    slow = metric_sum(ingest.metrics(), "calllog_ingest_refusals_total", reason="body_too_slow")
    assert not slow, "nginx buffers bodies: the ingest never sees a slow one"
