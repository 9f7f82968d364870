"""worker_env — fixtures and helpers for calllog-worker's end-to-end tests.

Design §4: the worker runs as the real program against a real Redis and a real
PostgreSQL; only the two third-party HTTP APIs are mocked, by tests/mocks/
(rdstation_mock.py and twilio_mock.py, see tests/mocks/README.md). This module gives
test_worker.py what it needs on top of conftest.py (Redis, key prefix, ingest):

- `database_url`: $CALLLOG_TEST_DATABASE_URL, or a private PostgreSQL started with
  tests/lib/services.sh for the session when it is unset;
- `db`: the migration in deploy/supabase/migrations/ applied from scratch (schema
  `calllog` dropped first, so the tests of this module must not run concurrently, which
  pytest does not do) and a small client to read calllog.deliveries;
- `rd`, `tw`: the mocks, started once per session and reset before every test;
- `start_worker`: starts calllog-worker with fast timings and a unique consumer name and
  metrics port, waits until it serves /metrics, and at the end of the test stops every
  worker still running with SIGTERM, which must end in exit status 0 (a hang, a crash or
  a sanitizer report at exit fails the test that caused it). Configured secrets must
  never appear in a worker's log (conftest.configured_secrets: the secret settings, URL
  passwords, ALERT_WEBHOOK_URL's path and query, values read from *_FILE).
"""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path

import psycopg2
import psycopg2.extras
import pytest

from conftest import (ROOT, STOP_TIMEOUT_S, bin_path, call_params, clean_env, free_port,
                      leaked_secrets, sigterm_and_wait,
                      http_request, metric_sum, stream_entries, wait_for)

MIGRATIONS = ROOT / "deploy" / "supabase" / "migrations"
MOCKS = ROOT / "tests" / "mocks"
SERVICES_SH = ROOT / "tests" / "lib" / "services.sh"
PY = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable

# Identities the mocks accept (their defaults) and the worker is configured with.
RD_USER_ID = "5e0000000000000000000001"
RD_STAGE_ID = "5e00000000000000000000a3"  # "Identificação do interesse", seeded by the mock
RD_V1_TOKEN = "mock-v1-token"
RD_CLIENT_ID = "mock-client-id"
RD_CLIENT_SECRET = "mock-client-secret"
RD_REFRESH_TOKEN = "mock-refresh-token"
TW_ACCOUNT_SID = "AC" + "0" * 31 + "1"
TW_API_KEY_SID = "SK" + "0" * 31 + "1"
TW_API_KEY_SECRET = "mock-api-key-secret"
SECRETS = (RD_V1_TOKEN, RD_CLIENT_SECRET, RD_REFRESH_TOKEN, TW_API_KEY_SECRET)

# The caller every test uses unless it needs several, as RD accounts hold it, and our line.
CALLER = "+5511971730783"
CALLER_AS_STORED = "(11) 97173-0783"
OUR_NUMBER = "+551130001000"

WORKER_STOP_TIMEOUT_S = 20


# ---------------------------------------------------------------------------------------
# Small helpers.

def new_sid():
    """A fresh Twilio CallSid (CA + 32 hex digits)."""
    return "CA" + uuid.uuid4().hex


def marker(sid):
    """The marker every RD entry of call `sid` carries."""
    return f"[calllog:{sid}]"


def wait_until(predicate, timeout, what, diag=None, interval=0.1):
    """Polls `predicate` until it returns a true value; fails the test with `what` (and
    whatever `diag()` returns) when `timeout` seconds pass first. Returns the value."""
    value = wait_for(predicate, timeout, interval)
    if not value:
        extra = ""
        if diag is not None:
            try:
                extra = "\n" + str(diag())
            except Exception as exc:  # diagnostics must not hide the real failure
                extra = f"\n(diagnostics failed: {exc!r})"
        pytest.fail(f"timed out after {timeout} s waiting for {what}{extra}")
    return value


def queue_state(rdb, prefix):
    """Depths of the worker's Redis keys: events backlog, group pending, retry, dead."""
    events = f"{prefix}:events"
    pending = 0
    try:
        info = rdb.xpending(events, "calllog-workers")
        pending = info["pending"] if isinstance(info, dict) else info[0]
    except Exception:  # no stream or no group yet
        pending = 0
    return {"events": rdb.xlen(events) if rdb.exists(events) else 0,
            "pending": pending,
            "retry": rdb.zcard(f"{prefix}:retry"),
            "dead": rdb.xlen(f"{prefix}:dead") if rdb.exists(f"{prefix}:dead") else 0}


def queues_empty(rdb, prefix):
    """True when nothing is left on the events stream, pending, or on the retry set."""
    q = queue_state(rdb, prefix)
    return q["events"] == 0 and q["pending"] == 0 and q["retry"] == 0


def send_call(ingest, sid, status="completed", caller=CALLER, ours=OUR_NUMBER,
              direction="inbound", duration="155", **extra):
    """Posts one signed Twilio status callback for call `sid` to the ingest; it must be
    accepted (204, or 200 with an empty TwiML answer)."""
    frm, to = (caller, ours) if direction == "inbound" else (ours, caller)
    params = call_params(sid, status, From=frm, To=to, Caller=frm, Called=to,
                         Direction=direction, CallDuration=duration, **extra)
    res = ingest.post_form(params)
    assert res.status in (200, 204), f"ingest refused {status} of {sid}: {res!r}"
    return params


def rfc2822(t):
    """Epoch seconds as Twilio writes times."""
    return time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(t))


def seed_twilio_call(tw, sid=None, status="completed", ended=None, parent=None, frm=CALLER,
                     to=OUR_NUMBER, direction="inbound", duration="42"):
    """Seeds one call in the Twilio mock's Calls list, as Twilio shows it once it ended
    (at `ended`, default now; unfinished statuses have no end_time). Returns its SID."""
    sid = sid or new_sid()
    ended = time.time() if ended is None else ended
    tw.seed_call({
        "sid": sid, "status": status, "direction": direction, "from": frm, "to": to,
        "parent_call_sid": parent, "start_time": rfc2822(ended - 60),
        "end_time": rfc2822(ended) if status not in ("in-progress", "ringing") else None,
        "duration": duration if status == "completed" else ""})
    return sid


def run_admin(args, env, timeout=30):
    """Runs calllog-admin with `args`; returns the CompletedProcess (text)."""
    return subprocess.run([str(bin_path("calllog-admin")), *args], env=env,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


# ---------------------------------------------------------------------------------------
# PostgreSQL.

def _bash_services(script, *args):
    """Runs `script` in bash with tests/lib/services.sh sourced."""
    subprocess.run(["bash", "-c", f'. "{SERVICES_SH}" && {script}', "services", *args],
                   check=True, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def database_url():
    """$CALLLOG_TEST_DATABASE_URL, or a private PostgreSQL for the session."""
    url = os.environ.get("CALLLOG_TEST_DATABASE_URL")
    if url:
        yield url
        return
    directory = tempfile.mkdtemp(prefix="calllog-e2e-pg.")
    os.chmod(directory, 0o755)  # the postgres user must reach its data directory
    port = str(free_port())
    try:
        _bash_services('services_pg_start "$1/pg" "$2" && services_pg_createdb "$2" calllog_test',
                       directory, port)
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"could not start PostgreSQL: {exc.stdout}{exc.stderr}")
    yield f"postgresql://postgres@127.0.0.1:{port}/calllog_test"
    _bash_services('services_pg_stop "$1/pg"; rm -rf "$1"', directory)


def apply_migrations(url):
    """Applies every migration file, in name order, with psql (as the docs say)."""
    for sql in sorted(MIGRATIONS.glob("*.sql")):
        res = subprocess.run(["psql", url, "-q", "-v", "ON_ERROR_STOP=1", "-f", str(sql)],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, f"{sql.name} failed: {res.stderr}"


class Ledger:
    """Read access to calllog.deliveries (and the odd statement a test needs)."""

    def __init__(self, url):
        self.url = url
        self.conn = psycopg2.connect(url)
        self.conn.autocommit = True

    def query(self, sql, *params):
        with self.conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(sql, params)
            return [dict(r) for r in cur.fetchall()] if cur.description else []

    def row(self, sid):
        rows = self.query("SELECT * FROM calllog.deliveries WHERE call_sid = %s", sid)
        return rows[0] if rows else None

    def rows(self, sids=None):
        if sids is None:
            return self.query("SELECT * FROM calllog.deliveries ORDER BY call_sid")
        return self.query("SELECT * FROM calllog.deliveries WHERE call_sid = ANY(%s) "
                          "ORDER BY call_sid", list(sids))

    def states(self, sids=None):
        """{call_sid: state}."""
        return {r["call_sid"]: r["state"] for r in self.rows(sids)}

    def close(self):
        self.conn.close()


@pytest.fixture
def db(database_url):
    """Schema `calllog` dropped and the migrations applied afresh; a Ledger on it."""
    admin = psycopg2.connect(database_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SET lock_timeout = '20s'")
        cur.execute("DROP SCHEMA IF EXISTS calllog CASCADE")
    admin.close()
    apply_migrations(database_url)
    ledger = Ledger(database_url)
    yield ledger
    ledger.close()


# ---------------------------------------------------------------------------------------
# The HTTP mocks.

class Mock:
    """A running mock server (tests/mocks/) and its /_mock control API."""

    def __init__(self, name, proc, port, log_path):
        self.name = name
        self.proc = proc
        self.port = port
        self.log_path = log_path

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def call(self, method, path, body=None, timeout=30):
        """One control request; returns (status, parsed JSON or None)."""
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"} if data is not None else {}
        res = http_request(self.port, method, path, body=data, headers=headers,
                           timeout=timeout)
        try:
            doc = json.loads(res.body) if res.body else None
        except ValueError:
            doc = None
        return res.status, doc

    def control(self, method, path, body=None):
        """A control request that must succeed; returns its JSON answer."""
        status, doc = self.call(method, path, body)
        assert 200 <= status < 300, f"{self.name} {method} {path} -> {status} {doc}"
        return doc

    def reset(self):
        self.control("POST", "/_mock/reset", {})

    def requests(self, method=None, path=None, since=None):
        """The request log (API calls only), oldest first."""
        q = {k: v for k, v in (("method", method), ("path", path), ("since", since)) if v}
        suffix = "?" + urllib.parse.urlencode(q) if q else ""
        return self.control("GET", "/_mock/requests" + suffix)["requests"]

    def fault(self, **spec):
        """Arms one fault rule (see tests/mocks/README.md)."""
        return self.control("POST", "/_mock/faults", spec)

    def clear_faults(self):
        self.control("DELETE", "/_mock/faults")

    def latency(self, ms, jitter_ms=0):
        self.control("POST", "/_mock/latency", {"ms": ms, "jitter_ms": jitter_ms})

    def ratelimit(self, limit, window_s, clear=True):
        return self.control("POST", "/_mock/ratelimit",
                            {"limit": limit, "window_s": window_s, "clear": clear})

    # RD Station only.
    def seed_contact(self, spec):
        """Seeds a contact (and its deals); returns {"contact_id", "deal_ids"}."""
        return self.control("POST", "/_mock/contacts", spec)

    def notes(self, deal_id=None):
        suffix = "?" + urllib.parse.urlencode({"deal_id": deal_id}) if deal_id else ""
        return self.control("GET", "/_mock/notes" + suffix)["notes"]

    def notes_of(self, sid):
        """Every RD note that carries call `sid`'s marker."""
        return [n for n in self.notes() if marker(sid) in (n.get("text") or "")]

    def contacts(self):
        return self.control("GET", "/_mock/contacts")["contacts"]

    def deals(self):
        return self.control("GET", "/_mock/deals")["deals"]

    # Twilio only.
    def seed_call(self, spec):
        return self.control("POST", "/_mock/calls", spec)

    def log_text(self):
        try:
            return Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""


def _start_mock(script, name, directory, args=()):
    """Starts tests/mocks/<script> on a free port; returns the Mock once it listens."""
    port_file = Path(directory) / f"{name}.port"
    log_path = Path(directory) / f"{name}.log"
    log = open(log_path, "ab")
    proc = subprocess.Popen([PY, str(MOCKS / script), "--port", "0", "--port-file",
                             str(port_file), *args],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    if not wait_for(lambda: port_file.exists() or proc.poll() is not None, 20):
        proc.kill()
        pytest.fail(f"{script} did not start within 20 s")
    if proc.poll() is not None:
        pytest.fail(f"{script} exited with {proc.returncode}: {log_path.read_text()}")
    return Mock(name, proc, int(port_file.read_text().strip()), log_path)


def _stop_mock(mock):
    if mock.proc.poll() is None:
        mock.proc.send_signal(signal.SIGTERM)
        try:
            mock.proc.wait(10)
        except subprocess.TimeoutExpired:
            mock.proc.kill()
            mock.proc.wait()


@pytest.fixture(scope="session")
def rd_server(tmp_path_factory):
    """The RD Station mock for the session. Its rate limit is off unless a test sets one,
    so only the tests about the limiter depend on the clock; users are strict."""
    mock = _start_mock("rdstation_mock.py", "rdstation", tmp_path_factory.mktemp("rd"),
                       ["--rate-limit", "0", "--user-id", RD_USER_ID])
    yield mock
    _stop_mock(mock)


@pytest.fixture(scope="session")
def tw_server(tmp_path_factory):
    """The Twilio REST mock for the session."""
    mock = _start_mock("twilio_mock.py", "twilio", tmp_path_factory.mktemp("tw"))
    yield mock
    _stop_mock(mock)


@pytest.fixture
def rd(rd_server):
    """The RD Station mock, reset: no data, faults, latency or log; limiter off."""
    rd_server.reset()
    yield rd_server
    rd_server.clear_faults()
    rd_server.latency(0)


@pytest.fixture
def tw(tw_server):
    """The Twilio mock, reset."""
    tw_server.reset()
    return tw_server


def seed_standard_contact(rd, phone=CALLER_AS_STORED, name="Maria Souza"):
    """A contact with a won deal (updated last) and two open deals. Returns the id of the
    open deal updated most recently, the one that must receive the calls' notes, and
    the ids of the others."""
    res = rd.seed_contact({
        "name": name, "phones": [phone],
        "deals": [
            {"name": "Ganho", "status": "won", "updated_at": "2026-11-23T12:00:00Z",
             "closed_at": "2026-11-23T12:00:00Z"},
            {"name": "Aberto antigo", "status": "ongoing", "updated_at": "2026-10-01T00:00:00Z"},
            {"name": "Aberto recente", "status": "ongoing", "updated_at": "2026-11-20T00:00:00Z"},
        ]})
    won, old, recent = res["deal_ids"]
    return recent, [won, old]


# ---------------------------------------------------------------------------------------
# calllog-worker.

class Worker:
    """A running calllog-worker."""

    def __init__(self, proc, name, metrics_port, log_path, env):
        self.proc = proc
        self.name = name
        self.metrics_port = metrics_port
        self.log_path = log_path
        self.env = env
        self.killed = False
        self.stopped_rc = None

    def metrics(self):
        res = http_request(self.metrics_port, "GET", "/metrics", timeout=10)
        assert res.status == 200, res
        return res.body.decode("utf-8")

    def metric(self, name, **labels):
        """Sum of the series of `name` with `labels` (0 when there is none)."""
        return metric_sum(self.metrics(), name, **labels) or 0.0

    def log_text(self):
        try:
            return Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""

    def log_records(self):
        """The JSON log lines as dicts (other lines, e.g. sanitizer output, skipped)."""
        out = []
        for line in self.log_text().splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def running(self):
        return self.proc.poll() is None

    def kill(self):
        """SIGKILL: the worker dies at whatever instruction it is on."""
        self.killed = True
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def wait_stopped(self, timeout=WORKER_STOP_TIMEOUT_S):
        """Waits for the exit after a SIGTERM was sent; returns the status (None when it
        had to be killed)."""
        if self.stopped_rc is None:
            try:
                self.stopped_rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.stopped_rc

    def stop(self, timeout=WORKER_STOP_TIMEOUT_S):
        """SIGTERM; returns the exit status (None when it had to be killed)."""
        if self.stopped_rc is not None:
            return self.stopped_rc
        if self.proc.poll() is not None:
            self.stopped_rc = self.proc.returncode
            return self.stopped_rc
        self.stopped_rc = sigterm_and_wait(self.proc, timeout)
        return self.stopped_rc


def worker_settings(api, redis_url, prefix, database_url, rd, tw, name, metrics_port,
                    enrich=False):
    """The environment of a worker with fast test timings (docs/configuration.md)."""
    env = {
        "REDIS_URL": redis_url,
        "CALLLOG_KEY_PREFIX": prefix,
        "DATABASE_URL": database_url,
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "info",
        "METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
        "WORKER_CONSUMER_NAME": name,
        "WORKER_CONCURRENCY": "4",
        "WORKER_BLOCK_MS": "200",
        "WORKER_CLAIM_IDLE_MS": "1500",
        "WORKER_LEASE_MS": "3000",
        "WORKER_DRAIN_TIMEOUT_MS": "10000",
        "RETRY_BASE_MS": "100",
        "RETRY_MAX_DELAY_MS": "500",
        "RETRY_MAX_ATTEMPTS": "8",
        "RDSTATION_UNKNOWN_OUTCOME_DELAY_MS": "1000",
        "RDSTATION_API": api,
        "RDSTATION_TIMEOUT_MS": "5000",
        "RDSTATION_RATE_LIMIT_PER_MINUTE": "6000",
        "RDSTATION_RATE_BURST": "100",
        "TWILIO_ENRICH": "1" if enrich else "0",
        "TWILIO_ACCOUNT_SID": TW_ACCOUNT_SID,
        "TWILIO_API_KEY_SID": TW_API_KEY_SID,
        "TWILIO_API_KEY_SECRET": TW_API_KEY_SECRET,
        "TWILIO_API_BASE_URL": tw.url,
        "TWILIO_RECONCILE_INTERVAL_MS": "0",  # on in the tests of test_reconcile.py
        "RDSTATION_PHONE_INDEX": "0",  # on in the tests of test_phone_index.py
    }
    if api == "v1":
        env.update({"RDSTATION_TOKEN": RD_V1_TOKEN, "RDSTATION_USER_ID": RD_USER_ID,
                    "RDSTATION_API_BASE_URL": rd.url + "/api/v1"})
    else:
        env.update({"RDSTATION_CLIENT_ID": RD_CLIENT_ID,
                    "RDSTATION_CLIENT_SECRET": RD_CLIENT_SECRET,
                    "RDSTATION_REFRESH_TOKEN": RD_REFRESH_TOKEN,
                    "RDSTATION_OAUTH_URL": rd.url + "/oauth2/token",
                    "RDSTATION_API_BASE_URL": rd.url + "/crm/v2"})
    return env


@pytest.fixture
def ingests():
    """The ingests new_ingest started in this test."""
    return []


@pytest.fixture
def new_ingest(start_ingest, ingests):
    """conftest's start_ingest, remembering each ingest so that start_worker's teardown
    can stop it at the same time as the workers (conftest then checks its exit)."""
    def start(**kwargs):
        ing = start_ingest(**kwargs)
        ingests.append(ing)
        return ing
    return start


@pytest.fixture
def start_worker(redis_url, key_prefix, database_url, db, rd, tw, tmp_path, start_ingest,
                 ingests):
    """Factory: start_worker(api="v1", env=None, unset=(), name=None, enrich=False,
    wait=True) → Worker serving /metrics. Every worker still running at the end of the
    test gets SIGTERM and must exit 0 within 20 s; no configured secret may be logged.
    The ingests of new_ingest get their SIGTERM at the same moment (both drain in
    parallel); conftest's start_ingest then checks that they exited 0."""
    started = []

    def start(api="v1", env=None, unset=(), name=None, enrich=False, wait=True):
        n = len(started)
        name = name or f"w{n}-{uuid.uuid4().hex[:6]}"
        metrics_port = free_port()
        settings = worker_settings(api, redis_url, key_prefix, database_url, rd, tw, name,
                                   metrics_port, enrich)
        settings.update(env or {})
        full_env = clean_env(settings, unset)
        log_fd, log_path = tempfile.mkstemp(prefix=f"worker-{name}-", suffix=".log",
                                            dir=tmp_path)
        proc = subprocess.Popen([str(bin_path("calllog-worker"))], env=full_env,
                                stdout=log_fd, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        os.close(log_fd)
        w = Worker(proc, name, metrics_port, log_path, full_env)
        started.append(w)
        if wait:
            def ready():
                if proc.poll() is not None:
                    pytest.fail(f"calllog-worker {name} exited with {proc.returncode}:\n"
                                + w.log_text()[-4000:])
                try:
                    return http_request(metrics_port, "GET", "/metrics", timeout=2).status == 200
                except OSError:
                    return False

            if not wait_for(ready, 30, 0.05):
                pytest.fail(f"calllog-worker {name} did not serve /metrics within 30 s:\n"
                            + w.log_text()[-4000:])
        return w

    yield start

    problems = []
    running = [w for w in started if not w.killed and w.running()]
    for proc in [w.proc for w in running] + [i.proc for i in ingests if i.running()]:
        proc.send_signal(signal.SIGTERM)
    for ing in ingests:
        try:
            ing.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass  # conftest's teardown reports it
    for w in started:
        if w.killed:
            continue
        rc = w.wait_stopped()
        if rc != 0:
            problems.append(f"calllog-worker {w.name} exited with {rc} after SIGTERM (None = "
                            f"still running after {WORKER_STOP_TIMEOUT_S} s); log tail:\n"
                            f"{w.log_text()[-4000:]}")
    for w in started:
        leaked = leaked_secrets(w.env, w.log_text(), SECRETS)
        if leaked:
            problems.append(f"configured secrets ({', '.join(leaked)}) appear in the log of "
                            f"calllog-worker {w.name}")
    if problems:
        pytest.fail("\n".join(problems))


@pytest.fixture
def admin_env(redis_url, key_prefix, database_url):
    """The environment calllog-admin needs for this test's keys and database."""
    return clean_env({"REDIS_URL": redis_url, "CALLLOG_KEY_PREFIX": key_prefix,
                      "DATABASE_URL": database_url, "LOG_FORMAT": "json"})


def diagnostics(rd=None, ledger=None, rdb=None, prefix=None, workers=()):
    """A callable returning what is worth seeing when a wait times out."""
    def collect():
        parts = []
        if ledger is not None:
            parts.append("deliveries: " + json.dumps(
                [{k: r[k] for k in ("call_sid", "state", "attempts", "reason", "last_error",
                                    "last_http_status", "recovered")}
                 for r in ledger.rows()], default=str)[:3000])
        if rdb is not None and prefix:
            parts.append(f"queues: {queue_state(rdb, prefix)}")
            dead = stream_entries(rdb, f"{prefix}:dead")
            if dead:
                parts.append(f"dead: {dead[:5]}")
        if rd is not None:
            parts.append("rd requests: " + json.dumps(
                [(q["method"], q["path"], q["status"], q["fault"]) for q in rd.requests()][-40:]))
            parts.append("rd notes: " + json.dumps(
                [(n["deal_id"], re.findall(r"\[calllog:[^\]]*\]", n["text"] or ""))
                 for n in rd.notes()])[:2000])
        for w in workers:
            parts.append(f"--- log of {w.name} (rc={w.proc.poll()}):\n{w.log_text()[-3000:]}")
        return "\n".join(parts)
    return collect
