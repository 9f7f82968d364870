"""test_recordings — the recording links of notes, end to end (issue 12, "Recording links
that play").

Real calllog-ingest and calllog-worker, real Redis and PostgreSQL; Twilio REST is the mock
(tests/mocks/twilio_mock.py), whose media endpoint serves fixed audio bytes only with
valid Basic auth, as accounts that enforce HTTP auth on media do. The tokens are computed
here with Python's hmac module, independently of the C code. Checks: a valid link gets the
exact bytes the mock serves (streamed), or Twilio's redirect to a signed location passed
on; a missing, forged, other-call or expired token gets 403 and Twilio is never asked; a
recording still processing gets the try-again page; none gets 404; Twilio failing gets
502; media requests beyond RECORDINGS_MAX_CONCURRENT get 503 while webhooks are still
answered; a byte range is passed through (206) so players can seek; SIGTERM ends a
transfer stalled on Twilio and still drains cleanly; the token never reaches the log; the
worker writes the link into the note when RECORDING_LINK_SECRET is set (also while the
recording is still processing), and that very link plays.
"""

import base64
import hashlib
import hmac
import re
import subprocess
import threading
import time
import urllib.parse

import pytest

from conftest import (DEFAULT_TOKEN, PUBLIC_BASE_URL, bin_path, clean_env, free_port,
                      http_request, metric_sum, wait_for)
from worker_env import (  # noqa: F401  (fixtures are found by name)
    CALLER, OUR_NUMBER, TW_ACCOUNT_SID, TW_API_KEY_SECRET, TW_API_KEY_SID, database_url, db,
    diagnostics, ingests, new_ingest, new_sid, rd, rd_server, seed_standard_contact,
    send_call, start_worker, tw, tw_server, wait_until)

SECRET = "e2e-recording-link-secret-0123456789"
REQUESTS = "calllog_ingest_recording_requests_total"


def token(sid, secret=SECRET, expires=None):
    """The link token of CallSid `sid`: base64url(HMAC-SHA256(secret, sid[.exp]))."""
    msg = sid if expires is None else f"{sid}.{expires}"
    mac = hmac.new(secret.encode(), msg.encode(), hashlib.sha256).digest()
    text = base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    return text if expires is None else f"{expires}.{text}"


def link_path(sid, tok):
    """The path and query of a recording link."""
    return f"/recordings/{sid}?t={urllib.parse.quote(tok, safe='')}"


def recording_env(tw, **extra):
    """The ingest settings that turn recording links on, against the Twilio mock."""
    env = {"RECORDING_LINK_SECRET": SECRET, "TWILIO_ACCOUNT_SID": TW_ACCOUNT_SID,
           "TWILIO_API_KEY_SID": TW_API_KEY_SID, "TWILIO_API_KEY_SECRET": TW_API_KEY_SECRET,
           "TWILIO_API_BASE_URL": tw.url}
    env.update(extra)
    return env


def seed_recording(tw, sid, status="completed", **media):
    """Seeds call `sid` with one recording in `status`; returns the recording's SID."""
    tw.seed_call({"sid": sid, "status": "completed", "from": CALLER, "to": OUR_NUMBER})
    rec = tw.control("POST", "/_mock/recordings",
                     dict({"call_sid": sid, "status": status, "duration": "42"}, **media))
    return rec["sid"]


def expected_audio(tw, recording_sid):
    """The bytes the mock serves for a recording (its control API says so)."""
    return http_request(tw.port, "GET", f"/_mock/media/{recording_sid}").body


def outcomes(ingest, outcome, want):
    """How many recording requests ended with `outcome`, once it reaches `want` (polled:
    a request is counted just after its answer went out) or 5 s passed."""
    def count():
        return metric_sum(ingest.metrics(), REQUESTS, outcome=outcome) or 0
    wait_for(lambda: count() >= want, 5)
    return count()


def media_requests(tw):
    """The requests the mock got for recordings (lists and media)."""
    return tw.requests(path="Recordings")


@pytest.fixture
def rec_ingest(new_ingest, tw):
    """An ingest with recording links on."""
    return new_ingest(env=recording_env(tw))


def test_valid_link_streams_the_audio_the_mock_serves_behind_basic_auth(tw, rec_ingest):
    sid = new_sid()
    rec_sid = seed_recording(tw, sid, media_size=300 * 1024)  # many pieces of 16 KiB
    tok = token(sid)
    res = rec_ingest.get(link_path(sid, tok))
    assert res.status == 200, res
    assert res.body == expected_audio(tw, rec_sid)
    assert res.headers["content-type"] == "audio/mpeg"
    assert res.headers["content-length"] == str(300 * 1024)
    assert "no-store" in res.headers["cache-control"]
    assert res.headers["referrer-policy"] == "no-referrer"
    media = [r for r in media_requests(tw) if r["path"].endswith(".mp3")]
    assert [r["status"] for r in media] == [200], "one authenticated media fetch"
    assert outcomes(rec_ingest, "streamed", 1) == 1
    lines = wait_for(lambda: [ln for ln in rec_ingest.log_lines() if "recording answered" in ln],
                     5)
    assert len(lines) == 1 and sid in lines[0] and '"outcome":"streamed"' in lines[0], lines
    assert tok not in rec_ingest.log_text(), "the token was logged"


def test_redirect_from_twilio_is_passed_to_the_browser(tw, rec_ingest):
    sid = new_sid()
    rec_sid = seed_recording(tw, sid, media_mode="redirect")
    res = rec_ingest.get(link_path(sid, token(sid)))
    assert res.status == 302, res
    location = urllib.parse.urlsplit(res.headers["location"])
    assert location.path == f"/_media/{rec_sid}.mp3" and "Signature=" in location.query
    # The browser follows it without any credentials: the location is signed.
    audio = http_request(tw.port, "GET", f"{location.path}?{location.query}")
    assert audio.status == 200 and audio.body == expected_audio(tw, rec_sid)
    assert outcomes(rec_ingest, "redirected", 1) == 1
    assert "Signature=" not in rec_ingest.log_text(), "the signed location was logged"


def test_bad_tokens_get_403_counted_and_twilio_is_never_asked(tw, rec_ingest):
    sid = new_sid()
    seed_recording(tw, sid)
    good = token(sid)
    forged = ("A" if good[0] != "A" else "B") + good[1:]
    cases = {
        "token_missing": f"/recordings/{sid}",
        "token_forged": link_path(sid, forged),
        "token_malformed": link_path(sid, good[:-1]),
        "token_expired": link_path(sid, token(sid, expires=int(time.time()) - 60)),
    }
    for outcome, path in cases.items():
        res = rec_ingest.get(path)
        assert res.status == 403, (outcome, res)
        assert b"Link" in res.body and res.headers["content-type"].startswith("text/html")
        assert outcomes(rec_ingest, outcome, 1) == 1, outcome
    other = new_sid()
    seed_recording(tw, other)
    assert rec_ingest.get(link_path(other, good)).status == 403, "a link is for its call only"
    assert rec_ingest.get(link_path(sid, token(sid, secret="another-secret-0123456789"))
                          ).status == 403
    assert outcomes(rec_ingest, "token_forged", 3) == 3
    assert media_requests(tw) == [], "a refused link must not cost a Twilio request"
    assert rec_ingest.get(link_path(sid, token(sid, expires=int(time.time()) + 3600))
                          ).status == 200, "an unexpired expiring link plays"


def test_processing_recording_gets_the_try_again_page(tw, rec_ingest):
    sid = new_sid()
    seed_recording(tw, sid, status="processing")
    res = rec_ingest.get(link_path(sid, token(sid)))
    assert res.status == 202, res
    assert res.headers["retry-after"] == "60"
    page = res.body.decode("utf-8")
    assert "Tente novamente em um minuto" in page and "try again in a minute" in page, page
    assert outcomes(rec_ingest, "processing", 1) == 1


def test_no_recording_or_unknown_call_is_404_and_a_bad_path_too(tw, rec_ingest):
    sid = new_sid()
    tw.seed_call({"sid": sid, "status": "completed"})
    assert rec_ingest.get(link_path(sid, token(sid))).status == 404
    failed = new_sid()
    seed_recording(tw, failed, status="failed")
    assert rec_ingest.get(link_path(failed, token(failed))).status == 404
    unknown = new_sid()  # Twilio answers 404 for the call's recordings
    assert rec_ingest.get(link_path(unknown, token(unknown))).status == 404
    assert outcomes(rec_ingest, "no_recording", 3) == 3
    for path in ("/recordings/", "/recordings/CA123", f"/recordings/{sid}/../x",
                 f"/recordings/RE{sid[2:]}?t=x"):
        assert rec_ingest.get(path).status == 404, path
    assert outcomes(rec_ingest, "bad_call_sid", 4) == 4
    res = http_request(rec_ingest.port, "POST", link_path(sid, token(sid)), body=b"")
    assert res.status == 405 and res.headers["allow"] == "GET"


def test_twilio_failures_get_502(tw, rec_ingest):
    sid = new_sid()
    seed_recording(tw, sid)
    tw.fault(path="/Recordings\\.json$", status=500, count=1)
    res = rec_ingest.get(link_path(sid, token(sid)))
    assert res.status == 502 and "Gravação indisponível" in res.body.decode(), res
    tw.fault(path="/Recordings/RE[^/]+\\.mp3$", status=503, count=1)
    assert rec_ingest.get(link_path(sid, token(sid))).status == 502
    assert outcomes(rec_ingest, "twilio_error", 2) == 2
    assert rec_ingest.get(link_path(sid, token(sid))).status == 200, "and it recovers"


def test_media_requests_are_bounded_and_webhooks_keep_being_answered(tw, new_ingest):
    ingest = new_ingest(env=recording_env(tw, RECORDINGS_MAX_CONCURRENT="1"))
    sid = new_sid()
    seed_recording(tw, sid)
    tw.fault(path="/Recordings/RE[^/]+\\.mp3$", status=0, delay_ms=4000, count=1)
    first = {}
    t = threading.Thread(target=lambda: first.update(
        res=ingest.get(link_path(sid, token(sid)))))
    t.start()
    try:
        held = wait_for(lambda: metric_sum(ingest.metrics(), "calllog_ingest_recordings_in_flight")
                        == 1, 10)
        assert held, "the first media request never got its slot"
        busy = ingest.get(link_path(sid, token(sid)))
        assert busy.status == 503 and busy.headers["retry-after"] == "5", busy
        send_call(ingest, new_sid(), "completed")  # a webhook is answered meanwhile
    finally:
        t.join(30)
    assert first["res"].status == 200
    assert outcomes(ingest, "busy", 1) == 1


def test_sigterm_ends_a_transfer_stalled_on_twilio_and_drains_cleanly(tw, new_ingest):
    """A recording Twilio is slow to send must not hold up the drain: the ingest stops the
    transfer and exits 0 (the drain watchdog would end it with 1 otherwise)."""
    ingest = new_ingest(env=recording_env(tw, INGEST_DRAIN_TIMEOUT_MS="3000"))
    sid = new_sid()
    seed_recording(tw, sid)
    tw.fault(path="/Recordings/RE[^/]+\\.mp3$", status=0, delay_ms=20000, count=1)
    result = {}

    def listen():
        try:
            result["res"] = ingest.get(link_path(sid, token(sid)))
        except OSError as exc:  # the connection may close without an answer
            result["error"] = exc

    t = threading.Thread(target=listen)
    t.start()
    assert wait_for(lambda: metric_sum(ingest.metrics(), "calllog_ingest_recordings_in_flight")
                    == 1, 10), "the media request never started"
    assert ingest.stop() == 0, ingest.log_text()[-3000:]
    t.join(30)
    assert "res" in result or "error" in result


def test_start_refuses_unusable_recording_settings(tw, tmp_path):
    base = {"REDIS_URL": "redis://127.0.0.1:1/0", "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
            "TWILIO_AUTH_TOKEN": DEFAULT_TOKEN, "INGEST_LISTEN": f"127.0.0.1:{free_port()}",
            "METRICS_LISTEN": f"127.0.0.1:{free_port()}", "INGEST_SPOOL_DIR": str(tmp_path),
            "INGEST_THREADS": "8"}
    for env, name in (
            ({"RECORDING_LINK_SECRET": "short"}, "RECORDING_LINK_SECRET"),
            ({"RECORDING_LINK_SECRET": SECRET}, "TWILIO_ACCOUNT_SID"),
            (recording_env(tw, RECORDINGS_MAX_CONCURRENT="8"), "RECORDINGS_MAX_CONCURRENT")):
        proc = subprocess.run([str(bin_path("calllog-ingest"))], env=clean_env({**base, **env}),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=20)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 2, out
        assert name in out and len(out.strip().splitlines()) == 1, out
        assert SECRET not in out


def test_without_the_secret_there_is_no_recordings_route(tw, new_ingest):
    ingest = new_ingest()
    sid = new_sid()
    seed_recording(tw, sid)
    assert ingest.get(link_path(sid, token(sid))).status == 404
    assert media_requests(tw) == []


@pytest.mark.parametrize("linked", [True, False])
def test_worker_note_carries_the_link_and_the_link_plays(linked, rd, tw, db, rdb, key_prefix,
                                                          new_ingest, start_worker):
    seed_standard_contact(rd)
    sid = new_sid()
    rec_sid = seed_recording(tw, sid)
    ingest = new_ingest(env=recording_env(tw))
    env = {"RECORDING_LINK_SECRET": SECRET, "PUBLIC_BASE_URL": ingest.base_url} if linked else {}
    worker = start_worker("v1", env=env, enrich=True)
    diag = diagnostics(rd, db, rdb, key_prefix, [worker])
    send_call(ingest, sid, "completed", duration="42")
    wait_until(lambda: db.states([sid]).get(sid) == "delivered", 30, "the note", diag)
    text = rd.notes_of(sid)[0]["text"]
    line = [ln for ln in text.splitlines() if ln.startswith("Gravação: ")]
    assert len(line) == 1, text
    url = line[0][len("Gravação: "):]
    if not linked:
        assert url == f"{tw.url}/2010-04-01/Accounts/{TW_ACCOUNT_SID}/Recordings/{rec_sid}", text
        return
    assert url == f"{ingest.base_url}/recordings/{sid}?t={token(sid)}", text
    assert SECRET not in text
    path = url[len(ingest.base_url):]
    res = ingest.get(path)
    assert res.status == 200 and res.body == expected_audio(tw, rec_sid)
    assert re.search(r"[?&]t=", worker.log_text()) is None, "the link's token was logged"


def test_note_written_while_recording_processes_links_and_plays_later(rd, tw, db, rdb, key_prefix,
                                                                        new_ingest, start_worker):
    """The note is written a second after the hang-up; Twilio finishes the recording later.
    With links on the note still gets the link: first the try-again page, then the audio."""
    seed_standard_contact(rd)
    sid = new_sid()
    rec_sid = seed_recording(tw, sid, status="processing")
    ingest = new_ingest(env=recording_env(tw))
    worker = start_worker("v1", env={"RECORDING_LINK_SECRET": SECRET,
                                     "PUBLIC_BASE_URL": ingest.base_url}, enrich=True)
    diag = diagnostics(rd, db, rdb, key_prefix, [worker])
    send_call(ingest, sid, "completed", duration="42")
    wait_until(lambda: db.states([sid]).get(sid) == "delivered", 30, "the note", diag)
    text = rd.notes_of(sid)[0]["text"]
    link = f"{ingest.base_url}/recordings/{sid}?t={token(sid)}"
    assert f"Gravação: {link}" in text.splitlines(), text
    path = link[len(ingest.base_url):]
    assert ingest.get(path).status == 202, "still processing: the try-again page"
    tw.control("POST", "/_mock/recordings", {"call_sid": sid, "sid": rec_sid,
                                             "status": "completed", "duration": "42"})
    res = ingest.get(path)
    assert res.status == 200 and res.body == expected_audio(tw, rec_sid)


def test_a_byte_range_is_passed_through_so_players_can_seek(tw, rec_ingest):
    sid = new_sid()
    rec_sid = seed_recording(tw, sid, media_size=100000)
    whole = expected_audio(tw, rec_sid)
    path = link_path(sid, token(sid))
    res = http_request(rec_ingest.port, "GET", path, headers={"Range": "bytes=5000-5999"})
    assert res.status == 206, res
    assert res.headers["content-range"] == "bytes 5000-5999/100000"
    assert res.headers["content-length"] == "1000" and res.body == whole[5000:6000]
    assert res.headers["accept-ranges"] == "bytes"
    full = rec_ingest.get(path)
    assert full.status == 200 and full.headers["accept-ranges"] == "bytes"
    past = http_request(rec_ingest.port, "GET", path, headers={"Range": "bytes=100000-"})
    assert past.status == 416 and past.headers["content-range"] == "bytes */100000"
    several = http_request(rec_ingest.port, "GET", path, headers={"Range": "bytes=0-1,5-9"})
    assert several.status == 200 and several.body == whole, "only one range is passed on"
    assert outcomes(rec_ingest, "streamed", 3) == 3
    assert outcomes(rec_ingest, "range_not_satisfiable", 1) == 1
