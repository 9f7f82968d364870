"""test_redis_tls — the ingest and the worker reach a TLS-only Redis through the stunnel
sidecar that deploy/stunnel ships (hiredis 0.14 has no TLS of its own).

A real redis-server listens with TLS only (`--port 0 --tls-port`, a certificate signed by
a CA made here with openssl, a password). A real stunnel runs deploy/stunnel/stunnel-redis.sh,
which renders deploy/stunnel/redis-client.conf.template exactly as the compose profile
`tls` and the Kubernetes component redis-tls do, verifying the server's chain and name.
The real calllog-ingest and calllog-worker talk plain Redis to the tunnel; signed
webhooks go in, the events must be on the TLS Redis's stream, and the worker must
deliver each as one note to the RD Station mock. Plain TCP to the TLS port must fail (so
the traffic really goes through TLS), and a tunnel that trusts another CA, or expects
another name, must fail too: the ingest then spools and /readyz names the Redis error.
"""

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

from conftest import ROOT, free_port, sigterm_and_wait, stream_entries, wait_for
from worker_env import (  # noqa: F401  (fixtures are found by name)
    database_url, db, diagnostics, ingests, new_ingest, new_sid, queues_empty, rd, rd_server,
    seed_standard_contact, send_call, start_worker, tw, tw_server, wait_until)

STUNNEL_SH = ROOT / "deploy" / "stunnel" / "stunnel-redis.sh"
PASSWORD = "tls-redis-password-0123"
CALLS = 5


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(d, name):
    """A self-signed CA in directory d: <name>.key, <name>.crt."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2",
            "-subj", f"/CN=calllog e2e {name}", cwd=d)
    return d / f"{name}.crt"


def make_server_cert(d, ca):
    """server.key/server.crt for localhost and 127.0.0.1, signed by CA `ca`."""
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=d)
    openssl("x509", "-req", "-in", "server.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext", cwd=d)


def listening(port):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Proc:
    """A background program with its output in a file."""

    def __init__(self, argv, log, env=None):
        self.log = Path(log)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env)

    def text(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self):
        if self.proc.poll() is None:
            sigterm_and_wait(self.proc, 10)


@pytest.fixture
def tls_redis(tmp_path):
    """A redis-server with TLS only and a password; yields (port, pki dir, client)."""
    if not shutil.which("redis-server") or not shutil.which("openssl"):
        pytest.fail("redis-server and openssl are needed (deploy/install-deps.sh)")
    pki = tmp_path / "pki"
    pki.mkdir()
    make_ca(pki, "ca")
    make_ca(pki, "other-ca")
    make_server_cert(pki, "ca")
    port = free_port()
    server = Proc(["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                   "--tls-cert-file", str(pki / "server.crt"), "--tls-key-file", str(pki / "server.key"),
                   "--tls-ca-cert-file", str(pki / "ca.crt"), "--tls-auth-clients", "no",
                   "--requirepass", PASSWORD, "--dir", str(tmp_path), "--save", "",
                   "--appendonly", "yes", "--daemonize", "no"], tmp_path / "redis-tls.log")
    client = redis.Redis(host="127.0.0.1", port=port, password=PASSWORD, ssl=True,
                         ssl_ca_certs=str(pki / "ca.crt"), ssl_cert_reqs="required",
                         decode_responses=True, socket_timeout=5)

    def up():
        if server.proc.poll() is not None:
            pytest.fail("redis-server (TLS) exited: " + server.text()[-3000:])
        try:
            return client.ping()
        except redis.exceptions.RedisError:
            return False

    if not wait_for(up, 15, 0.1):
        pytest.fail("the TLS redis-server did not answer: " + server.text()[-3000:])
    yield port, pki, client
    server.stop()


@pytest.fixture
def start_tunnel(tmp_path):
    """Factory: start_tunnel(tls_port, ca_file, host="localhost") → (plain port, Proc):
    stunnel through deploy/stunnel/stunnel-redis.sh, listening once it returns."""
    if not shutil.which("stunnel"):
        pytest.fail("stunnel is needed (Debian package stunnel4, deploy/install-deps.sh)")
    started = []

    def start(tls_port, ca_file, host="localhost"):
        n = len(started)
        port = free_port()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "REDIS_TLS_CONNECT": f"127.0.0.1:{tls_port}", "REDIS_TLS_HOST": host,
               "REDIS_TLS_CA_FILE": str(ca_file), "STUNNEL_ACCEPT": f"127.0.0.1:{port}",
               "STUNNEL_CONF": str(tmp_path / f"stunnel{n}.conf"), "STUNNEL_DEBUG": "5"}
        tunnel = Proc(["sh", str(STUNNEL_SH)], tmp_path / f"stunnel{n}.log", env)
        started.append(tunnel)

        def up():
            if tunnel.proc.poll() is not None:
                pytest.fail("stunnel exited: " + tunnel.text()[-3000:])
            return listening(port)

        if not wait_for(up, 15, 0.05):
            pytest.fail("stunnel did not listen: " + tunnel.text()[-3000:])
        conf = (tmp_path / f"stunnel{n}.conf").read_text()
        assert "verifyChain = yes" in conf and f"checkHost = {host}" in conf, conf
        return port, tunnel

    yield start
    for t in started:
        t.stop()


def plain_client(port):
    return redis.Redis(host="127.0.0.1", port=port, password=PASSWORD, decode_responses=True,
                       socket_timeout=3, socket_connect_timeout=3)


def test_ingest_and_worker_through_stunnel(tls_redis, start_tunnel, rd, db, key_prefix,
                                           new_ingest, start_worker):
    started = time.monotonic()
    tls_port, pki, tls_client = tls_redis

    # Plain text to the TLS port gets no answer: TLS is the only way in.
    with pytest.raises(redis.exceptions.ConnectionError):
        plain_client(tls_port).ping()

    port, tunnel = start_tunnel(tls_port, pki / "ca.crt")
    assert plain_client(port).ping() is True
    url = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"

    deal, _ = seed_standard_contact(rd)
    ingest = new_ingest(redis_url_=url)
    ready = json.loads(ingest.get("/readyz").body)
    assert ready["ready"] is True and ready["redis"] == "ok", ready

    sids = [new_sid() for _ in range(CALLS)]
    for sid in sids:
        send_call(ingest, sid, "completed")
    events = f"{key_prefix}:events"
    landed = stream_entries(tls_client, events)
    assert sorted(f["call_sid"] for _, f in landed) == sorted(sids), landed
    assert json.loads(ingest.get("/readyz").body)["spool_depth"] == 0

    worker = start_worker("v1", env={"REDIS_URL": url})
    diag = diagnostics(rd, db, tls_client, key_prefix, [worker])

    def delivered():
        states = db.states(sids)
        return len(states) == CALLS and set(states.values()) == {"delivered"}

    wait_until(delivered, 30, f"{CALLS} calls delivered through the tunnel", diag)
    notes = {sid: rd.notes_of(sid) for sid in sids}
    assert all(len(n) == 1 and n[0]["deal_id"] == deal for n in notes.values()), notes
    wait_until(lambda: queues_empty(tls_client, key_prefix), 20, "the TLS Redis's queues empty", diag)
    assert tls_client.xinfo_groups(events)[0]["name"] == "calllog-workers"
    print(f"REDIS-TLS sent={CALLS} landed={len(landed)} delivered="
          f"{sum(len(n) for n in notes.values())} in {time.monotonic() - started:.1f} s")


def test_tunnel_refuses_a_server_it_cannot_verify(tls_redis, start_tunnel, key_prefix,
                                                 new_ingest):
    tls_port, pki, tls_client = tls_redis

    # Another CA's tunnel: the handshake fails, so the ingest spools and says why.
    port, tunnel = start_tunnel(tls_port, pki / "other-ca.crt")
    with pytest.raises(redis.exceptions.ConnectionError):
        plain_client(port).ping()
    ingest = new_ingest(redis_url_=f"redis://:{PASSWORD}@127.0.0.1:{port}/0")
    sid = new_sid()
    send_call(ingest, sid, "completed")  # accepted: made durable in the spool

    def spooled():
        doc = json.loads(ingest.get("/readyz").body)
        return doc if doc["spool_depth"] >= 1 else None

    ready = wait_for(spooled, 10, 0.1)
    assert ready, ingest.get("/readyz").body
    assert ready["ready"] is True and ready["spool"] == "ok", ready
    assert ready["redis"] != "ok", ready
    assert stream_entries(tls_client, f"{key_prefix}:events") == []
    assert wait_for(lambda: "certificate verify failed" in tunnel.text(), 5), tunnel.text()[-2000:]

    # The right CA but another name: checkHost refuses it as well.
    port2, tunnel2 = start_tunnel(tls_port, pki / "ca.crt", host="redis.wrong.example")
    with pytest.raises(redis.exceptions.ConnectionError):
        plain_client(port2).ping()
    assert wait_for(lambda: "Subject checks failed" in tunnel2.text(), 5), tunnel2.text()[-2000:]
    print(f"REDIS-TLS wrong CA: spooled={ready['spool_depth']} landed=0 redis={ready['redis']!r}")
