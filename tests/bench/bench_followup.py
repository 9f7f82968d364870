"""bench_followup — what missed-call follow-ups (CALLLOG_MISSED_CALL_TASK) cost per call.

For answered calls (each looks for an open follow-up to close: one Postgres SELECT) and
missed inbound calls (the first opens a task; the others find it open), with follow-ups on
and off: 299 calls from one cached contact through the real ingest and one worker
(concurrency 4) against the RD mock, timed until all are delivered, and the RD requests
they caused counted by endpoint. Uses the e2e fixtures (tests/e2e/conftest.py,
worker_env.py: real Redis and PostgreSQL from CALLLOG_TEST_REDIS_URL /
CALLLOG_TEST_DATABASE_URL, CALLLOG_BIN_DIR). Not run by CI:

    /usr/bin/python3 -m pytest tests/bench/bench_followup.py -q -s | grep BENCH

Results: docs/performance.md ("Missed-call follow-ups").
"""
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from conftest import *  # noqa: F401,F403,E402  (the e2e fixtures, found by name)
from worker_env import *  # noqa: F401,F403,E402
from worker_env import new_sid, send_call, wait_until  # noqa: E402

CALLS = 300
OWNER = "5e00000000000000000000f1"


@pytest.mark.parametrize("followups", ["1", "0"])
@pytest.mark.parametrize("status", ["completed", "no-answer"])
def test_cost(followups, status, rd, db, new_ingest, start_worker):
    rd.control("POST", "/_mock/users", {"id": OWNER, "email": "o@example.com", "name": "O"})
    rd.seed_contact({"name": "Maria Souza", "phones": ["(11) 97173-0783"],
                     "deals": [{"name": "A", "status": "ongoing", "user_id": OWNER}]})
    ingest = new_ingest()
    start_worker("v1", env={"CALLLOG_MISSED_CALL_TASK": followups})
    sids = [new_sid() for _ in range(CALLS)]
    send_call(ingest, sids[0], "completed", duration="10")  # warms the look-up cache
    wait_until(lambda: db.states([sids[0]]).get(sids[0]) == "delivered", 30, "warm-up call")
    seen = len(rd.requests())
    t0 = time.monotonic()
    for sid in sids[1:]:
        send_call(ingest, sid, status, duration="10" if status == "completed" else "0")
    wait_until(lambda: list(db.states(sids).values()).count("delivered") == CALLS, 300,
               "every call delivered")
    secs = time.monotonic() - t0
    reqs = rd.requests()[seen:]
    kinds = {}
    for r in reqs:
        kind = r["method"] + " /" + r["path"].split("/")[3]
        kinds[kind] = kinds.get(kind, 0) + 1
    n = CALLS - 1
    print(f"\nBENCH status={status} followups={followups} calls={n} seconds={secs:.2f} "
          f"calls_per_s={n / secs:.1f} rd_requests_per_call={len(reqs) / n:.3f} {kinds}")
