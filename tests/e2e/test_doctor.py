"""End-to-end tests of `calllog-admin doctor` (issue 9): the real program against the
real Redis and PostgreSQL of the test stack and the Twilio/RD Station mocks.

All ok → exit 0; each failure of the acceptance list → exit 1 with its line: a wrong RD
token, Redis without AOF, Redis with an evicting policy, a missing migration, a Twilio
number whose callback points elsewhere, and (`doctor signature`) a signature computed for
http:// when PUBLIC_BASE_URL is https://. `--json` parses."""

import json
import urllib.parse

import psycopg2
import pytest
import redis

from conftest import RedisServer, clean_env
from twilio_sign import compute_signature
from worker_env import (  # noqa: F401  (fixtures are found by name)
    OUR_NUMBER, RD_USER_ID, database_url, db, rd, rd_server, run_admin, tw, tw_server,
    worker_settings)

PUBLIC_BASE_URL = "https://calls.example.com"
CALLBACK = PUBLIC_BASE_URL + "/twilio/log-call#rc=3&rp=all&ct=3000&rt=10000"
TW_AUTH_TOKEN = "mock-auth-token"  # the Twilio mock's default auth token


def doctor_env(redis_url, prefix, database_url, rd, tw, api="v1", **extra):
    """The worker's settings plus the ingest's PUBLIC_BASE_URL and TWILIO_AUTH_TOKEN."""
    env = worker_settings(api, redis_url, prefix, database_url, rd, tw, "doctor", 9)
    env.update({"PUBLIC_BASE_URL": PUBLIC_BASE_URL, "TWILIO_AUTH_TOKEN": TW_AUTH_TOKEN,
                "LOG_LEVEL": "error"})
    env.update(extra)
    return clean_env(env)


def seed_numbers(tw, *callbacks):
    """One incoming number per callback (+551130001000, …001, …)."""
    tw.control("POST", "/_mock/numbers", {"numbers": [
        {"phone_number": "+5511300010%02d" % i, "status_callback": cb}
        for i, cb in enumerate(callbacks)], "replace": True})


def lines(res):
    """{check: (status, whole line)} of a text report."""
    out = {}
    for line in res.stdout.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2:
            out[parts[1]] = (parts[0], line)
    return out


def run_doctor(env, *args):
    res = run_admin(["doctor", *args], env, timeout=60)
    assert "AddressSanitizer" not in res.stderr, res.stderr
    return res


@pytest.fixture
def stack(redis_url, key_prefix, database_url, db, rd, tw):
    """A healthy deployment: migrated database, consumer group, numbers pointing at us."""
    r = redis.Redis.from_url(redis_url)
    r.xgroup_create(f"{key_prefix}:events", "calllog-workers", id="0", mkstream=True)
    seed_numbers(tw, CALLBACK, CALLBACK)
    return doctor_env(redis_url, key_prefix, database_url, rd, tw)


def assert_fails_with(res, check, *words):
    """Exit 1 and a FAIL line for `check` that mentions every word."""
    got = lines(res)
    assert res.returncode == 1, res.stdout + res.stderr
    assert check in got, res.stdout
    status, line = got[check]
    assert status == "FAIL", line
    for w in words:
        assert w in line, line
    return line


def test_all_ok_exits_0(stack):
    res = run_doctor(stack)
    assert res.returncode == 0, res.stdout + res.stderr
    got = lines(res)
    for check in ("settings", "redis.reachable", "redis.aof", "redis.eviction", "redis.group",
                  "postgres.reachable", "postgres.schema", "postgres.roles", "rd.ratelimit",
                  "rd.credentials", "rd.users", "twilio.credentials", "twilio.auth_token",
                  "twilio.numbers"):
        assert got.get(check, ("missing",))[0] == "ok", res.stdout
    assert "GET /token/check answered 200" in got["rd.credentials"][1]


def test_json_parses(stack):
    res = run_doctor(stack, "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    assert doc["ok"] is True
    assert {c["status"] for c in doc["checks"]} == {"ok"}
    assert all(set(c) == {"check", "status", "reason", "fix"} for c in doc["checks"])


def test_json_reports_a_failure(stack):
    stack["RDSTATION_TOKEN"] = "wrong-token"
    res = run_doctor(stack, "--json")
    assert res.returncode == 1
    doc = json.loads(res.stdout)
    assert doc["ok"] is False
    failed = [c for c in doc["checks"] if c["status"] == "fail"]
    assert [c["check"] for c in failed] == ["rd.credentials"]
    assert failed[0]["fix"]


def test_wrong_rd_token(stack):
    stack["RDSTATION_TOKEN"] = "wrong-token"
    line = assert_fails_with(run_doctor(stack), "rd.credentials", "refused RDSTATION_TOKEN",
                             "401", "fix:")
    assert "wrong-token" not in line


def test_token_check_404_falls_back_to_users(stack, rd):
    """/token/check's answer is not verified on real accounts: a 404 there is not a
    verdict, GET /users decides and the line says what was seen."""
    rd.fault(path="/api/v1/token/check", status=404, count=10)
    res = run_doctor(stack)
    assert res.returncode == 0, res.stdout
    assert "GET /token/check answered 404, so GET /users decided" in lines(res)["rd.credentials"][1]


def test_unknown_rd_user(stack):
    stack["RDSTATION_USER_MAP"] = OUR_NUMBER + "=5e00000000000000000000ff"
    assert_fails_with(run_doctor(stack), "rd.users", "5e00000000000000000000ff", RD_USER_ID)


def test_redis_without_aof(tmp_path, key_prefix, database_url, db, rd, tw):
    server = RedisServer(tmp_path / "redis").start()
    try:
        server.client().config_set("appendonly", "no")
        seed_numbers(tw, CALLBACK)
        env = doctor_env(server.url, key_prefix, database_url, rd, tw)
        assert_fails_with(run_doctor(env), "redis.aof", "appendonly is off", "appendonly yes")
    finally:
        server.stop()


def test_redis_with_an_evicting_policy(tmp_path, key_prefix, database_url, db, rd, tw):
    server = RedisServer(tmp_path / "redis").start()
    try:
        server.client().config_set("maxmemory-policy", "allkeys-lru")
        seed_numbers(tw, CALLBACK)
        env = doctor_env(server.url, key_prefix, database_url, rd, tw)
        assert_fails_with(run_doctor(env), "redis.eviction", "allkeys-lru", "noeviction")
    finally:
        server.stop()


@pytest.fixture
def empty_database(database_url):
    """A fresh database on the test server with no migration applied, named after the
    test database (the Release and ASan runs share the server, each with its own)."""
    parts = urllib.parse.urlsplit(database_url)
    name = parts.path.lstrip("/") + "_doctor_empty"
    admin = psycopg2.connect(database_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.execute(f'CREATE DATABASE "{name}"')
    yield urllib.parse.urlunsplit(parts._replace(path="/" + name))
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def test_missing_migration(stack, empty_database):
    stack["DATABASE_URL"] = empty_database
    assert_fails_with(run_doctor(stack), "postgres.schema", "migration missing",
                      "calllog.deliveries is missing", "deploy/supabase/migrations")


def test_missing_followups_migration(stack, db):
    """The first migration alone: the follow-up table is missing while
    CALLLOG_MISSED_CALL_TASK is on (its default)."""
    db.query("DROP TABLE calllog.followups")
    assert_fails_with(run_doctor(stack), "postgres.schema", "migration missing",
                      "calllog.followups is missing", "20261204000000")


def test_api_role_that_can_read(stack, db):
    """Supabase: anon granted SELECT and a policy on the ledger is a FAIL."""
    # Roles are server-wide, and the Release and ASan runs share the server: the role may
    # exist already, or be created by the other run at the same moment; it is never dropped.
    db.query("DO $$ BEGIN CREATE ROLE anon NOLOGIN; "
             "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$")
    try:
        assert lines(run_doctor(stack))["postgres.roles"][0] == "ok"
        db.query("GRANT USAGE ON SCHEMA calllog TO anon")
        db.query("GRANT SELECT ON calllog.deliveries TO anon")
        db.query("CREATE POLICY doctor_test ON calllog.deliveries FOR SELECT TO anon USING (true)")
        assert_fails_with(run_doctor(stack), "postgres.roles", "anon", "can read")
    finally:
        db.query("DROP SCHEMA calllog CASCADE")
        db.query("DROP OWNED BY anon")  # in this database only


def test_number_pointing_elsewhere(stack, tw):
    seed_numbers(tw, CALLBACK, "https://old-crm.example.net/hooks/twilio", "")
    line = assert_fails_with(run_doctor(stack), "twilio.numbers", "2 of 3",
                             "+551130001001 → https://old-crm.example.net/hooks/twilio",
                             "+551130001002 → (none)", "#rc=")
    assert "+551130001000 →" not in line


def test_numbers_are_paged(stack, tw):
    """More numbers than one page (doctor asks 100 a page): next_page_uri is followed."""
    seed_numbers(tw, *([CALLBACK] * 150 + ["https://elsewhere.example/x"]))
    assert_fails_with(run_doctor(stack), "twilio.numbers", "1 of 151", "+5511300010150")


def test_wrong_twilio_auth_token(stack):
    stack["TWILIO_AUTH_TOKEN"] = "not-this-accounts-token"
    assert_fails_with(run_doctor(stack), "twilio.auth_token", "TWILIO_AUTH_TOKEN", "401")


def test_v2_without_stored_token_does_not_refresh(stack, rd, key_prefix, redis_url,
                                                  database_url, tw):
    env = doctor_env(redis_url, key_prefix, database_url, rd, tw, api="v2")
    res = run_doctor(env)
    got = lines(res)
    assert got["rd.credentials"][0] == "warn", res.stdout
    assert "rotate" in got["rd.credentials"][1]
    assert rd.requests(path="/oauth2/token") == []
    assert res.returncode == 0, res.stdout
    res = run_doctor(env, "--oauth-refresh")
    assert res.returncode == 0, res.stdout
    assert lines(res)["rd.credentials"][0] == "ok"
    assert len(rd.requests(path="/oauth2/token")) == 1
    # The rotated token is stored: the next run uses it without refreshing.
    res = run_doctor(env)
    assert lines(res)["rd.credentials"][0] == "ok", res.stdout
    assert len(rd.requests(path="/oauth2/token")) == 1


def test_write_test_posts_one_marked_note(stack, rd):
    deal = rd.seed_contact({"name": "Teste", "phones": ["+5511999990000"],
                            "deals": [{"name": "Doctor"}]})["deal_ids"][0]
    res = run_doctor(stack)
    assert rd.notes() == []
    res = run_doctor(stack, "--write-test", deal)
    assert res.returncode == 0, res.stdout
    notes = rd.notes()
    assert len(notes) == 1 and "[calllog doctor]" in notes[0]["text"]
    assert lines(res)["rd.write_test"][0] == "ok"


# ---- doctor signature ------------------------------------------------------------------

PARAMS = {"CallSid": "CA" + "1" * 32, "CallStatus": "completed", "From": "+5511971730783",
          "To": OUR_NUMBER, "Caller": "+5511971730783"}


def signature_run(tmp_path, env, signed_url, request_url=None):
    body = tmp_path / "body.txt"
    body.write_text(urllib.parse.urlencode(PARAMS) + "\n")
    sig = compute_signature(TW_AUTH_TOKEN, signed_url, PARAMS)
    return run_admin(["doctor", "signature", "--url", request_url or signed_url, "--params",
                      str(body), "--signature", sig], env)


def sig_env(**extra):
    return clean_env({"PUBLIC_BASE_URL": PUBLIC_BASE_URL, "TWILIO_AUTH_TOKEN": TW_AUTH_TOKEN,
                      **extra})


def test_signature_ok(tmp_path):
    res = signature_run(tmp_path, sig_env(), PUBLIC_BASE_URL + "/twilio/log-call")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.startswith("ok ")


def test_signature_for_http_when_base_is_https(tmp_path):
    res = signature_run(tmp_path, sig_env(), "http://calls.example.com/twilio/log-call",
                        request_url=PUBLIC_BASE_URL + "/twilio/log-call")
    assert res.returncode == 1, res.stdout + res.stderr
    line = res.stdout.strip()
    assert line.startswith("FAIL ") and "signature" in line
    assert "signed with TWILIO_AUTH_TOKEN for http://calls.example.com/twilio/log-call" in line
    assert "scheme http, not https" in line
    assert "PUBLIC_BASE_URL=http://calls.example.com" in line


def test_signature_json_and_unknown_token(tmp_path):
    res = signature_run(tmp_path, sig_env(TWILIO_AUTH_TOKEN="another-token"),
                        PUBLIC_BASE_URL + "/twilio/log-call")
    assert res.returncode == 1
    assert "no variant of the URL" in res.stdout
    res = run_admin(["doctor", "signature", "--json", "--url", PUBLIC_BASE_URL,
                     "--params", str(tmp_path / "body.txt"), "--signature", "x" * 28],
                    sig_env())
    doc = json.loads(res.stdout)
    assert doc["ok"] is False and doc["checks"][0]["check"] == "signature"


def test_signature_usage_error():
    res = run_admin(["doctor", "signature", "--url", PUBLIC_BASE_URL], sig_env())
    assert res.returncode == 2
    assert "needs --url, --params and --signature" in res.stderr
