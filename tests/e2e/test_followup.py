"""test_followup — missed calls become one follow-up task, and the callback closes it.

Issue 12 / design §3 "Missed calls", end to end: the real ingest and worker, a real Redis
and PostgreSQL (both migrations applied), the RD Station mock. An inbound no-answer/busy/
canceled call from a known contact gets its note and one open task of type call on the
deal, assigned to the deal's owner, due CALLLOG_MISSED_CALL_DUE_MIN minutes after the call
moved into CALLLOG_BUSINESS_HOURS; a second missed call adds a note only; the next answered
call, either direction, marks the task done; outbound missed calls and
CALLLOG_MISSED_CALL_TASK=0 open nothing; a POST /tasks whose answer is lost after RD
created the task is recovered by the follow-up marker, not doubled. On v1 without
RDSTATION_USER_ID notes and tasks are the deal owner's ("Who wrote it"). Outcomes are
awaited by polling Postgres and the mock, never by sleeping.
"""

import datetime
import subprocess

import pytest

from conftest import bin_path, clean_env, free_port
from worker_env import (  # noqa: F401  (fixtures are found by name)
    CALLER, database_url, db, diagnostics, ingests, marker, new_ingest, new_sid, rd,
    rd_server, send_call, start_worker, tw, tw_server, wait_until, worker_settings)

OWNER = "5e00000000000000000000f1"  # the deals' owner, not the default RD user
V1_TASKS = r"^/api/v1/tasks$"
# Friday 2026-12-04 17:40 in São Paulo (UTC-3): +30 min is after 18:00, so Monday 08:00.
FRIDAY_EVENING = "Fri, 04 Dec 2026 20:40:00 +0000"
MONDAY_MORNING_UTC = datetime.datetime(2026, 12, 7, 11, 0, tzinfo=datetime.timezone.utc)
# Tuesday 2026-11-24 17:00 in São Paulo: +30 min is inside business hours.
TUESDAY_AFTERNOON = "Tue, 24 Nov 2026 20:00:00 +0000"
TUESDAY_DUE_UTC = datetime.datetime(2026, 11, 24, 20, 30, tzinfo=datetime.timezone.utc)
SUBJECT = "Retornar ligação — Maria Souza (11) 97173-0783"


def followup_marker(sid):
    """The marker of call `sid`'s follow-up task (worker/followup.h)."""
    return f"[calllog-followup:{sid}]"


def seed_owned_contact(rd):
    """Maria Souza with one open deal owned by OWNER (an account user the mock accepts).
    Returns the deal id."""
    rd.control("POST", "/_mock/users", {"id": OWNER, "email": "dona@example.com",
                                        "name": "Dona do Negócio"})
    res = rd.seed_contact({"name": "Maria Souza", "phones": ["(11) 97173-0783"],
                           "deals": [{"name": "Aberto", "status": "ongoing",
                                      "user_id": OWNER}]})
    return res["deal_ids"][0]


def tasks(rd, deal):
    """The deal's tasks as the mock holds them."""
    return rd.control("GET", f"/_mock/tasks?deal_id={deal}")["tasks"]


def followup_row(db, deal):
    """The deal's calllog.followups row, or None."""
    rows = db.query("SELECT * FROM calllog.followups WHERE deal_id = %s", deal)
    return rows[0] if rows else None


def deliver(db, sids, diag, timeout=40):
    """Waits until every call in `sids` is delivered."""
    wait_until(lambda: set(db.states(list(sids)).values()) == {"delivered"}
               and len(db.states(list(sids))) == len(sids), timeout,
               f"{len(sids)} call(s) delivered", diag)


def one_missed_call(api, rd, db, rdb, key_prefix, new_ingest, start_worker):
    """Starts an ingest and a worker, sends one inbound no-answer call and waits until it
    is delivered. Returns its CallSid."""
    ingest = new_ingest()
    worker = start_worker(api)
    sid = new_sid()
    send_call(ingest, sid, "no-answer", duration="0")
    deliver(db, [sid], diagnostics(rd, db, rdb, key_prefix, [worker]))
    return sid


def due_of(task):
    """A mock task's due time (UTC, aware)."""
    return datetime.datetime.fromisoformat(task["due_date"].replace("Z", "+00:00"))


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_missed_call_opens_one_task_for_the_deal_owner(api, rd, db, rdb, key_prefix,
                                                       new_ingest, start_worker):
    """v1 without RDSTATION_USER_ID (and v2): the note and the follow-up task are the
    deal owner's; the task is type call, open, with the subject, the marker, and a due
    time moved from Friday evening to Monday 08:00."""
    deal = seed_owned_contact(rd)
    ingest = new_ingest()
    worker = start_worker(api, unset=("RDSTATION_USER_ID",))
    diag = diagnostics(rd, db, rdb, key_prefix, [worker])
    sid = new_sid()
    send_call(ingest, sid, "no-answer", duration="0", Timestamp=FRIDAY_EVENING)
    deliver(db, [sid], diag)

    notes = rd.notes(deal)
    assert len(notes) == 1 and marker(sid) in notes[0]["text"], notes
    assert notes[0]["user_id"] == OWNER, notes
    found = tasks(rd, deal)
    assert len(found) == 1, found
    task = found[0]
    assert task["type"] == "call" and not task["done"], task
    assert task["subject"] == SUBJECT, task
    assert task["user_ids"] == [OWNER], task
    assert followup_marker(sid) in task["notes"], task
    assert marker(sid) not in task["notes"], "the follow-up must not carry the note's marker"
    assert due_of(task) == MONDAY_MORNING_UTC, task
    row = followup_row(db, deal)
    assert row["state"] == "open" and row["task_id"] == task["id"], row
    assert row["call_sid"] == sid and row["customer"] == CALLER, row
    assert worker.metric("calllog_worker_followups_total", outcome="opened") == 1


def test_second_missed_call_adds_a_note_and_the_callback_closes_the_task(
        rd, db, rdb, key_prefix, new_ingest, start_worker):
    """Missed → one task (due 30 min later, inside hours); missed again → still one open
    task and a second note; our answered callback (outbound) → the task is done and the
    row closed; a later missed call opens a new task."""
    deal = seed_owned_contact(rd)
    ingest = new_ingest()
    worker = start_worker("v1")
    diag = diagnostics(rd, db, rdb, key_prefix, [worker])
    first, second, callback, later = new_sid(), new_sid(), new_sid(), new_sid()

    send_call(ingest, first, "no-answer", duration="0", Timestamp=TUESDAY_AFTERNOON)
    deliver(db, [first], diag)
    [task] = tasks(rd, deal)
    assert due_of(task) == TUESDAY_DUE_UTC, task
    assert task["user_ids"] == [OWNER], "the task goes to the deal's owner, not the note's author"

    send_call(ingest, second, "busy", duration="0")
    deliver(db, [second], diag)
    assert len(rd.notes(deal)) == 2
    assert [t["id"] for t in tasks(rd, deal)] == [task["id"]], "a second task was opened"
    assert followup_row(db, deal)["call_sid"] == first

    send_call(ingest, callback, "completed", direction="outbound-api", duration="95")
    deliver(db, [callback], diag)
    [done] = tasks(rd, deal)
    assert done["done"], done
    row = followup_row(db, deal)
    assert row["state"] == "closed" and row["closed_by"] == callback, row
    puts = rd.requests(method="PUT", path=rf"^/api/v1/tasks/{task['id']}$")
    assert len(puts) == 1, puts

    send_call(ingest, later, "canceled", duration="0")
    deliver(db, [later], diag)
    now_open = [t for t in tasks(rd, deal) if not t["done"]]
    assert len(now_open) == 1 and followup_marker(later) in now_open[0]["notes"], now_open
    assert worker.metric("calllog_worker_followups_total", outcome="already_open") == 1
    assert worker.metric("calllog_worker_followups_total", outcome="closed") == 1


def test_outbound_missed_and_switched_off_open_no_task(rd, db, rdb, key_prefix, new_ingest,
                                                       start_worker):
    """A customer who did not answer our call needs no call-back task; with
    CALLLOG_MISSED_CALL_TASK=0 an inbound missed call gets its note only."""
    deal = seed_owned_contact(rd)
    ingest = new_ingest()
    worker = start_worker("v1")
    diag = diagnostics(rd, db, rdb, key_prefix, [worker])
    outbound = new_sid()
    send_call(ingest, outbound, "no-answer", direction="outbound-api", duration="0")
    deliver(db, [outbound], diag)
    assert tasks(rd, deal) == [] and followup_row(db, deal) is None
    worker.stop()

    worker = start_worker("v1", env={"CALLLOG_MISSED_CALL_TASK": "0"})
    diag = diagnostics(rd, db, rdb, key_prefix, [worker])
    inbound = new_sid()
    send_call(ingest, inbound, "no-answer", duration="0")
    deliver(db, [inbound], diag)
    assert len(rd.notes(deal)) == 2
    assert tasks(rd, deal) == [] and followup_row(db, deal) is None
    assert rd.requests(method="POST", path=V1_TASKS) == []


def test_lost_answer_after_rd_created_the_task_is_recovered_by_marker(
        rd, db, rdb, key_prefix, new_ingest, start_worker):
    """RD creates the task but its answer is lost (502): the call goes back to the retry
    set with its note already in RD; the next attempt finds the note by its marker and the
    task by the follow-up marker. One note, one task, recorded open."""
    deal = seed_owned_contact(rd)
    rd.fault(method="POST", path=V1_TASKS, status=502, count=1, replace=True)
    sid = one_missed_call("v1", rd, db, rdb, key_prefix, new_ingest, start_worker)
    assert len(rd.notes(deal)) == 1, rd.notes(deal)
    [task] = tasks(rd, deal)
    assert len(rd.requests(method="POST", path=V1_TASKS)) == 1
    row = followup_row(db, deal)
    assert row["state"] == "open" and row["task_id"] == task["id"], row
    assert db.row(sid)["recovered"] is True


def test_free_plan_follow_up_is_type_task(rd, db, rdb, key_prefix, new_ingest, start_worker):
    """A plan that refuses tasks of type call gets the follow-up as type task."""
    deal = seed_owned_contact(rd)
    rd.control("POST", "/_mock/plan", {"call_tasks": False})
    one_missed_call("v2", rd, db, rdb, key_prefix, new_ingest, start_worker)
    [task] = tasks(rd, deal)
    assert task["type"] == "task" and task["status"] == "open", task


def refusal(env):
    """Runs the worker once with `env`; returns its one output line (it must refuse)."""
    res = subprocess.run([str(bin_path("calllog-worker"))], env=env, capture_output=True,
                         text=True, timeout=30, stdin=subprocess.DEVNULL)
    out = (res.stdout + res.stderr).strip()
    assert res.returncode != 0 and len(out.splitlines()) == 1, out
    return out


@pytest.mark.parametrize("hours,why", [
    ("mon-fri 8-18", "bad start time"),
    ("fri-mon 08:00-18:00", "wrap"),
    ("mon-fri 18:00-08:00", "end after it starts"),
])
def test_bad_business_hours_refuse_the_start(hours, why, rd, tw, db, database_url, redis_url,
                                             key_prefix):
    env = worker_settings("v1", redis_url, key_prefix, database_url, rd, tw, "hours",
                          free_port())
    env["CALLLOG_BUSINESS_HOURS"] = hours
    out = refusal(clean_env(env))
    assert "CALLLOG_BUSINESS_HOURS" in out and why in out, out


def test_missing_followups_table_refuses_the_start_unless_switched_off(
        rd, tw, db, database_url, redis_url, key_prefix, start_worker):
    db.query("DROP TABLE calllog.followups")
    env = worker_settings("v1", redis_url, key_prefix, database_url, rd, tw, "nofollowups",
                          free_port())
    out = refusal(clean_env(env))
    assert "calllog.followups is missing" in out and "20261204000000" in out, out
    start_worker("v1", env={"CALLLOG_MISSED_CALL_TASK": "0"})  # serves /metrics
