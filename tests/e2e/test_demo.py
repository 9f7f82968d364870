"""test_demo — `deploy/run-local.sh demo` shows a note from a fresh clone, and `stop` ends it.

Issue 7's acceptance: a new user with no credentials, no .env and no public URL runs
`deploy/run-local.sh demo --no-tail` on a fresh clone and sees the note calllog wrote to
RD Station, then `deploy/run-local.sh stop` ends every process the demo started. This
module does exactly that once per session: it copies the files git would put in a clone
(tracked and not ignored; no build trees, no deploy/.run) into a new directory, runs the
demo there with an environment holding no calllog setting at all, and reuses the programs
under test through CALLLOG_BIN_DIR, so the runner builds nothing. The demo starts its own
Redis and PostgreSQL (as the postgres user when we are root, tests/lib/services.sh), the
sandbox, the ingest and two workers, all on free loopback ports.

Checked: the note's text, the deal and the CallSid marker in the output; that the
printed env file works with `calllog-admin status`; that after `stop` no process whose
pid the demo recorded still runs and no port it used still listens; no sanitizer report
and no secret in the programs' logs.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path

import pytest

from conftest import ROOT, bin_dir, clean_env

DEMO_TIMEOUT_S = 150
STOP_TIMEOUT_S = 60
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")
MOCK_SECRETS = ("mock-v1-token", "mock-api-key-secret")


def copy_as_clone(dest):
    """Copies what a clone of the working tree holds (git's tracked and untracked,
    not ignored, files) into `dest`."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True, timeout=60).stdout
    for name in sorted(set(listed.decode("utf-8").split("\0")) - {""}):
        src = ROOT / name
        if not src.is_file():
            continue  # deleted in the working tree
        target = Path(dest) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)


def demo_env():
    """An environment with no calllog setting and no runner option but CALLLOG_BIN_DIR."""
    env = {k: v for k, v in clean_env().items()
           if not k.startswith(("CALLLOG_", "CACHE_", "ALERT_", "PG"))}
    env["CALLLOG_BIN_DIR"] = str(bin_dir())
    return env


def run_logged(args, cwd, env, log_path, timeout):
    """Runs `args` in its own session with output to `log_path`; returns (rc, output).
    rc is None when it had to be killed after `timeout` seconds."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = None
    return rc, Path(log_path).read_text(encoding="utf-8", errors="replace")


def read_settings(path):
    """KEY=VALUE lines of an env file as a dict (comments skipped)."""
    out = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def used_ports(settings, text):
    """Every loopback port the demo's settings and its env file's comments name."""
    ports = set()
    for key in ("REDIS_URL", "DATABASE_URL", "CALLLOG_SANDBOX_URL", "RDSTATION_API_BASE_URL",
                "PUBLIC_BASE_URL"):
        port = urllib.parse.urlsplit(settings[key]).port
        if port:
            ports.add(port)
    ports |= {int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", text)}
    return ports


def recorded_pids(demo_dir):
    """{name: pid} of every process the demo recorded: its programs, Redis, PostgreSQL."""
    pids = {}
    for f in sorted((demo_dir / "pids").glob("*.pid")):
        pids[f.stem] = int(f.read_text().split()[0])
    pids["redis"] = int((demo_dir / "redis" / "redis.pid").read_text().split()[0])
    pids["postgres"] = int((demo_dir / "pg" / "data" / "postmaster.pid").read_text().split()[0])
    return pids


def process_running(pid):
    """Whether `pid` runs. An exited process whose parent is gone stays a zombie when init
    does not reap it (kill -0 still succeeds then); that process has ended all the same."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def port_listens(port):
    """Whether something accepts TCP connections on 127.0.0.1:port."""
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def demo():
    """Runs the demo in a fresh copy of the tree, looks around while it runs, stops it,
    and returns what was seen. Whatever happens, `stop` runs and the copy is removed."""
    for prog in ("calllog-ingest", "calllog-worker", "calllog-admin"):
        if not os.access(bin_dir() / prog, os.X_OK):
            pytest.fail(f"{bin_dir() / prog} is missing: build the project first")
    base = Path(tempfile.mkdtemp(prefix="calllog-demo-"))
    os.chmod(base, 0o755)  # the postgres user must reach the demo's data directory
    tree = base / "calllog"
    copy_as_clone(tree)
    env = demo_env()
    seen = {"tree": tree, "demo_dir": tree / "deploy" / ".run" / "demo"}
    started = time.monotonic()
    try:
        rc, out = run_logged(["bash", "deploy/run-local.sh", "demo", "--no-tail"], tree, env,
                             base / "demo.out", DEMO_TIMEOUT_S)
        seen.update(rc=rc, out=out, seconds=time.monotonic() - started)
        env_file = seen["demo_dir"] / "env"
        if env_file.exists():
            seen["settings"] = read_settings(env_file)
            seen["ports"] = used_ports(seen["settings"], env_file.read_text(encoding="utf-8"))
            seen["pids"] = recorded_pids(seen["demo_dir"])
            seen["running_before"] = {n: process_running(p) for n, p in seen["pids"].items()}
            seen["admin_status"] = subprocess.run(
                [str(bin_dir() / "calllog-admin"), "--env-file", str(env_file), "status"],
                cwd=tree, env=env, capture_output=True, text=True, timeout=30)
            seen["status"] = subprocess.run(["bash", "deploy/run-local.sh", "status"], cwd=tree,
                                            env=env, capture_output=True, text=True, timeout=30)
    finally:
        seen["stop_rc"], seen["stop_out"] = run_logged(
            ["bash", "deploy/run-local.sh", "stop"], tree, env, base / "stop.out", STOP_TIMEOUT_S)
        seen["total_seconds"] = time.monotonic() - started
    # Read after stop: what a program reports at exit (leaks) is in its log only then.
    seen["logs"] = {f.name: f.read_text(encoding="utf-8", errors="replace")
                    for f in (seen["demo_dir"] / "logs").glob("*.log")}
    yield seen
    shutil.rmtree(base, ignore_errors=True)


def test_demo_prints_the_note(demo):
    out = demo["out"]
    assert demo["rc"] == 0, f"run-local.sh demo exited {demo['rc']}:\n{out[-6000:]}"
    assert "Ligação recebida" in out, out[-4000:]
    assert re.search(r"\[calllog:CA[0-9a-f]{32}\]", out), out[-4000:]
    assert "Plano Anual — Maria Souza" in out, out[-4000:]
    # ...and then how to go on.
    assert "demo call --from +5521988887777 --status no-answer" in out, out[-3000:]
    assert "deploy/run-local.sh stop" in out and "deploy/.run/demo/env" in out, out[-3000:]


def test_demo_uses_no_default_ports_and_its_env_file_works(demo):
    assert demo["rc"] == 0 and "settings" in demo, demo["out"][-4000:]
    assert not demo["ports"] & {6379, 5432, 8080, 9101, 9102}, demo["ports"]
    assert all(demo["running_before"].values()), demo["running_before"]
    st = demo["admin_status"]
    assert st.returncode == 0, st.stdout + st.stderr
    assert "delivered=1" in st.stdout, st.stdout
    assert "demo worker-2: running" in demo["status"].stdout, demo["status"].stdout


def test_stop_ends_every_process_and_frees_every_port(demo):
    assert "pids" in demo, demo["out"][-4000:]
    assert demo["stop_rc"] == 0, demo["stop_out"]
    assert {"ingest", "worker-1", "worker-2", "sandbox", "redis", "postgres"} <= set(demo["pids"])
    still = {n: p for n, p in demo["pids"].items() if process_running(p)}
    assert not still, f"still running after stop: {still}\n{demo['stop_out']}"
    listening = sorted(p for p in demo["ports"] if port_listens(p))
    assert not listening, f"ports still listening after stop: {listening}"
    assert demo["total_seconds"] < 180, demo["total_seconds"]


def test_programs_logged_no_sanitizer_report_and_no_secret(demo):
    assert demo.get("logs"), demo["out"][-4000:]
    secrets = MOCK_SECRETS + (demo["settings"]["TWILIO_AUTH_TOKEN"],)
    for name, text in demo["logs"].items():
        for mark in SANITIZER_MARKS:
            assert mark not in text, f"{name}:\n{text[-4000:]}"
        if name == "sandbox.log":
            continue  # the sandbox announces its (public) mock credentials
        for secret in secrets:
            assert secret not in text, f"a secret ({secret[:6]}…) appears in {name}"
