#!/usr/bin/python3
"""bench_recordings — what a recording link costs the ingest (issue 12): bytes streamed
through calllog-ingest against the same bytes fetched straight from the Twilio mock, the
ingest's peak RSS before and after (the audio must never be held whole), the 302 of a
redirecting account, and webhook latency while every media slot is held by a slow
listener against the same webhooks on an idle ingest.

Started by bench_recordings.sh (which provides Redis and the binaries); prints a Markdown
table. Loopback only.
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
import twilio_sign  # noqa: E402

BIN = Path(os.environ["BENCH_BIN_DIR"])
REDIS_URL = os.environ["BENCH_REDIS_URL"]
MEDIA_MIB = int(os.environ.get("BENCH_MEDIA_MIB", "64"))
WEBHOOKS = int(os.environ.get("BENCH_WEBHOOKS", "300"))
SLOTS = 4
SECRET = "bench-recording-link-secret-0123456789"
TOKEN = "8f14e45fceea167a5a36dedd4bea2543"
PUBLIC = "https://calllog.example.com"
AC = "AC" + "0" * 31 + "1"
SK, SK_SECRET = "SK" + "0" * 31 + "1", "mock-api-key-secret"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def control(port, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def token(sid):
    mac = hmac.new(SECRET.encode(), sid.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def download(port, path, headers=None, chunk=1 << 16, pause_s=0.0, stop=None):
    """GETs `path` reading in chunks; returns (status, bytes, seconds)."""
    t0 = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    n = 0
    while True:
        if stop is not None and stop.is_set():
            break
        piece = resp.read(chunk)
        if not piece:
            break
        n += len(piece)
        if pause_s:
            time.sleep(pause_s)
    conn.close()
    return resp.status, n, time.monotonic() - t0


def vm_hwm_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def webhook_latencies(port, n):
    """Sends `n` signed completed callbacks on one keep-alive connection; latencies (ms)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out = []
    for _ in range(n):
        params = {"CallSid": "CA" + uuid.uuid4().hex, "AccountSid": AC, "CallStatus": "completed",
                  "From": "+5511987654321", "To": "+551130304040", "Direction": "inbound",
                  "CallDuration": "42", "ApiVersion": "2010-04-01"}
        body, sig = twilio_sign.sign_form(TOKEN, PUBLIC + "/twilio/log-call", params)
        t0 = time.perf_counter()
        conn.request("POST", "/twilio/log-call", body=body,
                     headers={"Content-Type": "application/x-www-form-urlencoded",
                              "X-Twilio-Signature": sig})
        resp = conn.getresponse()
        resp.read()
        out.append((time.perf_counter() - t0) * 1000)
        assert resp.status == 204, resp.status
    conn.close()
    return out


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main():
    work = Path(tempfile.mkdtemp(prefix="calllog-bench-rec."))
    procs = []
    try:
        tw_port_file = work / "tw.port"
        procs.append(subprocess.Popen(
            ["/usr/bin/python3", str(ROOT / "tests/mocks/twilio_mock.py"), "--port", "0",
             "--port-file", str(tw_port_file), "--quiet"], stderr=subprocess.DEVNULL))
        while not tw_port_file.exists():
            time.sleep(0.05)
        tw = int(tw_port_file.read_text())
        sid, rsid = "CA" + uuid.uuid4().hex, "RE" + uuid.uuid4().hex
        control(tw, "POST", "/_mock/calls", {"sid": sid})
        control(tw, "POST", "/_mock/recordings",
                {"call_sid": sid, "sid": rsid, "media_size": MEDIA_MIB << 20})
        redir_sid, redir_rsid = "CA" + uuid.uuid4().hex, "RE" + uuid.uuid4().hex
        control(tw, "POST", "/_mock/calls", {"sid": redir_sid})
        control(tw, "POST", "/_mock/recordings",
                {"call_sid": redir_sid, "sid": redir_rsid, "media_mode": "redirect"})
        port, mport = free_port(), free_port()
        env = {"PATH": os.environ["PATH"], "REDIS_URL": REDIS_URL,
               "CALLLOG_KEY_PREFIX": "bench-rec-" + uuid.uuid4().hex[:6],
               "INGEST_LISTEN": f"127.0.0.1:{port}", "METRICS_LISTEN": f"127.0.0.1:{mport}",
               "PUBLIC_BASE_URL": PUBLIC, "TWILIO_AUTH_TOKEN": TOKEN,
               "INGEST_SPOOL_DIR": str(work / "spool"), "INGEST_THREADS": "64",
               "LOG_LEVEL": "warn", "RECORDING_LINK_SECRET": SECRET,
               "RECORDINGS_MAX_CONCURRENT": str(SLOTS), "TWILIO_ACCOUNT_SID": AC,
               "TWILIO_API_KEY_SID": SK, "TWILIO_API_KEY_SECRET": SK_SECRET,
               "TWILIO_API_BASE_URL": f"http://127.0.0.1:{tw}"}
        ingest = subprocess.Popen([str(BIN / "calllog-ingest")], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(ingest)
        wait_port(port)
        auth = {"Authorization": "Basic " + base64.b64encode(f"{SK}:{SK_SECRET}".encode()).decode()}
        media = f"/2010-04-01/Accounts/{AC}/Recordings/{rsid}.mp3"
        link = f"/recordings/{sid}?t={token(sid)}"
        rows = []
        hwm0 = vm_hwm_kib(ingest.pid)  # before any audio went through
        st, n, secs = download(tw, media, auth)
        assert st == 200 and n == MEDIA_MIB << 20
        rows.append(("straight from the Twilio mock (Basic auth)", n, secs, "—"))
        st, n, secs = download(port, link)
        assert st == 200 and n == MEDIA_MIB << 20, (st, n)
        hwm1 = vm_hwm_kib(ingest.pid)
        rows.append(("through calllog-ingest (the note's link)", n, secs,
                     f"{hwm0 / 1024:.1f} → {hwm1 / 1024:.1f} MiB"))
        print(f"| {MEDIA_MIB} MiB recording | bytes | seconds | MiB/s | ingest peak RSS (VmHWM) |")
        print("|---|---|---|---|---|")
        for name, n, secs, rss in rows:
            print(f"| {name} | {n} | {secs:.2f} | {n / secs / 2**20:.0f} | {rss} |")
        redir = f"/recordings/{redir_sid}?t={token(redir_sid)}"
        lat = []
        for _ in range(50):
            t0 = time.perf_counter()
            st, _, _ = download(port, redir)
            lat.append((time.perf_counter() - t0) * 1000)
            assert st == 302
        print()
        print(f"| redirecting account: 302 to the signed location, 50 links | p50 {pct(lat, 0.5):.1f} ms | p99 {pct(lat, 0.99):.1f} ms |")
        print("|---|---|---|")
        idle = webhook_latencies(port, WEBHOOKS)
        stop = threading.Event()
        holders = [threading.Thread(target=download, args=(port, link),
                                    kwargs={"chunk": 1 << 14, "pause_s": 0.01, "stop": stop})
                   for _ in range(SLOTS)]
        for t in holders:
            t.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            _, metrics = control(mport, "GET", "/metrics")
            if f"calllog_ingest_recordings_in_flight {SLOTS}".encode() in metrics:
                break
            time.sleep(0.05)
        busy_status = download(port, link)[0]
        loaded = webhook_latencies(port, WEBHOOKS)
        stop.set()
        for t in holders:
            t.join(60)
        print()
        print(f"| {WEBHOOKS} webhooks, one keep-alive connection | p50 | p99 | max | one more link |")
        print("|---|---|---|---|---|")
        print(f"| idle ingest | {pct(idle, 0.5):.2f} ms | {pct(idle, 0.99):.2f} ms | {max(idle):.2f} ms | — |")
        print(f"| all {SLOTS} media slots held by slow listeners | {pct(loaded, 0.5):.2f} ms | "
              f"{pct(loaded, 0.99):.2f} ms | {max(loaded):.2f} ms | {busy_status} |")
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
