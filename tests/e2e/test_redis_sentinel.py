"""test_redis_sentinel — two Redis failovers in the middle of a stream of webhooks and
deliveries lose nothing and double nothing (issue 13, Redis high availability).

Real daemons on loopback, in the test's temp dir: a master and one replica
(redis-server, AOF with appendfsync always, each with a config file Sentinel can
rewrite) and three redis-sentinel processes (quorum 2, down-after 1 s). The real
calllog-ingest (REDIS_MIN_REPLICAS_ACK=1: an XADD counts once a replica has it) and two
calllog-workers find the master only through REDIS_SENTINELS (whose first entry is a
port nothing listens on, so "ask each sentinel in turn" is exercised) and a REDIS_URL
pointing nowhere, so nothing can reach Redis except through Sentinel. Redis and the
sentinels have passwords of their own (REDIS_URL's, REDIS_SENTINEL_PASSWORD); neither may
appear in a log.

A sender thread posts signed callbacks without pause, retrying anything but a 2xx as
Twilio would (its 15 s budget); meanwhile the test

1. forces a graceful failover (`SENTINEL failover`): the replica becomes the master,
   the old master its replica;
2. SIGKILLs that new master: the sentinels agree it is down and promote the old one,
   now without any replica, so WAIT cannot succeed and the ingest spools;
3. restarts the killed server on its port and directory: Sentinel turns it into a
   replica, WAIT succeeds again and the spool drains into the stream.

Then every call must have exactly one RD note and be `delivered` in the ledger. The
test prints `SENTINEL lost=0 doubled=0 calls=N …` and asserts both counts are 0. The
reconciler is off: what is checked is the ingest's own durability. It is bounded: each
wait has a timeout and the whole run takes about 40 s.

Two quick tests go with it: malformed Sentinel/WAIT settings refuse the start with one
line naming the setting, and REDIS_MIN_REPLICAS_ACK on a plain master without a replica
spools every callback until a replica attaches, then the spool drains.
"""

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import redis

from conftest import (bin_path, call_params, clean_env, free_port, metric_sum, sigterm_and_wait,
                      wait_for)
from worker_env import (  # noqa: F401  (fixtures are found by name)
    CALLER, OUR_NUMBER, database_url, db, diagnostics, ingests, marker,
    new_ingest, new_sid, queue_state, rd, rd_server, run_admin, seed_standard_contact,
    start_worker, tw, tw_server, wait_until)

MASTER = "calllog-e2e"
REDIS_PASSWORD = "sentinel-e2e-redis-pw-0123"
SENTINEL_PASSWORD = "sentinel-e2e-sentinel-pw-4567"
TWILIO_BUDGET_S = 15  # how long Twilio keeps retrying one callback
NODE_CONF = """port {port}
bind 127.0.0.1
dir {dir}
appendonly yes
appendfsync always
save ""
daemonize no
logfile {dir}/redis.log
requirepass {password}
masterauth {password}
"""
SENTINEL_CONF = """port {port}
bind 127.0.0.1
dir {dir}
daemonize no
logfile {dir}/sentinel.log
requirepass {sentinel_password}
sentinel monitor {master} 127.0.0.1 {master_port} 2
sentinel auth-pass {master} {password}
sentinel down-after-milliseconds {master} 1000
sentinel failover-timeout {master} 3000
sentinel parallel-syncs {master} 1
"""


class Daemon:
    """A redis-server or redis-sentinel on its own config file and directory."""

    def __init__(self, argv0, directory, conf_text, port, password):
        self.argv0 = argv0
        self.password = password
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.conf = self.dir / ("sentinel.conf" if "sentinel" in argv0 else "redis.conf")
        self.conf.write_text(conf_text)
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([self.argv0, str(self.conf)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        if not wait_for(self.answers, 15, 0.05):
            pytest.fail(f"{self.argv0} on port {self.port} did not answer: {self.log_tail()}")
        return self

    def client(self):
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password,
                           decode_responses=True, socket_timeout=3, socket_connect_timeout=3)

    def answers(self):
        if self.proc.poll() is not None:
            pytest.fail(f"{self.argv0} on port {self.port} exited: {self.log_tail()}")
        try:
            return self.client().ping()
        except redis.exceptions.RedisError:
            return False

    def kill(self):
        self.proc.kill()
        self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            sigterm_and_wait(self.proc, 10)

    def log_tail(self):
        logs = list(self.dir.glob("*.log"))
        return logs[0].read_text(errors="replace")[-3000:] if logs else "(no log)"


class Cluster:
    """Two redis-servers (master, replica) and three sentinels watching them."""

    def __init__(self, tmp):
        ports = [free_port() for _ in range(2)]
        self.nodes = {p: Daemon("redis-server", tmp / f"node{p}", NODE_CONF.format(
            port=p, dir=tmp / f"node{p}", password=REDIS_PASSWORD), p, REDIS_PASSWORD)
            for p in ports}
        self.first = ports[0]
        replica = self.nodes[ports[1]]
        replica.conf.write_text(replica.conf.read_text() + f"replicaof 127.0.0.1 {ports[0]}\n")
        self.sentinels = []
        for i in range(3):
            p = free_port()
            d = tmp / f"sentinel{i}"
            self.sentinels.append(Daemon(sentinel_program(), d, SENTINEL_CONF.format(
                port=p, dir=d, master=MASTER, master_port=ports[0], password=REDIS_PASSWORD,
                sentinel_password=SENTINEL_PASSWORD), p, SENTINEL_PASSWORD))

    def start(self):
        for n in self.nodes.values():
            n.start()
        wait_until(lambda: self.link_up(self.first), 20, "the replica in sync")
        for s in self.sentinels:
            s.start()
        wait_until(self.sentinels_ready, 30, "three sentinels that know each other and the "
                   "replica", self.describe)
        return self

    def link_up(self, master=None):
        """True when every server but the master (default: the sentinels' choice)
        replicates with its link up."""
        master = master or self.master_port()
        try:
            return master is not None and all(
                self.nodes[p].client().info("replication").get("master_link_status") == "up"
                for p in self.nodes if p != master)
        except redis.exceptions.RedisError:
            return False

    def sentinels_ready(self):
        for s in self.sentinels:
            info = s.client().execute_command("SENTINEL", "MASTER", MASTER)
            info = dict(zip(info[::2], info[1::2])) if isinstance(info, list) else info
            if int(info["num-other-sentinels"]) != 2 or int(info["num-slaves"]) != 1:
                return False
        return True

    def master_port(self):
        """Where the sentinels (all of them that answer) say the master is."""
        seen = set()
        for s in self.sentinels:
            try:
                host, port = s.client().execute_command("SENTINEL", "get-master-addr-by-name",
                                                        MASTER)
                seen.add(int(port))
            except redis.exceptions.RedisError:
                pass
        return seen.pop() if len(seen) == 1 else None

    def role(self, port):
        try:
            return self.nodes[port].client().execute_command("ROLE")[0]
        except redis.exceptions.RedisError:
            return None

    def wait_master(self, port, what):
        """Waits until every sentinel names `port` and the server there says master."""
        wait_until(lambda: self.master_port() == port and self.role(port) == "master", 30,
                   what, self.describe)

    def master(self):
        return self.nodes[self.master_port()].client()

    def describe(self):
        parts = [f"sentinels say {self.master_port()}"]
        parts += [f"node {p}: role={self.role(p)}" for p in self.nodes]
        parts += [f"--- sentinel {s.port}:\n{s.log_tail()[-1500:]}" for s in self.sentinels]
        return "\n".join(parts)

    def stop(self):
        for d in self.sentinels + list(self.nodes.values()):
            if d.proc:
                d.stop()


def sentinel_program():
    """redis-sentinel (Debian's package redis-sentinel; the same binary as redis-server)."""
    for name in ("redis-sentinel", "redis-server"):
        if shutil.which(name):
            return name
    pytest.fail("redis-sentinel is needed (deploy/install-deps.sh)")


@pytest.fixture
def cluster(tmp_path):
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is needed (deploy/install-deps.sh)")
    c = Cluster(tmp_path)
    try:
        yield c.start()
    finally:
        c.stop()


class Sender(threading.Thread):
    """Posts one completed call after another until stopped, each retried like Twilio
    retries (anything but a 2xx, for up to TWILIO_BUDGET_S). `refused` counts the
    attempts that were not accepted, `unaccepted` the calls that never were."""

    def __init__(self, ingest):
        super().__init__(daemon=True)
        self.ingest = ingest
        self.sids, self.unaccepted = [], []
        self.refused = 0
        self.stopping = threading.Event()

    def post(self, sid):
        params = call_params(sid, "completed", From=CALLER, To=OUR_NUMBER, Caller=CALLER,
                             Called=OUR_NUMBER, Direction="inbound", CallDuration="42")
        deadline = time.monotonic() + TWILIO_BUDGET_S
        while time.monotonic() < deadline:
            try:
                if self.ingest.post_form(params).status in (200, 204):
                    return True
            except OSError:
                pass
            self.refused += 1
            time.sleep(0.5)
        return False

    def run(self):
        while not self.stopping.is_set():
            sid = new_sid()
            self.sids.append(sid)
            if not self.post(sid):
                self.unaccepted.append(sid)
            time.sleep(0.1)

    def sent(self):
        return len(self.sids)

    def stop(self):
        self.stopping.set()
        self.join(TWILIO_BUDGET_S + 5)


def keep_sending(sender, seconds):
    """Lets the sender post for `seconds` more (the failovers happen mid-stream)."""
    before = sender.sent()
    time.sleep(seconds)
    assert sender.is_alive() and sender.sent() > before, "the sender stalled"


def test_failovers_mid_stream_lose_and_double_nothing(cluster, rd, db, key_prefix, new_ingest,
                                                      start_worker, capsys):
    started = time.monotonic()
    seed_standard_contact(rd)
    dead_sentinel = f"127.0.0.1:{free_port()}"
    sentinels = ",".join([dead_sentinel] + [f"127.0.0.1:{s.port}" for s in cluster.sentinels])
    env = {"REDIS_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:1/0", "REDIS_SENTINELS": sentinels,
           "REDIS_SENTINEL_MASTER": MASTER, "REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD}
    ingest = new_ingest(redis_url_=env["REDIS_URL"],
                        env={**env, "REDIS_MIN_REPLICAS_ACK": "1", "REDIS_WAIT_TIMEOUT_MS": "500"})
    ready = json.loads(ingest.get("/readyz").body)
    assert ready["redis"] == "ok", ready
    workers = [start_worker("v1", env=env) for _ in range(2)]
    diag = diagnostics(rd, db, None, None, workers)

    sender = Sender(ingest)
    sender.start()
    first, second = cluster.first, next(p for p in cluster.nodes if p != cluster.first)
    try:
        keep_sending(sender, 2)
        # 1. A graceful failover: the replica is promoted, the old master follows it.
        t0 = time.monotonic()
        cluster.sentinels[0].client().execute_command("SENTINEL", "FAILOVER", MASTER)
        cluster.wait_master(second, "the replica promoted by SENTINEL FAILOVER")
        graceful_s = time.monotonic() - t0
        wait_until(cluster.link_up, 30, "the old master replicating the new one", cluster.describe)
        keep_sending(sender, 2)
        # 2. The new master dies: the sentinels promote the old one, left without a replica.
        t0 = time.monotonic()
        cluster.nodes[second].kill()
        cluster.wait_master(first, "the old master promoted after the SIGKILL")
        kill_s = time.monotonic() - t0
        keep_sending(sender, 2)
        # 3. The killed server comes back and is made a replica: WAIT succeeds again.
        cluster.nodes[second].start()
        wait_until(lambda: cluster.role(second) == "slave" and cluster.link_up(), 40,
                   "the restarted server replicating the master", cluster.describe)
        keep_sending(sender, 2)
    finally:
        sender.stop()
    assert not sender.is_alive()
    sids = list(sender.sids)

    def spool_empty():
        return json.loads(ingest.get("/readyz").body)["spool_depth"] == 0

    wait_until(spool_empty, 30, "the ingest's spool replayed", diag)
    wait_until(lambda: db.states(sids) == {s: "delivered" for s in sids}, 60,
               f"all {len(sids)} calls delivered", diag)
    master = cluster.master()
    wait_until(lambda: queue_state(master, key_prefix)["pending"] == 0, 30,
               "nothing pending on the stream", diag)
    time.sleep(1)  # a doubled note would be posted by now: redeliveries are sub-second here

    notes = rd.notes()
    counts = {sid: sum(1 for n in notes if marker(sid) in (n.get("text") or "")) for sid in sids}
    lost = sorted(s for s, n in counts.items() if n == 0)
    doubled = sorted(s for s, n in counts.items() if n > 1)
    text = ingest.metrics()
    ack_missing = metric_sum(text, "calllog_ingest_replica_ack_missing_total") or 0
    spooled = metric_sum(text, "calllog_ingest_enqueue_seconds_count", target="spool") or 0
    line = (f"SENTINEL lost={len(lost)} doubled={len(doubled)} calls={len(sids)} "
            f"unaccepted={len(sender.unaccepted)} refused_attempts={sender.refused} "
            f"spooled={int(spooled)} replica_ack_missing={int(ack_missing)} "
            f"failover_graceful_s={graceful_s:.1f} failover_sigkill_s={kill_s:.1f} "
            f"total_s={time.monotonic() - started:.1f}")
    with capsys.disabled():  # shown by the test command's quiet pytest run too
        print("\n" + line, flush=True)
    assert not sender.unaccepted, f"callbacks never accepted: {sender.unaccepted}"
    assert not lost and not doubled, f"lost={lost} doubled={doubled}"
    # Both failovers really happened under the programs, and WAIT refused while the
    # master had no replica (step 2), so events went to the spool and came back.
    assert spooled > 0 and ack_missing > 0, (spooled, ack_missing)
    # calllog-admin doctor names the master the sentinels gave, and its replica.
    res = run_admin(["doctor"], {**workers[0].env, "PUBLIC_BASE_URL": ingest.base_url,
                                 "TWILIO_AUTH_TOKEN": ingest.token, "LOG_LEVEL": "error"},
                    timeout=60)
    report = {ln.split(None, 2)[1]: ln for ln in res.stdout.splitlines() if len(ln.split()) > 2}
    assert f"master '{MASTER}' at 127.0.0.1:{first} (from the sentinels)" in \
        report.get("redis.reachable", ""), res.stdout + res.stderr
    assert "1 replica(s)" in report.get("redis.replicas", ""), res.stdout
    for w in workers:
        assert w.stop() == 0, w.log_text()[-3000:]


def run_ingest_once(env):
    """Runs calllog-ingest expecting it to refuse to start; returns (rc, output)."""
    base = {"PUBLIC_BASE_URL": "https://hooks.example.com", "TWILIO_AUTH_TOKEN": "t" * 32}
    proc = subprocess.run([str(bin_path("calllog-ingest"))], env=clean_env({**base, **env}),
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=10)
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


def test_malformed_sentinel_settings_refuse_the_start():
    for env, name in [({"REDIS_SENTINELS": "127.0.0.1:26379"}, "REDIS_SENTINEL_MASTER"),
                      ({"REDIS_SENTINELS": "127.0.0.1:nope", "REDIS_SENTINEL_MASTER": "m"},
                       "REDIS_SENTINELS"),
                      ({"REDIS_MIN_REPLICAS_ACK": "1", "REDIS_WAIT_TIMEOUT_MS": "1000"},
                       "REDIS_WAIT_TIMEOUT_MS"),
                      ({"REDIS_MIN_REPLICAS_ACK": "-1"}, "REDIS_MIN_REPLICAS_ACK")]:
        rc, out = run_ingest_once(env)
        assert rc != 0 and f"setting {name}" in out, (env, rc, out)
        assert len(out.strip().splitlines()) == 1, out


def test_wait_without_a_replica_spools_until_one_attaches(tmp_path, private_redis, start_ingest):
    """REDIS_MIN_REPLICAS_ACK without Sentinel: a master with no replica cannot confirm
    an XADD, so every callback is spooled (and answered 204) and the replay waits; once a
    replica attaches, the spool drains and every call is on the stream."""
    ingest = start_ingest(redis_url_=private_redis.url, env={"REDIS_MIN_REPLICAS_ACK": "1"})
    sids = [new_sid() for _ in range(3)]
    for sid in sids:
        params = call_params(sid, "completed")
        assert ingest.post_form(params).status in (200, 204)
    ready = json.loads(ingest.get("/readyz").body)
    assert ready["spool_depth"] == 3, ready
    text = ingest.metrics()
    assert metric_sum(text, "calllog_ingest_replica_ack_missing_total", path="webhook") == 1
    assert metric_sum(text, "calllog_ingest_enqueue_seconds_count", target="spool") == 3
    time.sleep(1)  # several replay passes: none may start without a replica
    assert json.loads(ingest.get("/readyz").body)["spool_depth"] == 3
    client = private_redis.client()
    # The first XADD did land before its WAIT came back short: one copy, no more.
    assert [f["call_sid"] for _, f in client.xrange(ingest.events_key)] == sids[:1]

    port = free_port()
    conf = NODE_CONF.replace("requirepass {password}\nmasterauth {password}\n", "")
    replica = Daemon("redis-server", tmp_path / "replica", conf.format(
        port=port, dir=tmp_path / "replica") + f"replicaof 127.0.0.1 {private_redis.port}\n",
        port, None).start()
    try:
        wait_until(lambda: json.loads(ingest.get("/readyz").body)["spool_depth"] == 0, 20,
                   "the spool replayed once a replica attached")
        on_stream = [f["call_sid"] for _, f in client.xrange(ingest.events_key)]
        assert sorted(set(on_stream)) == sorted(sids) and len(on_stream) == 4, on_stream
        assert "too few replicas acknowledged the write" in ingest.log_text()
    finally:
        replica.stop()
