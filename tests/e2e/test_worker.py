"""test_worker — calllog-worker end to end: the acceptance test of the worker.

Real programs (calllog-ingest, calllog-worker, calllog-admin from $CALLLOG_BIN_DIR), a
real Redis and a real PostgreSQL with the migration of deploy/supabase/migrations/
applied; only Twilio REST and RD Station CRM are mocked (tests/mocks/). Checks design
§2–§3: one note per finished call on the caller's most recently updated open deal, in
pt-BR with the CallSid marker; duplicates, replays, racing workers and a worker killed
at any point never produce a second note; transient failures are retried, permanent ones
dead-lettered and replayable with calllog-admin; the RD rate limit is shared by every
worker; start-up refuses clearly; SIGTERM drains. Outcomes are awaited by polling
Postgres, Redis and the mocks' state, never by sleeping.
"""

import json
import math
import re
import signal
import subprocess
import time

import psycopg2
import pytest

from conftest import bin_path, clean_env, free_port, stream_entries
from worker_env import (  # noqa: F401  (fixtures are found by name)
    CALLER, OUR_NUMBER, RD_STAGE_ID, RD_USER_ID, admin_env, database_url, db, diagnostics,
    ingests, marker, new_ingest, new_sid, queue_state, queues_empty, rd, rd_server, run_admin,
    seed_standard_contact, send_call, start_worker, tw, tw_server, wait_until,
    worker_settings)

PROCESSED = "calllog_worker_processed_total"
RETRIES = "calllog_worker_retries_total"


def wait_delivered(db, sids, timeout, diag):
    """Waits until every CallSid in `sids` is `delivered` in Postgres."""
    sids = list(sids)

    def all_delivered():
        states = db.states(sids)
        return len(states) == len(sids) and set(states.values()) == {"delivered"}

    wait_until(all_delivered, timeout, f"{len(sids)} call(s) delivered", diag)


def post_requests(rd, api):
    """The note-creating requests the mock received (any status)."""
    path = r"^/api/v1/activities$" if api == "v1" else r"^/crm/v2/deals/[^/]+/notes$"
    return rd.requests(method="POST", path=path)


# ---------------------------------------------------------------------------------------
# 1. Life cycle.

@pytest.mark.parametrize("api", ["v1", "v2"])
def test_call_lifecycle_posts_one_note_on_latest_open_deal(api, rd, tw, db, rdb, key_prefix,
                                                           new_ingest, start_worker):
    deal, other_deals = seed_standard_contact(rd)
    contact_id = rd.contacts()[0]["id"]
    sid = new_sid()
    # Twilio REST knows the call: its start time only comes from there (enrichment).
    tw.seed_call({"sid": sid, "from": CALLER, "to": OUR_NUMBER, "status": "completed",
                  "direction": "inbound", "start_time": "Tue, 24 Nov 2026 19:00:00 +0000",
                  "end_time": "Tue, 24 Nov 2026 19:02:35 +0000", "duration": "155",
                  "price": "-0.0130", "price_unit": "USD"})
    ingest = new_ingest()
    worker = start_worker(api, enrich=True)
    diag = diagnostics(rd, db, rdb, key_prefix, [worker])

    for status in ("initiated", "ringing", "in-progress"):
        send_call(ingest, sid, status, duration="")
    wait_until(lambda: worker.metric(PROCESSED, outcome="ignored") >= 3, 30,
               "the three progress callbacks acknowledged", diag)
    assert rd.notes() == [], "a progress callback produced an RD entry"
    send_call(ingest, sid, "completed", duration="155")
    wait_delivered(db, [sid], 30, diag)

    notes = rd.notes()
    assert len(notes) == 1, notes
    note = notes[0]
    assert note["deal_id"] == deal, f"note on {note['deal_id']}, not the latest open deal"
    assert note["deal_id"] not in other_deals
    assert note["version"] == api
    assert note["user_id"] == RD_USER_ID
    text = note["text"]
    lines = text.splitlines()
    assert lines[0] == "Ligação recebida — atendida", text
    assert "De: +5511971730783" in lines and "Para: +551130001000" in lines, text
    assert "Duração: 02:35" in lines, text
    assert "Início: 24/11/2026 16:00" in lines, f"REST start time not used: {text}"
    assert marker(sid) in text

    row = db.row(sid)
    assert row["state"] == "delivered"
    assert row["rd_deal_id"] == deal
    assert row["rd_note_id"] == note["id"]
    assert row["rd_contact_id"] == contact_id
    assert row["recovered"] is False
    assert row["attempts"] == 1
    assert row["call_status"] == "completed"
    assert row["lease_expires_at"] is None

    wait_until(lambda: queues_empty(rdb, key_prefix), 20, "stream and retry set empty", diag)
    assert queue_state(rdb, key_prefix)["dead"] == 0
    assert worker.metric(PROCESSED, outcome="delivered") == 1
    assert worker.metric(PROCESSED, outcome="ignored") == 3
    assert len(post_requests(rd, api)) == 1
    assert tw.requests(method="GET", path=sid), "the worker did not ask Twilio about the call"


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_every_terminal_status_gets_a_note_with_its_label(api, rd, db, rdb, key_prefix,
                                                          new_ingest, start_worker):
    deal, _ = seed_standard_contact(rd)
    ingest = new_ingest()
    worker = start_worker(api)
    cases = {  # status: (direction, expected first line)
        "busy": ("inbound", "Ligação recebida — ocupado"),
        "no-answer": ("inbound", "Ligação recebida — não atendida"),
        "failed": ("inbound", "Ligação recebida — falhou"),
        "canceled": ("outbound-api", "Ligação realizada — cancelada"),
    }
    sids = {}
    for status, (direction, _) in cases.items():
        sids[status] = sid = new_sid()
        send_call(ingest, sid, "ringing", direction=direction, duration="")
        send_call(ingest, sid, status, direction=direction, duration="0")
    wait_delivered(db, sids.values(), 30, diagnostics(rd, db, rdb, key_prefix, [worker]))
    for status, (direction, first_line) in cases.items():
        notes = rd.notes_of(sids[status])
        assert len(notes) == 1, (status, notes)
        assert notes[0]["deal_id"] == deal
        assert notes[0]["text"].splitlines()[0] == first_line, notes[0]["text"]
        assert db.row(sids[status])["call_status"] == status
    # The outbound call's customer is the number called (To), still our caller.
    assert "Para: +5511971730783" in rd.notes_of(sids["canceled"])[0]["text"]
    assert len(rd.notes()) == 4


# ---------------------------------------------------------------------------------------
# 2. Duplicates and replays.

def test_duplicate_callbacks_and_replayed_dead_letter_post_once(rd, db, rdb, key_prefix,
                                                                new_ingest, start_worker,
                                                                admin_env):
    seed_standard_contact(rd)
    ingest = new_ingest()
    worker = start_worker("v1")
    diag = diagnostics(rd, db, rdb, key_prefix, [worker])
    sid = new_sid()
    for _ in range(5):
        send_call(ingest, sid)
    wait_delivered(db, [sid], 30, diag)
    # Copies that found the call held by the first are looked at again after its lease.
    wait_until(lambda: queues_empty(rdb, key_prefix), 30, "every copy finished", diag)
    assert len(rd.notes_of(sid)) == 1
    note_id = db.row(sid)["rd_note_id"]

    dup_before = worker.metric(PROCESSED, outcome="duplicate")
    send_call(ingest, sid)  # Twilio retrying long after the delivery
    wait_until(lambda: worker.metric(PROCESSED, outcome="duplicate") > dup_before
               and queues_empty(rdb, key_prefix), 20, "the late copy acknowledged", diag)
    assert len(rd.notes_of(sid)) == 1

    # A dead letter of the same call (left over from an earlier failed copy) replayed by
    # an operator: the call is delivered already, so nothing is posted.
    row = db.row(sid)
    event = json.dumps(row["event"])
    dead_id = rdb.xadd(f"{key_prefix}:dead", {
        "call_sid": sid, "status": "completed", "attempt": "2", "request_id": "",
        "received_at": row["event"].get("received_at", ""), "event": event,
        "reason": "attempts_exhausted", "error": "HTTP 503 from RD Station",
        "http_status": "503", "attempts": "8", "failed_at": str(int(time.time() * 1000))})
    dup_before = worker.metric(PROCESSED, outcome="duplicate")
    res = run_admin(["dead", "replay", dead_id], admin_env)
    assert res.returncode == 0, res.stderr
    assert dead_id in res.stdout
    wait_until(lambda: worker.metric(PROCESSED, outcome="duplicate") > dup_before
               and queues_empty(rdb, key_prefix), 20, "the replayed copy acknowledged", diag)
    assert queue_state(rdb, key_prefix)["dead"] == 0
    assert len(rd.notes_of(sid)) == 1
    assert len(post_requests(rd, "v1")) == 1
    row = db.row(sid)
    assert row["state"] == "delivered" and row["rd_note_id"] == note_id


# ---------------------------------------------------------------------------------------
# 3. Unknown callers.

STRANGER = "+5521998887766"


@pytest.mark.parametrize("policy", ["skip", "dead", "create"])
def test_unknown_caller_policy(policy, rd, db, rdb, key_prefix, new_ingest, start_worker):
    seed_standard_contact(rd)  # someone else
    # A known contact whose only deal is won: no open deal.
    old_contact = rd.seed_contact({"name": "Cliente antigo", "phones": ["+55 31 98765-4321"],
                                   "deals": [{"name": "Fechado", "status": "won"}]}
                                  )["contact_id"]
    env = {"CALLLOG_UNKNOWN_CALLER": policy}
    if policy == "create":
        env["CALLLOG_CREATE_DEAL_STAGE_ID"] = RD_STAGE_ID
    ingest = new_ingest()
    worker = start_worker("v1", env=env)
    diag = diagnostics(rd, db, rdb, key_prefix, [worker])
    sid, sid_nodeal = new_sid(), new_sid()
    send_call(ingest, sid, caller=STRANGER, CallerName="Fulano de Tal")
    send_call(ingest, sid_nodeal, caller="+5531987654321")

    if policy == "skip":
        wait_until(lambda: set(db.states([sid, sid_nodeal]).values()) == {"skipped"}, 30,
                   "both calls skipped", diag)
        assert db.row(sid)["reason"] == "no_contact"
        assert db.row(sid_nodeal)["reason"] == "no_open_deal"
        assert rd.notes() == []
        wait_until(lambda: queues_empty(rdb, key_prefix), 20, "queues empty", diag)
        assert queue_state(rdb, key_prefix)["dead"] == 0
        assert worker.metric(PROCESSED, outcome="skipped") == 2
    elif policy == "dead":
        wait_until(lambda: len(stream_entries(rdb, f"{key_prefix}:dead")) == 2, 30,
                   "two dead letters", diag)
        dead = {f["call_sid"]: f for _, f in stream_entries(rdb, f"{key_prefix}:dead")}
        assert set(dead) == {sid, sid_nodeal}
        fields = dead[sid]
        for name in ("call_sid", "reason", "error", "http_status", "attempts", "failed_at",
                     "event"):
            assert name in fields, f"dead letter lacks {name}: {fields}"
        assert fields["reason"] == "no_contact"
        assert dead[sid_nodeal]["reason"] == "no_open_deal"
        assert fields["error"]
        assert fields["http_status"] == "0"
        assert fields["attempts"] == "1"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z",
                            fields["failed_at"]), fields["failed_at"]
        ev = json.loads(fields["event"])
        assert ev["call_sid"] == sid and ev["from"] == STRANGER
        assert db.row(sid)["state"] == "dead" and db.row(sid)["reason"] == "no_contact"
        assert rd.notes() == []
        wait_until(lambda: queues_empty(rdb, key_prefix), 20, "queues empty", diag)
    else:
        wait_delivered(db, [sid, sid_nodeal], 30, diag)
        created = [c for c in rd.contacts()
                   if any(re.sub(r"\D", "", p["phone"]).endswith("21998887766")
                          for p in c["phones"])]
        assert len(created) == 1, rd.contacts()
        row = db.row(sid)
        deal = next(d for d in rd.deals() if d["id"] == row["rd_deal_id"])
        assert deal["stage_id"] == RD_STAGE_ID
        assert created[0]["id"] in deal["contact_ids"]
        assert created[0]["name"] == "Fulano de Tal"
        notes = rd.notes_of(sid)
        assert len(notes) == 1 and notes[0]["deal_id"] == deal["id"]
        # The contact without an open deal gets a new deal, not a second contact.
        row2 = db.row(sid_nodeal)
        deal2 = next(d for d in rd.deals() if d["id"] == row2["rd_deal_id"])
        assert deal2["stage_id"] == RD_STAGE_ID and deal2["status"] == "ongoing"
        holders = [c for c in rd.contacts()
                   if any(re.sub(r"\D", "", p["phone"]).endswith("31987654321")
                          for p in c["phones"])]
        assert [c["id"] for c in holders] == [old_contact], \
            f"a second contact was created for a known phone: {holders}"
        assert old_contact in deal2["contact_ids"]
        assert row2["rd_contact_id"] == old_contact
        assert len(rd.notes_of(sid_nodeal)) == 1
        assert len(rd.notes()) == 2


# ---------------------------------------------------------------------------------------
# 4. Transient failures.

V1_POST = r"^/api/v1/activities$"
V2_POST = r"^/crm/v2/deals/[^/]+/notes$"

# name: (fault rule, requests the rule answers, reschedules expected). Each case has a
# caller of its own, so its look-ups are not cached by an earlier case.
# A dropped or reset POST is armed twice and both reach the worker: POSTs never reuse a
# connection, so libcurl cannot silently re-send one (the first may have been processed).
TRANSIENT_CASES = {
    "v1": [
        ("503 twice", {"method": "POST", "path": V1_POST, "status": 503, "count": 2}, 2, 2),
        ("429 without Retry-After", {"method": "POST", "path": V1_POST, "status": 429,
                                     "count": 1}, 1, 1),
        ("look-up timeout", {"method": "GET", "path": r"^/api/v1/contacts$", "status": 0,
                             "delay_ms": 1500, "count": 1}, 1, 1),
        ("dropped connection", {"method": "POST", "path": V1_POST, "drop": True,
                                "count": 2}, 2, 2),
    ],
    "v2": [
        ("503 twice", {"method": "POST", "path": V2_POST, "status": 503, "count": 2}, 2, 2),
        ("429 with Retry-After", {"method": "POST", "path": V2_POST, "status": 429,
                                  "retry_after": 2, "count": 1}, 1, 1),
        ("connection reset", {"method": "POST", "path": V2_POST, "drop": "reset",
                              "count": 2}, 2, 2),
    ],
}


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_transient_failures_are_retried_to_one_note(api, rd, db, rdb, key_prefix, new_ingest,
                                                    start_worker):
    ingest = new_ingest()
    worker = start_worker(api, env={"RDSTATION_TIMEOUT_MS": "500"})
    diag = diagnostics(rd, db, rdb, key_prefix, [worker])
    for i, (name, fault, answered, expected) in enumerate(TRANSIENT_CASES[api]):
        phone = f"+551199111000{i}"
        deal = rd.seed_contact({"name": f"Caso {i}", "phones": [f"(11) 99111-000{i}"],
                                "deals": [{"name": "Aberto", "status": "ongoing"}]}
                               )["deal_ids"][0]
        seq = max((q["seq"] for q in rd.requests()), default=0)
        retries_before = worker.metric(RETRIES)
        rd.fault(**fault)
        sid = new_sid()
        send_call(ingest, sid, caller=phone)
        wait_delivered(db, [sid], 40, diag)
        # A hung request is logged by the mock when it ends, after the worker gave up.
        wait_until(lambda: len([q for q in rd.requests(since=seq) if q["fault"]]) >= answered,
                   20, f"{name}: the fault answering {answered} request(s)", diag)
        assert len([q for q in rd.requests(since=seq) if q["fault"]]) == answered, name

        notes = rd.notes_of(sid)
        assert len(notes) == 1 and notes[0]["deal_id"] == deal, (name, notes)
        assert worker.metric(RETRIES) - retries_before == expected, name
        row = db.row(sid)
        assert row["attempts"] == expected + 1, (name, row)
        assert row["rd_note_id"] == notes[0]["id"]
        resched = [r for r in worker.log_records()
                   if r.get("msg") == "rescheduled" and r.get("call_sid") == sid]
        assert len(resched) == expected, (name, resched)
        if fault.get("retry_after"):
            # Retry-After is honoured, even above RETRY_MAX_DELAY_MS (500 here).
            assert resched[0]["http_status"] == 429
            assert resched[0]["delay_ms"] >= fault["retry_after"] * 1000, resched
        elif fault.get("status") in (429, 503):
            assert resched[0]["http_status"] == fault["status"], resched
            assert resched[0]["delay_ms"] <= 500, resched  # the capped backoff
        wait_until(lambda: queues_empty(rdb, key_prefix), 20, f"{name}: queues empty", diag)
        assert queue_state(rdb, key_prefix)["dead"] == 0, name
    assert len(rd.notes()) == len(TRANSIENT_CASES[api])


def test_timed_out_post_that_rd_completes_later_is_not_doubled(rd, db, rdb, key_prefix,
                                                                new_ingest, start_worker):
    """The POST times out on our side but RD finishes it afterwards: the next attempt
    waits RDSTATION_UNKNOWN_OUTCOME_DELAY_MS, then finds the marker instead of posting a
    second note."""
    deal, _ = seed_standard_contact(rd)
    rd.fault(method="POST", path=V1_POST, status=0, delay_ms=1500, count=1)
    ingest = new_ingest()
    worker = start_worker("v1", env={"RDSTATION_TIMEOUT_MS": "500",
                                     "RDSTATION_UNKNOWN_OUTCOME_DELAY_MS": "3000"})
    diag = diagnostics(rd, db, rdb, key_prefix, [worker])
    sid = new_sid()
    send_call(ingest, sid)
    wait_delivered(db, [sid], 40, diag)
    assert db.row(sid)["recovered"] is True
    # The mock logs the hung request once it has ended (and created its note).
    wait_until(lambda: any(q["fault"] for q in rd.requests()), 20,
               "the hung request finished at the mock", diag)
    notes = rd.notes_of(sid)
    assert len(notes) == 1, f"{len(notes)} notes for one call: {notes}"


# ---------------------------------------------------------------------------------------
# 5. Permanent failure, dead letter, replay with calllog-admin.

def test_permanent_error_goes_to_dead_stream_and_admin_replays_it(rd, db, rdb, key_prefix,
                                                                  new_ingest, start_worker,
                                                                  admin_env):
    deal, _ = seed_standard_contact(rd)
    rd.fault(method="POST", path=V1_POST, status=422, count=-1)
    ingest = new_ingest()
    worker = start_worker("v1")
    diag = diagnostics(rd, db, rdb, key_prefix, [worker])
    sid = new_sid()
    send_call(ingest, sid)
    wait_until(lambda: len(stream_entries(rdb, f"{key_prefix}:dead")) == 1, 30,
               "a dead letter", diag)
    (dead_id, fields), = stream_entries(rdb, f"{key_prefix}:dead")
    assert fields["call_sid"] == sid
    assert fields["reason"] == "permanent_error"
    assert fields["http_status"] == "422"
    assert fields["error"]
    assert json.loads(fields["event"])["call_sid"] == sid
    row = db.row(sid)
    assert row["state"] == "dead" and row["last_http_status"] == 422
    assert rd.notes() == []
    assert len(post_requests(rd, "v1")) == 1, "a 422 must not be retried"
    wait_until(lambda: queues_empty(rdb, key_prefix), 20, "queues empty", diag)
    assert worker.metric("calllog_worker_dead_letters_total", reason="permanent_error") == 1

    res = run_admin(["dead", "list"], admin_env)
    assert res.returncode == 0, res.stderr
    line = next((ln for ln in res.stdout.splitlines() if dead_id in ln), None)
    assert line is not None, res.stdout
    assert sid in line and "permanent_error" in line and "422" in line

    rd.clear_faults()
    res = run_admin(["dead", "replay", dead_id], admin_env)
    assert res.returncode == 0, res.stderr
    wait_delivered(db, [sid], 30, diag)
    notes = rd.notes_of(sid)
    assert len(notes) == 1 and notes[0]["deal_id"] == deal
    assert db.row(sid)["rd_note_id"] == notes[0]["id"]
    assert queue_state(rdb, key_prefix)["dead"] == 0
    wait_until(lambda: queues_empty(rdb, key_prefix), 20, "queues empty", diag)
    res = run_admin(["dead", "list"], admin_env)
    assert dead_id not in res.stdout


# ---------------------------------------------------------------------------------------
# 6. A worker killed mid-run.

CALLERS = ["(11) 97173-0783", "+55 21 99888-1111", "5531 98888-2222", "(41) 3333-4444"]
CALLERS_E164 = ["+5511971730783", "+5521998881111", "+5531988882222", "+554133334444"]


def test_sigkill_mid_run_other_worker_finishes_without_duplicates(rd, db, rdb, key_prefix,
                                                                  new_ingest, start_worker):
    deals = []
    for i, phone in enumerate(CALLERS):
        deals.append(rd.seed_contact({"name": f"Cliente {i}", "phones": [phone],
                                      "deals": [{"name": "Aberto", "status": "ongoing"}]}
                                     )["deal_ids"][0])
    # The lease outlives one slow request, so a live worker keeps what it holds.
    env = {"WORKER_LEASE_MS": "5000", "WORKER_CLAIM_IDLE_MS": "2500"}
    a = start_worker("v1", env=env, name="killA")
    b = start_worker("v1", env=env, name="keepB")
    ingest = new_ingest()
    diag = diagnostics(rd, db, rdb, key_prefix, [a, b])
    warm = [new_sid() for _ in CALLERS_E164]  # fills the look-up cache
    for sid, phone in zip(warm, CALLERS_E164):
        send_call(ingest, sid, caller=phone)
    wait_delivered(db, warm, 30, diag)

    rd.latency(1500)
    sids = [new_sid() for _ in range(20)]
    for i, sid in enumerate(sids):
        send_call(ingest, sid, caller=CALLERS_E164[i % len(CALLERS_E164)])

    def a_is_posting():
        return db.query("SELECT call_sid FROM calllog.deliveries WHERE state = 'processing'"
                        " AND lease_owner LIKE 'killA/%%' AND rd_post_started_at IS NOT NULL")

    wait_until(a_is_posting, 30, "worker A posting to RD", diag, interval=0.02)
    a.kill()
    in_flight = {r["call_sid"] for r in a_is_posting()}

    wait_delivered(db, sids, 90, diag)
    for sid in sids + warm:
        assert len(rd.notes_of(sid)) == 1, (sid, rd.notes_of(sid))
    assert len(rd.notes()) == len(sids) + len(warm)
    rows = db.rows(sids)
    recovered = {r["call_sid"] for r in rows if r["recovered"]}
    # A's requests in flight reached RD, which created the notes after A died: those
    # calls are finished by B through the marker, not by posting again.
    assert recovered, f"no recovery by marker; A was posting {in_flight}"
    assert recovered <= in_flight, (recovered, in_flight)
    for r in rows:
        assert rd.notes_of(r["call_sid"])[0]["id"] == r["rd_note_id"]
    wait_until(lambda: queues_empty(rdb, key_prefix), 30, "A's pending entries reclaimed",
               diag)
    assert queue_state(rdb, key_prefix)["dead"] == 0


def test_kill_after_rd_accepted_note_before_postgres_recorded_it(rd, db, rdb, key_prefix,
                                                                 database_url, new_ingest,
                                                                 start_worker):
    """The worst window: RD has the note, Postgres does not know. Worker A's request to
    record the delivery is held by a row lock, A is killed, its statement cancelled."""
    deal, _ = seed_standard_contact(rd)
    rd.fault(method="POST", path=V1_POST, status=0, delay_ms=1000, count=1)  # slow POST
    ingest = new_ingest()
    a = start_worker("v1", name="killA")
    diag = diagnostics(rd, db, rdb, key_prefix, [a])
    sid = new_sid()
    send_call(ingest, sid)
    wait_until(lambda: (db.row(sid) or {}).get("rd_post_started_at"), 30,
               "A posting to RD", diag, interval=0.02)

    lock = psycopg2.connect(database_url)
    try:
        cur = lock.cursor()
        cur.execute("SELECT pg_backend_pid()")
        lock_pid = cur.fetchone()[0]
        cur.execute("SELECT 1 FROM calllog.deliveries WHERE call_sid = %s FOR UPDATE", (sid,))
        wait_until(lambda: len(rd.notes_of(sid)) == 1, 20, "RD accepting the note", diag)

        def blocked():
            return db.query("SELECT pid, query FROM pg_stat_activity WHERE %s = ANY("
                            "pg_blocking_pids(pid))", lock_pid)

        def recording_blocked():  # A's lease keeper may be blocked too: wait for the mark
            return [r for r in blocked() if "state = 'delivered'" in r["query"]]

        wait_until(recording_blocked, 20, "A recording the delivery (blocked by the lock)", diag)
        a.kill()
        for r in blocked():
            db.query("SELECT pg_terminate_backend(%s)", r["pid"])
    finally:
        lock.rollback()
        lock.close()
    row = db.row(sid)
    assert row["state"] == "processing" and row["rd_note_id"] is None, row
    note_id = rd.notes_of(sid)[0]["id"]

    b = start_worker("v1", name="recoverB")
    diag = diagnostics(rd, db, rdb, key_prefix, [a, b])
    wait_delivered(db, [sid], 40, diag)
    row = db.row(sid)
    assert row["recovered"] is True
    assert row["rd_note_id"] == note_id and row["rd_deal_id"] == deal
    assert len(rd.notes_of(sid)) == 1
    assert len(post_requests(rd, "v1")) == 1, "B posted again instead of finding the marker"
    assert rd.requests(method="GET", path=r"^/api/v1/activities$"), "no marker search"
    assert b.metric(PROCESSED, outcome="recovered") == 1
    wait_until(lambda: queues_empty(rdb, key_prefix), 20, "queues empty", diag)


# ---------------------------------------------------------------------------------------
# 7. Two workers racing on one CallSid.

def test_two_workers_racing_on_one_call_sid_post_once(rd, db, rdb, key_prefix, new_ingest,
                                                      start_worker):
    seed_standard_contact(rd)
    # The ingest writes to a side stream: its entries are then pushed twice at once.
    src = f"{key_prefix}:src"
    ingest = new_ingest(env={"CALLLOG_KEY_PREFIX": src})
    sids = [new_sid() for _ in range(10)]
    for sid in sids:
        send_call(ingest, sid)
    entries = stream_entries(rdb, f"{src}:events")
    assert len(entries) == 10
    a = start_worker("v1", name="raceA")
    b = start_worker("v1", name="raceB")
    diag = diagnostics(rd, db, rdb, key_prefix, [a, b])
    for _, fields in entries:
        assert {"call_sid", "status", "attempt", "event"} <= set(fields)
        pipe = rdb.pipeline(transaction=False)
        pipe.xadd(f"{key_prefix}:events", fields)
        pipe.xadd(f"{key_prefix}:events", fields)
        pipe.execute()
    wait_delivered(db, sids, 40, diag)
    wait_until(lambda: queues_empty(rdb, key_prefix), 30, "both copies finished", diag)
    for sid in sids:
        assert len(rd.notes_of(sid)) == 1, (sid, rd.notes_of(sid))
    assert len(post_requests(rd, "v1")) == 10
    handled = sum(w.metric(PROCESSED, outcome=o) for w in (a, b)
                  for o in ("delivered", "duplicate"))
    assert handled == 20, f"{handled} copies finished for 20 pushed"


# ---------------------------------------------------------------------------------------
# 8. The RD rate limit is shared by every worker.

def test_rate_limit_is_shared_by_all_workers(rd, db, rdb, key_prefix, new_ingest,
                                             start_worker):
    per_minute, burst = 30, 2
    seed_standard_contact(rd)
    ingest = new_ingest()
    # A first call fills the look-up cache: from then on a call costs one request.
    w0 = start_worker("v1", name="warm")
    sid0 = new_sid()
    send_call(ingest, sid0)
    wait_delivered(db, [sid0], 30, diagnostics(rd, db, rdb, key_prefix, [w0]))
    assert w0.stop() == 0
    rdb.delete(f"{key_prefix}:ratelimit:rdstation")
    rd.ratelimit(per_minute, 60, clear=True)
    seq = max((q["seq"] for q in rd.requests()), default=0)

    # Leases outlast the wait for budget (docs: above the longest handling time).
    env = {"RDSTATION_RATE_LIMIT_PER_MINUTE": str(per_minute),
           "RDSTATION_RATE_BURST": str(burst),
           "WORKER_LEASE_MS": "60000", "WORKER_CLAIM_IDLE_MS": "45000"}
    a = start_worker("v1", env=env, name="rateA")
    b = start_worker("v1", env=env, name="rateB")
    diag = diagnostics(rd, db, rdb, key_prefix, [a, b])
    sids = [new_sid() for _ in range(15)]
    for sid in sids:
        send_call(ingest, sid)
    wait_delivered(db, sids, 40, diag)

    reqs = rd.requests(since=seq)
    statuses = [q["status"] for q in reqs]
    assert 429 not in statuses, f"RD answered 429: {statuses}"
    assert len(reqs) >= 15
    for sid in sids:
        assert len(rd.notes_of(sid)) == 1
    # Both workers took calls, so the budget really was shared between them.
    assert a.metric(PROCESSED, outcome="delivered") > 0
    assert b.metric(PROCESSED, outcome="delivered") > 0
    # GCRA paces at the full rate with this burst: any run of k requests spans at least
    # (k - burst) emission intervals of 60 s / limit (the 61 s window only ever holds
    # back more). A limiter per worker would allow twice as many.
    # (One request of slack for the mock stamping answers, not arrivals.)
    interval = 60.0 / per_minute
    times = sorted(q["time"] for q in reqs)
    for i in range(len(times)):
        for j in range(i + 1, len(times)):
            allowed = burst + math.floor((times[j] - times[i]) / interval) + 1
            assert j - i + 1 <= allowed, (
                f"{j - i + 1} requests within {times[j] - times[i]:.2f} s exceed the "
                f"shared budget ({per_minute}/min, burst {burst})")


# ---------------------------------------------------------------------------------------
# 9. Start-up and shutdown.

def _run_worker_once(env, timeout=30):
    return subprocess.run([str(bin_path("calllog-worker"))], env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_worker_refuses_to_start_without_database_url(rd, tw, db, redis_url, key_prefix):
    env = worker_settings("v1", redis_url, key_prefix, "unused", rd, tw, "nodb", free_port())
    res = _run_worker_once(clean_env(env, unset=("DATABASE_URL",)))
    out = (res.stdout + res.stderr).strip()
    assert res.returncode == 2, out
    assert len(out.splitlines()) == 1, out
    assert "DATABASE_URL" in out


@pytest.mark.parametrize("api,missing", [
    ("v1", ("DATABASE_URL", "RDSTATION_TOKEN")),  # RDSTATION_USER_ID: the deal owner's
    ("v2", ("DATABASE_URL", "RDSTATION_CLIENT_ID", "RDSTATION_CLIENT_SECRET",
            "RDSTATION_REFRESH_TOKEN")),
])
def test_worker_names_every_missing_setting_in_one_line(api, missing, rd, tw, redis_url,
                                                        key_prefix):
    env = worker_settings(api, redis_url, key_prefix, "unused", rd, tw, "bare", free_port())
    res = _run_worker_once(clean_env(env, unset=missing))
    out = (res.stdout + res.stderr).strip()
    assert res.returncode == 2, out
    assert out == f"calllog-worker: settings {', '.join(missing)} are required but not set", out


def test_worker_refuses_to_start_without_schema(rd, tw, db, database_url, redis_url,
                                                key_prefix):
    db.query("DROP SCHEMA calllog CASCADE")
    env = worker_settings("v1", redis_url, key_prefix, database_url, rd, tw, "noschema",
                          free_port())
    res = _run_worker_once(clean_env(env))
    out = (res.stdout + res.stderr).strip()
    assert res.returncode != 0, out
    assert len(out.splitlines()) == 1, out
    assert "deploy/supabase/migrations" in out, out
    assert "calllog" in out


def sigterm_and_wait(worker):
    """Sends SIGTERM and expects the worker to drain and exit 0 within 20 s."""
    worker.proc.send_signal(signal.SIGTERM)
    try:
        rc = worker.proc.wait(20)
    except subprocess.TimeoutExpired:
        pytest.fail("the worker did not drain within 20 s:\n" + worker.log_text()[-3000:])
    assert rc == 0, worker.log_text()[-3000:]


def test_sigterm_drains_and_the_call_is_still_delivered_once(rd, db, rdb, key_prefix,
                                                             new_ingest, start_worker):
    deal, _ = seed_standard_contact(rd)
    rd.fault(method="POST", path=V1_POST, status=0, delay_ms=2000, count=1)  # slow POST
    ingest = new_ingest()
    a = start_worker("v1", name="drainA")
    diag = diagnostics(rd, db, rdb, key_prefix, [a])
    sid = new_sid()
    send_call(ingest, sid)
    wait_until(lambda: (db.row(sid) or {}).get("rd_post_started_at"), 30,
               "A posting to RD", diag, interval=0.02)
    sigterm_and_wait(a)
    assert any(r.get("msg") == "stopped" for r in a.log_records())
    # Finished or handed back: nothing lost in either case.
    state = db.row(sid)["state"]
    if state != "delivered":
        assert state in ("retry_wait", "processing"), state
        q = queue_state(rdb, key_prefix)
        assert q["retry"] + q["pending"] + q["events"] >= 1, q
    b = start_worker("v1", name="drainB")
    diag = diagnostics(rd, db, rdb, key_prefix, [a, b])
    wait_delivered(db, [sid], 40, diag)
    wait_until(lambda: queues_empty(rdb, key_prefix), 30, "queues empty", diag)
    notes = rd.notes_of(sid)
    assert len(notes) == 1 and notes[0]["deal_id"] == deal


def test_sigterm_still_sends_the_queued_alerts(rd, db, rdb, key_prefix, new_ingest,
                                              start_worker):
    """Alerts are posted by a thread of their own, off the consumers; SIGTERM still sends
    what is queued for it (here a dead letter's alert to a slow webhook) before the worker
    exits."""
    seed_standard_contact(rd)
    rd.fault(method="POST", path=V1_POST, status=422, count=1)  # permanent: a dead letter
    rd.fault(path=r"^/services/", delay_ms=1000, status=200, body="ok", count=-1)  # slow hook
    hook = f"{rd.url}/services/T000/B000/E2EWEBHOOKSECRETPATH0123"
    ingest = new_ingest()
    worker = start_worker("v1", name="alertdrain", env={"ALERT_WEBHOOK_URL": hook})
    diag = diagnostics(rd, db, rdb, key_prefix, [worker])
    sid = new_sid()
    send_call(ingest, sid)
    wait_until(lambda: len(stream_entries(rdb, f"{key_prefix}:dead")) == 1, 30,
               "a dead letter", diag)
    sigterm_and_wait(worker)
    posts = rd.requests(method="POST", path=r"^/services/")
    assert len(posts) == 1, posts
    assert sid in posts[0]["body"]["text"], posts[0]
    assert not [r for r in worker.log_records()
                if r.get("msg") in ("alert not sent", "alert dropped")], worker.log_text()[-3000:]


# ---------------------------------------------------------------------------------------
# 10. Answers RD sends that cannot be read; secrets; plain-text transports.

@pytest.mark.parametrize("rd_did_it", [False, True], ids=["not-created", "created"])
def test_empty_200_on_post_note_is_retried_then_delivered_once(rd_did_it, rd, db, rdb,
                                                               key_prefix, new_ingest,
                                                               start_worker):
    """A 200 with an empty body on the note POST is no delivery: the call is retried and
    delivered with a note id once RD answers properly. When RD did create the note (only
    its answer was lost), the retry finds the marker instead of posting a second note."""
    deal, _ = seed_standard_contact(rd)
    rd.fault(method="POST", path=V1_POST, status=200, body="", count=2 if not rd_did_it else 1,
             replace=rd_did_it)
    ingest = new_ingest()
    worker = start_worker("v1")
    diag = diagnostics(rd, db, rdb, key_prefix, [worker])
    sid = new_sid()
    send_call(ingest, sid)
    wait_delivered(db, [sid], 40, diag)
    notes = rd.notes_of(sid)
    assert len(notes) == 1 and notes[0]["deal_id"] == deal, notes
    row = db.row(sid)
    assert row["rd_note_id"] == notes[0]["id"], row
    assert row["recovered"] is rd_did_it
    resched = [r for r in worker.log_records()
               if r.get("msg") == "rescheduled" and r.get("call_sid") == sid]
    assert len(resched) == (1 if rd_did_it else 2), resched
    for r in resched:
        assert r["error"].startswith("POST /activities: answer unreadable: empty body (HTTP 200"), r
    assert not [r for r in worker.log_records()
                if r.get("msg") == "delivered" and r.get("call_sid") == sid and not r.get("note_id")]
    wait_until(lambda: queues_empty(rdb, key_prefix), 20, "queues empty", diag)
    assert queue_state(rdb, key_prefix)["dead"] == 0


def test_html_200_on_contact_lookup_is_not_skipped(rd, db, rdb, key_prefix, new_ingest,
                                                   start_worker):
    """A proxy's HTML page with a 200 on GET /contacts is neither "no contact" (skipped)
    nor cached as one: retried, then dead-lettered with the reason; the failed alert is
    logged without the webhook's secret path (checked by start_worker's teardown)."""
    deal, _ = seed_standard_contact(rd)
    rd.fault(method="GET", path=r"^/api/v1/contacts$", status=200,
             body="<html><body><h1>Sign in to the network</h1></body></html>", count=-1)
    hook = f"{rd.url}/services/T000/B000/E2EWEBHOOKSECRETPATH0123"
    ingest = new_ingest()
    worker = start_worker("v1", env={"RETRY_MAX_ATTEMPTS": "3", "ALERT_WEBHOOK_URL": hook})
    diag = diagnostics(rd, db, rdb, key_prefix, [worker])
    sid = new_sid()
    send_call(ingest, sid)
    wait_until(lambda: len(stream_entries(rdb, f"{key_prefix}:dead")) == 1, 40,
               "a dead letter", diag)
    (_, fields), = stream_entries(rdb, f"{key_prefix}:dead")
    assert fields["call_sid"] == sid
    assert fields["reason"] == "attempts_exhausted", fields
    assert fields["error"].startswith(
        "GET /contacts: answer unreadable: not JSON (HTTP 200, text/html"), fields
    row = db.row(sid)
    assert row["state"] == "dead" and row["attempts"] == 3, row
    assert "answer unreadable" in row["last_error"], row
    assert worker.metric(PROCESSED, outcome="skipped") == 0
    wait_until(lambda: any(r.get("msg") == "alert not sent" for r in worker.log_records()), 20,
               "the alert to the (404) webhook failing", diag)
    failed = next(r for r in worker.log_records() if r.get("msg") == "alert not sent")
    assert failed["webhook"] == f"{rd.url}/...", failed
    assert failed["http_status"] == 404, failed

    # Nothing was cached as "no contact": once RD answers, the next call gets its note.
    rd.clear_faults()
    sid2 = new_sid()
    send_call(ingest, sid2)
    wait_delivered(db, [sid2], 30, diag)
    assert [n["deal_id"] for n in rd.notes_of(sid2)] == [deal]


def test_secrets_from_files(rd, tw, db, rdb, key_prefix, database_url, redis_url, new_ingest,
                            start_worker, tmp_path):
    """RDSTATION_TOKEN_FILE and DATABASE_URL_FILE replace their settings (one trailing
    newline trimmed); both set, or a file that cannot be read, refuse the start naming
    the *_FILE setting."""
    token_file = tmp_path / "rd_token"
    token_file.write_text("mock-v1-token\n")
    db_file = tmp_path / "database_url"
    db_file.write_text(database_url + "\n")
    deal, _ = seed_standard_contact(rd)
    ingest = new_ingest()
    worker = start_worker("v1", env={"RDSTATION_TOKEN_FILE": str(token_file),
                                     "DATABASE_URL_FILE": str(db_file)},
                          unset=("RDSTATION_TOKEN", "DATABASE_URL"))
    sid = new_sid()
    send_call(ingest, sid)
    wait_delivered(db, [sid], 30, diagnostics(rd, db, rdb, key_prefix, [worker]))
    assert [n["deal_id"] for n in rd.notes_of(sid)] == [deal]

    env = worker_settings("v1", redis_url, key_prefix, database_url, rd, tw, "files",
                          free_port())
    res = _run_worker_once(clean_env({**env, "RDSTATION_TOKEN_FILE": str(token_file)}))
    out = (res.stdout + res.stderr).strip()
    assert res.returncode == 2, out
    assert out == ("calllog-worker: settings RDSTATION_TOKEN and RDSTATION_TOKEN_FILE are "
                   "both set: set only one of them"), out
    missing = str(tmp_path / "no-such-secret")
    res = _run_worker_once(clean_env({**env, "REDIS_URL_FILE": missing}, unset=("REDIS_URL",)))
    out = (res.stdout + res.stderr).strip()
    assert res.returncode == 2, out
    assert out == (f"calllog-worker: setting REDIS_URL_FILE: cannot read {missing}: No such "
                   "file or directory"), out


def test_plain_text_transports_warn_at_start(rd, tw, db, redis_url, key_prefix, start_worker):
    """http:// to a host outside loopback, and a remote DATABASE_URL without
    sslmode=require, are named in a warning at start, without the URL's secret parts."""
    hook = "http://hooks.example.invalid/services/T000/B000/PLAINTEXTWEBHOOKSECRET01"
    worker = start_worker("v1", env={"RDSTATION_API_BASE_URL": "http://192.0.2.10:9/api/v1",
                                     "ALERT_WEBHOOK_URL": hook}, enrich=True)
    warned = {r.get("setting"): r for r in worker.log_records()
              if r.get("level") == "warn" and "plain-text" in r.get("msg", "")}
    assert set(warned) == {"RDSTATION_API_BASE_URL", "ALERT_WEBHOOK_URL"}, warned
    assert warned["RDSTATION_API_BASE_URL"]["url"] == "http://192.0.2.10:9/..."
    assert warned["ALERT_WEBHOOK_URL"]["url"] == "http://hooks.example.invalid/..."
    assert "PLAINTEXTWEBHOOKSECRET01" not in worker.log_text()

    # DATABASE_URL: the warning comes before the (failing) connection; TLS required: none.
    env = worker_settings("v1", redis_url, key_prefix, "unused", rd, tw, "pg", free_port())
    for url, warns in (
            ("postgresql://calllog:PGPASSWORD1@192.0.2.1:5432/calllog?connect_timeout=2", True),
            ("postgresql://calllog:PGPASSWORD1@192.0.2.1:5432/calllog?connect_timeout=2"
             "&sslmode=require", False)):
        res = _run_worker_once(clean_env({**env, "DATABASE_URL": url}))
        out = res.stdout + res.stderr
        assert res.returncode != 0, out
        lines = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
        db_warn = [r for r in lines if r.get("setting") == "DATABASE_URL"]
        if warns:
            assert len(db_warn) == 1 and db_warn[0]["host"] == "192.0.2.1", out
            assert db_warn[0]["sslmode"] == "prefer (default)", out
        else:
            assert db_warn == [], out
        assert "PGPASSWORD1" not in out, out


# ---------------------------------------------------------------------------------------
# 10. Behaviour checked against RD Station's documentation and public clients (issue 9).

def _create_env():
    return {"CALLLOG_UNKNOWN_CALLER": "create", "CALLLOG_CREATE_DEAL_STAGE_ID": RD_STAGE_ID}


def _deliver_unknown_caller(api, rd, db, rdb, key_prefix, new_ingest, start_worker):
    """Sends one call from STRANGER to a worker that creates contacts; waits until it is
    delivered. Returns (sid, the one contact created for STRANGER, the ledger row)."""
    ingest = new_ingest()
    worker = start_worker(api, env=_create_env())
    diag = diagnostics(rd, db, rdb, key_prefix, [worker])
    sid = new_sid()
    send_call(ingest, sid, caller=STRANGER, CallerName="Fulano de Tal")
    wait_delivered(db, [sid], 30, diag)
    created = [c for c in rd.contacts()
               if any(re.sub(r"\D", "", p["phone"]).endswith("21998887766") for p in c["phones"])]
    assert len(created) == 1, rd.contacts()
    return sid, created[0], db.row(sid)


def test_v2_unknown_caller_gets_a_mobile_contact_a_deal_and_one_note(rd, db, rdb, key_prefix,
                                                                     new_ingest, start_worker):
    sid, created, row = _deliver_unknown_caller("v2", rd, db, rdb, key_prefix, new_ingest,
                                                start_worker)
    posts = rd.requests(method="POST", path=r"^/crm/v2/contacts$")
    assert [p["status"] for p in posts] == [201], posts
    assert posts[0]["body"]["data"]["phones"] == [{"phone": STRANGER, "type": "mobile"}]
    deal = next(d for d in rd.deals() if d["id"] == row["rd_deal_id"])
    assert created["id"] in deal["contact_ids"] and deal["stage_id"] == RD_STAGE_ID
    notes = rd.notes_of(sid)
    assert len(notes) == 1 and notes[0]["deal_id"] == deal["id"]
    assert queue_state(rdb, key_prefix)["dead"] == 0


def test_v1_created_deal_is_linked_through_the_contact_and_verified(rd, db, rdb, key_prefix,
                                                                    new_ingest, start_worker):
    sid, created, row = _deliver_unknown_caller("v1", rd, db, rdb, key_prefix, new_ingest,
                                                start_worker)
    cid = created["id"]
    post = rd.requests(method="POST", path=r"^/api/v1/deals$")
    assert len(post) == 1 and "contacts" not in post[0]["body"], post
    log = rd.requests(path=r"^/api/v1/contacts/" + cid + "$")
    calls = [(e["method"], e["status"]) for e in log]
    assert calls == [("GET", 200), ("PUT", 200), ("GET", 200)], calls
    assert log[1]["body"]["contact"]["deal_ids"] == [row["rd_deal_id"]]
    deal = next(d for d in rd.deals() if d["id"] == row["rd_deal_id"])
    assert deal["contact_ids"] == [cid]
    assert len(rd.notes_of(sid)) == 1
    assert row["rd_contact_id"] == cid


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_task_mode_on_a_free_plan_falls_back_to_type_task(api, rd, db, rdb, key_prefix,
                                                          new_ingest, start_worker, admin_env):
    seed_standard_contact(rd)
    rd.control("POST", "/_mock/plan", {"call_tasks": False})
    ingest = new_ingest()
    worker = start_worker(api, env={"CALLLOG_MODE": "task"})
    diag = diagnostics(rd, db, rdb, key_prefix, [worker])
    sids = [new_sid() for _ in range(3)]
    for sid in sids:
        send_call(ingest, sid)
        wait_delivered(db, [sid], 30, diag)
    tasks = rd.control("GET", "/_mock/tasks")["tasks"]
    assert len(tasks) == 3 and {t["type"] for t in tasks} == {"task"}, tasks
    assert all(t["done"] for t in tasks), tasks
    refused = [r for r in rd.requests(method="POST") if r["path"].endswith("/tasks")
               and r["status"] == 403]
    assert len(refused) == 1, refused
    plan = rdb.hgetall(f"{key_prefix}:rdstation:plan")
    assert plan.get("call_task") == "refused" and int(plan["call_task_at"]) > 0, plan
    warned = [r for r in worker.log_records() if r.get("level") == "warn"
              and "type task" in r.get("msg", "")]
    assert len(warned) == 1, warned
    assert queue_state(rdb, key_prefix)["dead"] == 0
    status = run_admin(["status"], admin_env)
    assert "call tasks refused (free plan)" in status.stdout, status.stdout


def test_user_map_by_email_writes_the_note_as_the_resolved_user(rd, db, rdb, key_prefix,
                                                                new_ingest, start_worker):
    recent, _ = seed_standard_contact(rd)
    seller = "5e00000000000000000000b7"
    rd.control("POST", "/_mock/users", {"id": seller, "email": "vendas@example.com",
                                        "name": "Vendas"})
    ingest = new_ingest()
    worker = start_worker("v1", env={"RDSTATION_USER_MAP": f"{OUR_NUMBER}=Vendas@Example.COM"})
    diag = diagnostics(rd, db, rdb, key_prefix, [worker])
    sid = new_sid()
    send_call(ingest, sid)
    wait_delivered(db, [sid], 30, diag)
    notes = rd.notes_of(sid)
    assert len(notes) == 1 and notes[0]["user_id"] == seller and notes[0]["deal_id"] == recent
    assert len(rd.requests(method="GET", path=r"/users$")) == 1


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_user_map_with_an_unknown_email_refuses_the_start(api, rd, tw, db, redis_url,
                                                          database_url, key_prefix):
    env = worker_settings(api, redis_url, key_prefix, database_url, rd, tw, "map",
                          free_port())
    env["RDSTATION_USER_MAP"] = f"{OUR_NUMBER}=ninguem@example.com"
    res = _run_worker_once(clean_env(env))
    out = (res.stdout + res.stderr).strip()
    assert res.returncode == 2, out
    # One refusal line (v2 may log its token refresh, as JSON, before it).
    refusal = [line for line in out.splitlines() if not line.startswith("{")]
    assert len(refusal) == 1, out
    assert refusal[0].startswith("calllog-worker: setting RDSTATION_USER_MAP"), out
    assert "ninguem@example.com" in refusal[0], out
