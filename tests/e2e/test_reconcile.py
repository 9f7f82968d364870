"""test_reconcile — Twilio is the source of truth: calls whose webhook never arrived.

The real calllog-worker against real Redis and PostgreSQL; Twilio's Calls list and RD
Station are the mocks of tests/mocks/. Checks issue "No call left behind": with the
ingest down, terminal parent calls listed by Twilio are noted within one interval plus
the grace period, exactly once, and their late webhooks change nothing; child legs and
unfinished calls get no note; TWILIO_RECONCILE_NUMBERS restricts it; paging follows
next_page_uri; a 429 from the list is backed off and the pass tried again; exactly one
worker reconciles at a time and another takes over when it dies; calllog-admin status
shows the checkpoint and the holder; the worker's lease keeper lets a call survive a
lease far shorter than its RD request.
"""

import time

from conftest import metric_sum
from worker_env import (  # noqa: F401  (fixtures are found by name)
    CALLER, OUR_NUMBER, admin_env, database_url, db, diagnostics, ingests, new_ingest,
    new_sid, queues_empty, rd, rd_server, rfc2822, run_admin, seed_standard_contact,
    seed_twilio_call, send_call, start_worker, tw, tw_server, wait_until)

PROCESSED = "calllog_worker_processed_total"
INTERVAL_MS = 1000
GRACE_MS = 1500
FAST = {"TWILIO_RECONCILE_INTERVAL_MS": str(INTERVAL_MS),
        "TWILIO_RECONCILE_GRACE_MS": str(GRACE_MS),
        "TWILIO_RECONCILE_LEASE_MS": "3000"}


def list_requests(tw):
    return [r for r in tw.requests(method="GET") if r["path"].endswith("/Calls.json")]


def test_calls_without_webhook_are_noted_once_and_late_webhooks_change_nothing(
        rd, tw, db, rdb, key_prefix, new_ingest, start_worker, admin_env):
    deal, _ = seed_standard_contact(rd)
    ended = time.time()
    answered = seed_twilio_call(tw, status="completed", ended=ended)
    missed = seed_twilio_call(tw, status="no-answer", ended=ended)
    busy = seed_twilio_call(tw, status="busy", ended=ended)
    child = seed_twilio_call(tw, status="completed", parent=answered, frm=OUR_NUMBER,
                        to="+5511900001111", direction="outbound-dial", ended=ended)
    live = seed_twilio_call(tw, status="in-progress")
    parents = [answered, missed, busy]

    w = start_worker("v1", env=FAST)  # the ingest is down: no webhook arrives
    diag = diagnostics(rd, db, rdb, key_prefix, [w])
    wait_until(lambda: all(len(rd.notes_of(s)) == 1 for s in parents),
               (INTERVAL_MS + GRACE_MS) / 1000 + 10, "notes for the calls Twilio lists", diag)
    noted_after = time.time() - ended
    assert noted_after <= (INTERVAL_MS + GRACE_MS) / 1000 + 5, noted_after
    assert all(n["deal_id"] == deal for s in parents for n in rd.notes_of(s))
    assert "não atendida" in rd.notes_of(missed)[0]["text"]
    assert rd.notes_of(child) == [] and rd.notes_of(live) == []
    states = db.states([answered, missed, busy, child, live])
    assert states == {answered: "delivered", missed: "delivered", busy: "delivered"}, states
    assert db.row(answered)["event"]["source"] == "reconcile"
    assert w.metric("calllog_reconcile_backfilled_total") == 3
    assert rdb.get(f"{key_prefix}:reconcile:leader") == w.name
    wait_until(lambda: w.metric("calllog_reconcile_leader") == 1, 10,  # refreshed every 5 s
               "the leader gauge", diag)

    # The ingest is back; Twilio's late webhooks (and one more pass) change nothing.
    ingest = new_ingest()
    for sid, status in ((answered, "completed"), (missed, "no-answer"), (busy, "busy")):
        send_call(ingest, sid, status=status)
    wait_until(lambda: w.metric(PROCESSED, outcome="duplicate") >= 3, 20,
               "late webhooks seen as duplicates", diag)
    passes = w.metric("calllog_reconcile_runs_total", result="ok")
    wait_until(lambda: w.metric("calllog_reconcile_runs_total", result="ok") >= passes + 2, 20,
               "two more passes", diag)
    assert all(len(rd.notes_of(s)) == 1 for s in parents)
    assert w.metric("calllog_reconcile_backfilled_total") == 3, "enqueued once only"
    wait_until(lambda: queues_empty(rdb, key_prefix), 20, "queues empty", diag)

    out = run_admin(["status"], admin_env)
    assert out.returncode == 0, out.stderr
    assert "reconciler    checkpoint 20" in out.stdout, out.stdout
    assert f"held by {w.name}" in out.stdout, out.stdout


def test_numbers_restrict_reconciliation_and_paging_follows_next_page_uri(
        rd, tw, db, rdb, key_prefix, start_worker):
    seed_standard_contact(rd)
    ended = time.time() - 5
    other_line = "+551130009999"
    tw.control("POST", "/_mock/calls", {"calls": [
        {"sid": new_sid(), "status": "completed", "from": CALLER, "to": other_line,
         "start_time": rfc2822(ended - 60), "end_time": rfc2822(ended), "duration": "9"}
        for _ in range(1100)]})
    ours = [seed_twilio_call(tw, ended=ended), seed_twilio_call(tw, ended=ended, direction="outbound-api",
                                                      frm=OUR_NUMBER, to=CALLER)]
    w = start_worker("v1", env={**FAST, "TWILIO_RECONCILE_NUMBERS": OUR_NUMBER})
    diag = diagnostics(rd, db, rdb, key_prefix, [w])
    wait_until(lambda: all(len(rd.notes_of(s)) == 1 for s in ours), 20, "our lines noted", diag)
    assert len(rd.notes()) == 2, "calls on other lines are not ours to log"
    # Each page's calls are appended as it is read, so the notes may come before page 3.
    wait_until(lambda: len(list_requests(tw)) >= 3, 20, "the pass reads all three pages", diag)
    first_pass = list_requests(tw)[:3]
    assert len(first_pass) == 3, "1102 calls in pages of 500"
    assert "EndTime%3E=" in first_pass[0]["query"] or "EndTime>" in str(first_pass[0]), first_pass
    assert db.states(ours) == {s: "delivered" for s in ours}


def test_a_429_from_the_calls_list_is_backed_off_and_the_pass_retried(
        rd, tw, db, rdb, key_prefix, start_worker):
    seed_standard_contact(rd)
    tw.fault(method="GET", path=r"/Calls\.json$", status=429, count=3)  # one whole pass
    sid = seed_twilio_call(tw, ended=time.time() - 5)
    w = start_worker("v1", env=FAST)
    diag = diagnostics(rd, db, rdb, key_prefix, [w])
    wait_until(lambda: len(rd.notes_of(sid)) == 1, 30, "the note after the backoff", diag)
    assert w.metric("calllog_reconcile_runs_total", result="error") >= 1
    failed = [r for r in w.log_records() if r.get("msg") == "reconciliation failed, retrying later"]
    assert failed and "429" in failed[0]["error"], failed


def test_one_reconciler_at_a_time_and_another_takes_over_when_it_dies(
        rd, tw, db, rdb, key_prefix, start_worker):
    seed_standard_contact(rd)
    a = start_worker("v1", env=FAST)
    b = start_worker("v1", env=FAST)
    diag = diagnostics(rd, db, rdb, key_prefix, [a, b])
    leader_key = f"{key_prefix}:reconcile:leader"
    wait_until(lambda: rdb.get(leader_key) in (a.name, b.name), 10, "a leader", diag)
    holder, other = (a, b) if rdb.get(leader_key) == a.name else (b, a)
    time.sleep(2)
    assert [r for r in holder.log_records() if r.get("msg") == "reconciled"], \
        "the lease holder reconciles"
    assert not [r for r in other.log_records() if r.get("msg") == "reconciled"], \
        "only the lease holder reconciles"

    holder.kill()
    sid = seed_twilio_call(tw, ended=time.time())
    wait_until(lambda: rdb.get(leader_key) == other.name, 10, "the other worker takes over", diag)
    wait_until(lambda: len(rd.notes_of(sid)) == 1, 20, "the new leader backfills", diag)
    assert metric_sum(other.metrics(), "calllog_reconcile_backfilled_total") == 1


def test_lease_keeper_keeps_a_call_whose_rd_request_outlasts_the_lease(
        rd, tw, db, rdb, key_prefix, new_ingest, start_worker):
    """A 1 s lease and visibility timeout, an RD look-up that takes 4 s: the holder renews
    both, so no other worker takes the call over and there is still one note."""
    seed_standard_contact(rd)
    rd.fault(method="GET", path=r"^/api/v1/contacts", status=0, delay_ms=4000, count=1)
    short = {"WORKER_LEASE_MS": "1000", "WORKER_CLAIM_IDLE_MS": "1000"}
    ingest = new_ingest()
    a = start_worker("v1", env=short)
    b = start_worker("v1", env=short)
    diag = diagnostics(rd, db, rdb, key_prefix, [a, b])
    sid = new_sid()
    send_call(ingest, sid)
    wait_until(lambda: db.states([sid]).get(sid) == "delivered", 30, "delivered", diag)
    assert len(rd.notes_of(sid)) == 1
    assert db.row(sid)["attempts"] == 1, "never taken over"
    reclaimed = [r for w in (a, b) for r in w.log_records()
                 if r.get("msg") == "reclaimed an entry idle on another consumer"]
    assert not reclaimed, reclaimed
