"""conftest — fixtures for the end-to-end tests: real programs, real Redis, loopback only.

The programs come from $CALLLOG_BIN_DIR (default build/bin, relative to the repository
root), so tests/run.sh runs this directory once against the Release build and once
against the ASan+UBSan build. Redis is $CALLLOG_TEST_REDIS_URL (tests/lib/services.sh
starts one); when it is unset, a private redis-server is started for the session so
`python3 -m pytest tests/e2e` also works on its own. Every test gets its own
CALLLOG_KEY_PREFIX, so tests share one Redis without seeing each other's keys.

`start_ingest(...)` starts calllog-ingest on free ports, waits for GET /healthz, and at
the end of the test stops it with SIGTERM and checks that it exits 0 within 15 s (so a
sanitizer report at exit, or a hang on shutdown, fails the test that caused it).
"""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest
import redis

import twilio_sign

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TOKEN = "e2e-primary-auth-token-0123456789"
PUBLIC_BASE_URL = "https://hooks.calllog-e2e.example.com"
WEBHOOK_PATH = "/twilio/log-call"
STOP_TIMEOUT_S = 15

# Settings that must not leak from the caller's environment into a program under test.
_SETTING_PREFIXES = ("INGEST_", "TWILIO_", "RDSTATION_", "WORKER_", "RETRY_", "LOG_",
                     "RECORDING")
_SETTING_NAMES = ("REDIS_URL", "CALLLOG_KEY_PREFIX", "PUBLIC_BASE_URL", "METRICS_LISTEN",
                  "DATABASE_URL", "ALERT_WEBHOOK_URL", "REDIS_URL_FILE", "DATABASE_URL_FILE",
                  "ALERT_WEBHOOK_URL_FILE", "REDIS_SENTINELS", "REDIS_SENTINEL_MASTER",
                  "REDIS_SENTINEL_PASSWORD", "REDIS_SENTINEL_PASSWORD_FILE",
                  "REDIS_MIN_REPLICAS_ACK", "REDIS_WAIT_TIMEOUT_MS")

# Settings whose whole value is a secret, and URL settings whose password (and, for the
# webhook, path and query) are; each may also come from NAME_FILE.
SECRET_SETTINGS = ("TWILIO_AUTH_TOKEN", "TWILIO_AUTH_TOKEN_SECONDARY", "TWILIO_API_KEY_SECRET",
                   "RDSTATION_TOKEN", "RDSTATION_CLIENT_SECRET", "RDSTATION_REFRESH_TOKEN",
                   "REDIS_SENTINEL_PASSWORD", "RECORDING_LINK_SECRET")
SECRET_URL_SETTINGS = ("REDIS_URL", "DATABASE_URL", "ALERT_WEBHOOK_URL")


def bin_dir():
    """The directory holding the programs under test."""
    d = Path(os.environ.get("CALLLOG_BIN_DIR", "build/bin"))
    return d if d.is_absolute() else ROOT / d


def bin_path(name):
    """Path of program `name`; fails the test when it has not been built."""
    p = bin_dir() / name
    if not os.access(p, os.X_OK):
        pytest.fail(f"{p} is missing: build the project first (cmake --build build)")
    return p


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(extra=None, unset=()):
    """os.environ without calllog settings, plus `extra`, minus `unset`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(_SETTING_PREFIXES) and k not in _SETTING_NAMES}
    env.update(extra or {})
    for k in unset:
        env.pop(k, None)
    return env


def _setting_value(env, name):
    """NAME's value in `env`, or the contents of the file NAME_FILE names (one trailing
    newline removed), or None."""
    value = env.get(name)
    if not value and env.get(name + "_FILE"):
        try:
            value = Path(env[name + "_FILE"]).read_text()
        except OSError:
            return None
        value = value[:-1] if value.endswith("\n") else value
    return value or None


def configured_secrets(env):
    """Every secret a program started with `env` was given, none of which may ever appear
    in its log: the secret settings' values (also when read from NAME_FILE), the
    passwords inside REDIS_URL and DATABASE_URL, and the path, query and longer path
    segments of ALERT_WEBHOOK_URL (a Slack webhook's path is its secret). Strings under
    6 characters are left out: they would match by chance."""
    found = [_setting_value(env, name) for name in SECRET_SETTINGS]
    for name in SECRET_URL_SETTINGS:
        value = _setting_value(env, name)
        if not value:
            continue
        found += re.findall(r"password=(\S+)", value)  # libpq key=value form
        url = urllib.parse.urlsplit(value)
        found.append(url.password)
        if name == "ALERT_WEBHOOK_URL":
            if url.path not in ("", "/"):
                found.append(url.path)
                found += [seg for seg in url.path.split("/") if len(seg) >= 12]
            found.append(url.query)
    return sorted({s for s in found if s and len(s) >= 6})


def leaked_secrets(env, text, extra=()):
    """The configured secrets of `env` (and the strings of `extra`) that appear in
    `text`, each shortened to its first characters for a failure message."""
    return [f"{s[:6]}…" for s in sorted(set(configured_secrets(env)) | set(extra)) if s in text]


def wait_for(predicate, timeout, interval=0.05):
    """Polls `predicate` until it returns a true value or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


class RedisServer:
    """A private redis-server (AOF, fsync `fsync`: always by default) in its own
    directory, for tests that stop and restart Redis. stop() is SIGTERM, which fsyncs the
    AOF, so every write Redis acknowledged survives the restart on the same port and
    directory; kill() is SIGKILL."""

    def __init__(self, directory, port=None, fsync="always"):
        self.dir = Path(directory)
        self.port = port or free_port()
        self.fsync = fsync
        self.proc = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout=10):
        self.dir.mkdir(parents=True, exist_ok=True)
        log = open(self.dir / "redis.log", "ab")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.dir), "--appendonly", "yes", "--appendfsync", self.fsync,
             "--save", "", "--daemonize", "no"],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)

        def ready():
            try:
                return client.ping()
            except redis.exceptions.RedisError:
                if self.proc.poll() is not None:
                    raise RuntimeError("redis-server exited: " + self.log_text())
                return False

        if not wait_for(ready, timeout):
            raise RuntimeError("redis-server did not answer PING: " + self.log_text())
        return self

    def stop(self, timeout=10):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout)
        self.proc = None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def log_text(self):
        try:
            return (self.dir / "redis.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def client(self):
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True,
                           socket_timeout=5)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """URL of the Redis the tests share: $CALLLOG_TEST_REDIS_URL, or a private one."""
    url = os.environ.get("CALLLOG_TEST_REDIS_URL")
    if url:
        yield url
        return
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server.url
    server.stop()


@pytest.fixture
def key_prefix(request, redis_url):
    """A CALLLOG_KEY_PREFIX no other test uses; its keys are deleted afterwards."""
    name = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name)[:40]
    prefix = f"e2e-{name}-{uuid.uuid4().hex[:8]}"
    yield prefix
    try:
        r = redis.Redis.from_url(redis_url, socket_timeout=5)
        keys = list(r.scan_iter(match=prefix + ":*", count=1000))
        if keys:
            r.delete(*keys)
    except redis.exceptions.RedisError:
        pass


@pytest.fixture
def rdb(redis_url):
    """A client of the shared Redis with string replies."""
    return redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=5)


def stream_entries(client, key):
    """Every entry of stream `key` as (id, fields) pairs, oldest first."""
    try:
        return client.xrange(key, "-", "+")
    except redis.exceptions.ResponseError:
        return []


class HttpResult:
    """Status, headers (lower-case names) and body of one HTTP exchange."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self):
        return f"HttpResult({self.status}, {self.body[:200]!r})"


def http_request(port, method, path, body=None, headers=None, conn=None, timeout=20):
    """One HTTP/1.1 request to 127.0.0.1:port. Reuses `conn` (keep-alive) when given."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return HttpResult(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        if own:
            conn.close()


def call_params(call_sid=None, status="completed", **extra):
    """A realistic Twilio voice status callback (form parameters)."""
    sid = call_sid or "CA" + uuid.uuid4().hex
    params = {
        "CallSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": "+5511987654321",
        "To": "+551130304040",
        "CallStatus": status,
        "ApiVersion": "2010-04-01",
        "Direction": "inbound",
        "Caller": "+5511987654321",
        "Called": "+551130304040",
        "CallerName": "José da Silva & Cia",
        "CallDuration": "42",
        "Duration": "1",
        "Timestamp": "Tue, 24 Nov 2026 20:00:00 +0000",
        "CallbackSource": "call-progress-events",
        "SequenceNumber": "3",
        "FromCity": "SAO PAULO",
        "FromCountry": "BR",
    }
    params.update(extra)
    return params


class Ingest:
    """A running calllog-ingest and the means to talk to it."""

    def __init__(self, proc, port, metrics_port, base_url, token, prefix, spool_dir,
                 log_path, env):
        self.proc = proc
        self.port = port
        self.metrics_port = metrics_port
        self.base_url = base_url
        self.token = token
        self.prefix = prefix
        self.spool_dir = spool_dir
        self.log_path = log_path
        self.env = env
        self.stopped_rc = None

    @property
    def events_key(self):
        return f"{self.prefix}:events"

    def signed_url(self, path=WEBHOOK_PATH):
        """The URL Twilio would sign for a request to `path` (path + raw query)."""
        return self.base_url + path

    def post_form(self, params, path=WEBHOOK_PATH, token=None, signature=None,
                  content_type="application/x-www-form-urlencoded", headers=None,
                  conn=None, sign_url=None):
        """POSTs form `params` signed with `token` (default: the primary token)."""
        body, sig = twilio_sign.sign_form(token or self.token, sign_url or self.signed_url(path),
                                          params)
        h = {"Content-Type": content_type, "X-Twilio-Signature": signature or sig}
        if signature == "":
            del h["X-Twilio-Signature"]
        h.update(headers or {})
        return http_request(self.port, "POST", path, body=body, headers=h, conn=conn)

    def post_json(self, doc, path=WEBHOOK_PATH, token=None, raw=None, tamper=None):
        """POSTs JSON `doc` (or `raw` bytes) with bodySHA256 in the signed URL.
        `tamper` replaces the body after signing."""
        body = raw if raw is not None else json.dumps(doc).encode("utf-8")
        signed_url, sig = twilio_sign.sign_json(token or self.token, self.signed_url(path), body)
        query_path = signed_url[len(self.base_url):]
        return http_request(self.port, "POST", query_path,
                            body=tamper if tamper is not None else body,
                            headers={"Content-Type": "application/json",
                                     "X-Twilio-Signature": sig})

    def get(self, path, port=None):
        return http_request(port or self.port, "GET", path)

    def metrics(self):
        """The Prometheus text from METRICS_LISTEN."""
        res = http_request(self.metrics_port, "GET", "/metrics")
        assert res.status == 200, res
        return res.body.decode("utf-8")

    def events(self, client):
        return stream_entries(client, self.events_key)

    def log_text(self):
        try:
            return Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""

    def log_lines(self):
        return [ln for ln in self.log_text().splitlines() if ln.strip()]

    def running(self):
        return self.proc.poll() is None

    def stop(self, timeout=STOP_TIMEOUT_S):
        """Sends SIGTERM and returns the exit status (None if it did not exit in time,
        in which case the process is killed)."""
        if self.stopped_rc is not None or self.proc.poll() is not None:
            self.stopped_rc = self.proc.poll() if self.stopped_rc is None else self.stopped_rc
            return self.stopped_rc
        self.stopped_rc = sigterm_and_wait(self.proc, timeout)
        return self.stopped_rc


def sigterm_and_wait(proc, timeout):
    """Sends SIGTERM and returns the exit status, or None (after SIGKILL) when the
    process did not exit within `timeout` seconds."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def parse_metrics(text):
    """Prometheus text → list of (name, {label: value}, float)."""
    out = []
    line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)')
    label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = line_re.match(line)
        if not m:
            continue
        labels = dict(label_re.findall(m.group(3) or ""))
        out.append((m.group(1), labels, float(m.group(4))))
    return out


def metric_sum(text, name, **labels):
    """Sum of every series of `name` whose labels include `labels`; None if no series."""
    total = None
    for n, ls, v in parse_metrics(text):
        if n == name and all(ls.get(k) == str(val) for k, val in labels.items()):
            total = (total or 0.0) + v
    return total


@pytest.fixture
def start_ingest(request, redis_url, key_prefix, tmp_path):
    """Factory: start_ingest(env=..., unset=..., args=..., redis_url_=..., spool_dir=...)
    → Ingest, healthy. Every ingest still running at the end of the test is stopped
    with SIGTERM and must exit 0 within 15 s."""
    started = []

    def start(env=None, unset=(), args=(), redis_url_=None, public_base_url=PUBLIC_BASE_URL,
              token=DEFAULT_TOKEN, spool_dir=None, wait=True):
        port, metrics_port = free_port(), free_port()
        while metrics_port == port:
            metrics_port = free_port()
        n = len(started)
        spool = Path(spool_dir) if spool_dir else tmp_path / f"spool{n}"
        spool.mkdir(parents=True, exist_ok=True)
        log_fd, log_path = tempfile.mkstemp(prefix=f"ingest{n}-", suffix=".log",
                                            dir=tmp_path)
        base = public_base_url.replace("{port}", str(port))
        settings = {
            "REDIS_URL": redis_url_ or redis_url,
            "CALLLOG_KEY_PREFIX": key_prefix,
            "INGEST_LISTEN": f"127.0.0.1:{port}",
            "PUBLIC_BASE_URL": base,
            "TWILIO_AUTH_TOKEN": token,
            "METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
            "INGEST_SPOOL_DIR": str(spool),
            "INGEST_THREADS": "8",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "info",
        }
        settings.update(env or {})
        full_env = clean_env(settings, unset)
        proc = subprocess.Popen([str(bin_path("calllog-ingest")), *args], env=full_env,
                                stdout=log_fd, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        os.close(log_fd)
        ing = Ingest(proc, port, metrics_port, base, token, key_prefix, spool, log_path,
                     full_env)
        started.append(ing)
        if wait:
            def healthy():
                if proc.poll() is not None:
                    pytest.fail(f"calllog-ingest exited with {proc.returncode}:\n"
                                + ing.log_text()[-4000:])
                try:
                    return ing.get("/healthz").status == 200
                except OSError:
                    return False

            if not wait_for(healthy, 20, 0.05):
                pytest.fail("calllog-ingest did not answer /healthz within 20 s:\n"
                            + ing.log_text()[-4000:])
        return ing

    yield start

    problems = []
    for ing in started:
        rc = ing.stop()
        if rc != 0:
            problems.append(f"calllog-ingest on port {ing.port} exited with {rc} after "
                            f"SIGTERM (None = still running after {STOP_TIMEOUT_S} s); "
                            f"log tail:\n{ing.log_text()[-4000:]}")
        leaked = leaked_secrets(ing.env, ing.log_text())
        if ing.token in ing.log_text():
            problems.append("the auth token appears in calllog-ingest's log")
        elif leaked:
            problems.append(f"configured secrets ({', '.join(leaked)}) appear in "
                            f"calllog-ingest's log")
    if problems:
        pytest.fail("\n".join(problems))


@pytest.fixture
def ingest(start_ingest):
    """A calllog-ingest with the default settings."""
    return start_ingest()


@pytest.fixture
def private_redis(tmp_path):
    """A private redis-server this test may stop and restart."""
    server = RedisServer(tmp_path / "private-redis").start()
    yield server
    server.stop()


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 512 KiB tmpfs (root only): a disk that really fills up."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k,mode=0755", "tmpfs",
                        str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)
