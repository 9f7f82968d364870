"""test_phone_index — the phone index and the limiter's lanes end to end (issue 11).

Real calllog-ingest and calllog-worker, real Redis and PostgreSQL, the RD Station mock
(its contact list and deal list are the ones the sync pages). Checks worker/phone_index.h:
once the index is built a first-time caller costs one RD request (the note); a contact
added after the last refresh is still found (the live look-up is the fallback); a deal
closed before the last refresh receives no note; and the sync, in the limiter's lowest
lane, sends nothing while notes wait for budget. Outcomes are awaited by polling, never
by sleeping; nothing here is timed.
"""

import re

import pytest

from worker_env import (  # noqa: F401  (fixtures are found by name)
    admin_env, database_url, db, diagnostics, ingests, new_ingest, new_sid, queues_empty, rd, rd_server,
    run_admin, send_call, start_worker, tw, tw_server, wait_until)

LOOKUPS = "calllog_worker_lookups_total"
RD_OWNER = "5e00000000000000000000f2"  # a deal owner who is not the default RD user


def phone(i):
    """The i-th test caller, E.164 (São Paulo mobiles)."""
    return f"+551197{i:07d}"


def national(i):
    """The same line as phone(i), typed the way an RD user would."""
    n = f"97{i:07d}"
    return f"(11) {n[:5]}-{n[5:]}"


def seed_callers(rd, first, count):
    """Contacts first..first+count-1, each with one open deal. Returns {i: deal id}."""
    deals = {}
    for i in range(first, first + count):
        res = rd.seed_contact({"name": f"Cliente {i}", "phones": [national(i)],
                               "deals": [{"name": f"Negócio {i}", "status": "ongoing",
                                          "updated_at": "2026-11-20T00:00:00Z"}]})
        deals[i] = res["deal_ids"][0]
    return deals


def refreshed_ms(rdb, prefix):
    """When the index was last refreshed (0 when never)."""
    v = rdb.hget(f"{prefix}:phoneidx:meta", "refreshed_ms")
    return int(v) if v else 0


def wait_refresh_after(rdb, prefix, since_ms, diag, timeout=30):
    """Waits for a refresh newer than `since_ms`; returns its time."""
    wait_until(lambda: refreshed_ms(rdb, prefix) > since_ms, timeout, "a phone index refresh",
               diag)
    return refreshed_ms(rdb, prefix)


def index_env(ttl_s=600, **extra):
    env = {"RDSTATION_PHONE_INDEX": "1", "CACHE_TTL_S": str(ttl_s)}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def deliver(db, sids, diag, timeout=30):
    def done():
        states = db.states(sids)
        return len(states) == len(sids) and set(states.values()) == {"delivered"}
    wait_until(done, timeout, f"{len(sids)} call(s) delivered", diag)


def live_lookups(rd, since):
    """The contact searches and deal look-ups RD received after `since` (not listings)."""
    return [q for q in rd.requests(method="GET", since=since)
            if re.search(r"phone|contact_id", q["query"] or "") or
            re.search(r"/(contacts|deals)/[^/]+$", q["path"])]


def last_seq(rd):
    return max((q["seq"] for q in rd.requests()), default=0)


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_first_time_callers_cost_one_request_once_the_index_is_built(
        api, rd, db, rdb, key_prefix, new_ingest, start_worker, admin_env):
    deals = seed_callers(rd, 1, 250)  # more than one v1 page (200) and v2 page (100)
    ingest = new_ingest()
    worker = start_worker(api, env=index_env())
    diag = diagnostics(rd, db, rdb, key_prefix, [worker])
    wait_refresh_after(rdb, key_prefix, 0, diag)
    meta = rdb.hgetall(f"{key_prefix}:phoneidx:meta")
    assert int(meta["contacts"]) == 250 and int(meta["phones"]) == 250, meta
    seq = last_seq(rd)

    callers = [3, 77, 150, 201, 249]
    sids = {i: new_sid() for i in callers}
    for i, sid in sids.items():
        send_call(ingest, sid, caller=phone(i))
    deliver(db, list(sids.values()), diag)

    for i, sid in sids.items():
        notes = rd.notes_of(sid)
        assert len(notes) == 1 and notes[0]["deal_id"] == deals[i], (i, notes)
    status = run_admin(["status"], admin_env)
    assert re.search(r"phone index   refreshed .*: 250 contacts, 250 phones, \d+ pages", status.stdout), \
        status.stdout
    searches = live_lookups(rd, seq)
    assert not searches, f"first-time callers were looked up live: {searches}"
    assert worker.metric(LOOKUPS, source="index") == len(callers)
    assert worker.metric(LOOKUPS, source="rdstation") == 0


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_a_contact_added_after_the_refresh_is_found_live(api, rd, db, rdb, key_prefix,
                                                         new_ingest, start_worker):
    seed_callers(rd, 1, 3)
    ingest = new_ingest()
    worker = start_worker(api, env=index_env())
    diag = diagnostics(rd, db, rdb, key_prefix, [worker])
    wait_refresh_after(rdb, key_prefix, 0, diag)
    late = seed_callers(rd, 500, 1)[500]  # not in the index until the next refresh
    sid = new_sid()
    send_call(ingest, sid, caller=phone(500))
    deliver(db, [sid], diag)
    notes = rd.notes_of(sid)
    assert len(notes) == 1 and notes[0]["deal_id"] == late, notes
    assert worker.metric(LOOKUPS, source="rdstation") == 1
    assert worker.metric(LOOKUPS, source="index") == 0


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_a_deal_closed_before_the_refresh_receives_no_note(api, rd, db, rdb, key_prefix,
                                                           new_ingest, start_worker):
    res = rd.seed_contact({"name": "Maria", "phones": [national(7)], "deals": [
        {"name": "Antigo", "status": "ongoing", "updated_at": "2026-10-01T00:00:00Z"},
        {"name": "Recente", "status": "ongoing", "updated_at": "2026-11-20T00:00:00Z"}]})
    older, recent = res["deal_ids"]
    ingest = new_ingest()
    worker = start_worker(api, env=index_env(ttl_s=2))  # a refresh every 2 s
    diag = diagnostics(rd, db, rdb, key_prefix, [worker])
    at = wait_refresh_after(rdb, key_prefix, 0, diag)

    first = new_sid()
    send_call(ingest, first, caller=phone(7))
    deliver(db, [first], diag)
    assert rd.notes_of(first)[0]["deal_id"] == recent

    # Won in RD: the deal is closed, but the updated_at of the other stays older.
    rd.control("POST", f"/_mock/deals/{recent}",
               {"status": "won", "updated_at": "2026-11-21T00:00:00Z"})
    wait_refresh_after(rdb, key_prefix, at, diag)
    second = new_sid()
    send_call(ingest, second, caller=phone(7))
    deliver(db, [second], diag)
    notes = rd.notes_of(second)
    assert len(notes) == 1 and notes[0]["deal_id"] == older, (
        f"the note went to {notes[0]['deal_id']}, closed before the index's last refresh")
    assert worker.metric(LOOKUPS, source="index") == 2


def test_the_sync_sends_nothing_while_notes_wait_for_budget(rd, db, rdb, key_prefix,
                                                            new_ingest, start_worker):
    seed_callers(rd, 1, 450)  # three v1 pages per refresh
    ingest = new_ingest()
    # 120/min: notes wait for budget as soon as more than the burst are queued.
    env = index_env(ttl_s=3, RDSTATION_RATE_LIMIT_PER_MINUTE=120, RDSTATION_RATE_BURST=2,
                    WORKER_LEASE_MS=60000, WORKER_CLAIM_IDLE_MS=45000)
    worker = start_worker("v1", env=env)
    diag = diagnostics(rd, db, rdb, key_prefix, [worker])
    wait_refresh_after(rdb, key_prefix, 0, diag)

    sids = [new_sid() for _ in range(24)]  # 12 s of budget: several refreshes fall due
    for k, sid in enumerate(sids):
        send_call(ingest, sid, caller=phone(1 + k))
    deliver(db, sids, diag, timeout=60)

    posts = [q for q in rd.requests(method="POST") if q["path"] == "/api/v1/activities"]
    assert len(posts) == len(sids)
    first, last = posts[0]["seq"], posts[-1]["seq"]
    listings = [q for q in rd.requests(method="GET")
                if q["path"] == "/api/v1/contacts" and first < q["seq"] < last]
    assert not listings, (f"{len(listings)} sync requests went out between the backlog's "
                          f"first and last note")
    # and the sync resumes once the backlog is gone
    at = refreshed_ms(rdb, key_prefix)
    wait_refresh_after(rdb, key_prefix, at, diag)
    wait_until(lambda: queues_empty(rdb, key_prefix), 20, "stream empty", diag)


def test_v1_without_a_user_id_writes_as_the_owner_learned_once(rd, db, rdb, key_prefix,
                                                               new_ingest, start_worker):
    owner = RD_OWNER
    rd.control("POST", "/_mock/users", {"id": owner, "email": "dono@example.com",
                                        "name": "Dono do Negócio"})
    res = rd.seed_contact({"name": "Maria", "phones": [national(9)], "deals": [
        {"name": "Aberto", "status": "ongoing", "user_id": owner}]})
    ingest = new_ingest()
    worker = start_worker("v1", env=index_env(), unset=("RDSTATION_USER_ID",))
    diag = diagnostics(rd, db, rdb, key_prefix, [worker])
    wait_refresh_after(rdb, key_prefix, 0, diag)
    seq = last_seq(rd)
    sids = [new_sid(), new_sid()]
    for sid in sids:
        send_call(ingest, sid, caller=phone(9))
        deliver(db, [sid], diag)
    for sid in sids:
        notes = rd.notes_of(sid)
        assert len(notes) == 1 and notes[0]["user_id"] == owner, notes
        assert notes[0]["deal_id"] == res["deal_ids"][0]
    owner_reads = [q for q in rd.requests(method="GET", since=seq)
                   if re.search(r"/deals/[^/]+$", q["path"])]
    assert len(owner_reads) == 1, f"the owner was read {len(owner_reads)} times, not once"
