#!/usr/bin/env python3
"""bench_events.py - the worker benchmarks' call events, with the ingest's stream fields.

  bench_events.py preload N KEY
      Prints N XADDs of `completed` calls (distinct CallSids, one caller) onto stream KEY
      in Redis's protocol, for `redis-cli --pipe` (worker_lib.sh preload).
  bench_events.py paced RATE SECONDS REDIS_URL KEY
      XADDs RATE calls a second for SECONDS onto KEY, each with received_at = the moment it
      is added, as the ingest stamps an accepted callback; prints how many it added. The
      hangup-to-note row of bench_issue11.sh measures from that stamp.
"""
import json, sys, time


def event(i, received):
    """The stream fields of call number i (flat, as the ingest writes them)."""
    sid = "CA%032x" % (0xbe7c400000 + i)
    rid = "%016x" % (0xb0000000 + i)
    ev = {"v": 1, "call_sid": sid, "account_sid": "AC0123456789abcdef0123456789abcdef",
          "from": "+5511971730783", "to": "+551130001000", "direction": "inbound",
          "status": "completed", "duration": "155",
          "timestamp": "Tue, 24 Nov 2026 19:02:35 +0000", "sequence_number": "3",
          "callback_source": "call-progress-events", "api_version": "2010-04-01",
          "geo": {"from_city": "SAO PAULO", "from_state": "SP", "from_country": "BR",
                  "to_city": "SAO PAULO", "to_state": "SP", "to_country": "BR"},
          "received_at": received, "request_id": rid}
    return ["call_sid", sid, "status", "completed", "attempt", "0", "request_id", rid,
            "received_at", received, "event", json.dumps(ev, separators=(",", ":"))]


def resp(args):
    """One command in Redis's protocol."""
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(parts)


def preload(n, key):
    out = sys.stdout.buffer
    for i in range(n):
        out.write(resp(["XADD", key, "*"] + event(i, "2026-11-24T19:02:36.%03dZ" % (i % 1000))))


def now_rfc3339():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int(t % 1 * 1000)


def paced(rate, seconds, url, key):
    import redis
    r = redis.Redis.from_url(url)
    start = time.monotonic()
    n = int(rate * seconds)
    for i in range(n):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        fields = event(i, now_rfc3339())
        r.xadd(key, dict(zip(fields[::2], fields[1::2])))
    print(n)


if __name__ == "__main__":
    if sys.argv[1] == "preload":
        preload(int(sys.argv[2]), sys.argv[3])
    elif sys.argv[1] == "paced":
        paced(float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5])
    else:
        sys.exit(__doc__)
