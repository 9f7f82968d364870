#!/usr/bin/python3
"""bench_quota.py — the Python half of tests/bench/bench_quota.sh.

bench_quota.sh measures where RD Station's request quota goes (issue 11): how many RD
requests a delivered note costs and how close the notes per minute come to the
account's limit while a backlog exists. The shell script runs the servers and the
workers; this file does what is easier in Python, with the standard library only:

  seed CALLERS                      JSON for POST /_mock/contacts: one contact a caller,
                                    each with one open deal (and an old won one)
  preload CALLERS CALLS KEY         RESP for `redis-cli --pipe`: CALLERS x CALLS completed
                                    calls, the fields the ingest writes, in a shuffled
                                    (fixed-seed) order so repeat calls interleave
  analyze LABEL BUILD LIMIT BURST CALLERS CALLS REQUESTS_JSON METRICS...
                                    one row of each table, from the mock's request log and
                                    the workers' /metrics

Callers' phones are stored the way RD accounts hold them: even callers in E.164
(+5511970000001), odd callers hand-typed national ((11) 97000-0001). The worker asks for
E.164 first, so an E.164 contact is found by the first search and a national one by the
third (phone_variants() order).
"""

import json
import random
import re
import sys

ACCOUNT = "AC0123456789abcdef0123456789abcdef"
OUR_NUMBER = "+551130001000"


def caller_phone(i):
    """The E.164 number of caller i (a São Paulo mobile)."""
    return "+55119700%05d" % i


def stored_phone(i):
    """The form RD holds caller i's phone in: E.164 for even i, national for odd i."""
    e164 = caller_phone(i)
    if i % 2 == 0:
        return e164
    sub = e164[5:]
    return "(%s) %s-%s" % (e164[3:5], sub[:5], sub[5:])


def cmd_seed(callers):
    """Prints the contacts to seed: each caller with a won deal and an open deal."""
    contacts = [{"name": "Caller %d" % i, "phones": [stored_phone(i)],
                 "deals": [{"name": "old %d" % i, "status": "won",
                            "updated_at": "2026-11-01T00:00:00Z"},
                           {"name": "Open deal %d" % i, "status": "ongoing",
                            "updated_at": "2026-11-20T00:00:00Z"}]}
                for i in range(callers)]
    json.dump({"contacts": contacts}, sys.stdout)


def resp(out, *args):
    """Writes one Redis command in RESP."""
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
    out.write(b"".join(parts))


def cmd_preload(callers, calls, key):
    """Prints XADDs of callers x calls completed inbound calls, shuffled with a fixed seed."""
    order = [i for i in range(callers) for _ in range(calls)]
    random.Random(11).shuffle(order)
    out = sys.stdout.buffer
    for n, i in enumerate(order):
        sid = "CA%032x" % (0x9a0e000000 + n)
        rid = "%016x" % (0xc0000000 + n)
        received = "2026-12-03T09:00:%02d.%03dZ" % (n // 1000 % 60, n % 1000)
        ev = {"v": 1, "call_sid": sid, "account_sid": ACCOUNT, "from": caller_phone(i),
              "to": OUR_NUMBER, "direction": "inbound", "status": "completed",
              "duration": "95", "timestamp": "Thu, 03 Dec 2026 09:00:00 +0000",
              "sequence_number": "3", "callback_source": "call-progress-events",
              "api_version": "2010-04-01", "received_at": received, "request_id": rid}
        resp(out, "XADD", key, "*", "call_sid", sid, "status", "completed", "attempt", "0",
             "request_id", rid, "received_at", received,
             "event", json.dumps(ev, separators=(",", ":")))


def kind(req):
    """The breakdown column an RD request belongs to."""
    method, path = req["method"], re.sub(r"^/api/v1", "", req["path"])
    if method == "GET" and path == "/contacts":
        return "contact_search"
    if method == "GET" and path.startswith("/contacts/"):
        return "contact_get"
    if method == "GET" and path.startswith("/deals"):
        return "deal_get"
    if method == "POST" and path == "/activities":
        return "note_post"
    if method == "GET" and path in ("/activities", "/tasks"):
        return "marker_search"
    return "other"


def read_metrics(paths):
    """Sums the workers' CRM request counters ({endpoint: {status: n}}) and retries."""
    crm, retries, outcomes = {}, 0, {}
    line_re = re.compile(r'^(\w+)(?:\{([^}]*)\})? (\S+)$')
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                m = line_re.match(line.strip())
                if not m:
                    continue
                name, value = m.group(1), float(m.group(3))
                labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
                if name == "calllog_crm_requests_total":
                    by = crm.setdefault(labels.get("endpoint", "?"), {})
                    status = labels.get("status", "?")
                    by[status] = by.get(status, 0) + int(value)
                elif name == "calllog_worker_retries_total":
                    retries += int(value)
                elif name == "calllog_worker_processed_total":
                    o = labels.get("outcome", "?")
                    outcomes[o] = outcomes.get(o, 0) + int(value)
    return crm, retries, outcomes


def steady_rate(times, skip):
    """Events per minute after the first `skip` (the limiter's initial burst), or 0."""
    if len(times) <= skip + 1:
        return 0.0
    span = times[-1] - times[skip]
    return (len(times) - skip - 1) / span * 60.0 if span > 0 else 0.0


def busiest_window(times, window_s=60.0):
    """The most requests within any `window_s` seconds (the mock's sliding window)."""
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window_s:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def cmd_analyze(label, build, limit, burst, callers, calls, requests_path, metric_paths):
    """Prints '<main row>\\t<breakdown row>' for one scenario run."""
    with open(requests_path, encoding="utf-8") as f:
        reqs = sorted(json.load(f)["requests"], key=lambda r: r["seq"])
    notes = sum(1 for r in reqs if kind(r) == "note_post" and r["status"] == 200)
    admitted = [r for r in reqs if r["status"] != 429]
    refused = len(reqs) - len(admitted)
    counts = {}
    for r in admitted:
        counts[kind(r)] = counts.get(kind(r), 0) + 1
    req_times = [r["time"] for r in admitted]
    # Notes/min over the same steady window as the requests: from the first request
    # after the burst to the last request.
    note_times = [r["time"] for r in admitted if kind(r) == "note_post" and r["status"] == 200]
    t_s = req_times[burst] if len(req_times) > burst else (req_times[0] if req_times else 0)
    t_e = req_times[-1] if req_times else 0
    steady_notes = sum(1 for t in note_times if t > t_s)
    notes_min = steady_notes / (t_e - t_s) * 60.0 if t_e > t_s else 0.0
    reqs_min = steady_rate(req_times, burst)
    span = (t_e - req_times[0]) if req_times else 0.0
    crm, retries, outcomes = read_metrics(metric_paths)
    worker_429 = sum(n for by in crm.values() for st, n in by.items() if st == "429")
    worker_total = sum(n for by in crm.values() for n in by.values())
    total = len(reqs)
    lookups = sum(counts.get(k, 0) for k in ("contact_search", "contact_get", "deal_get"))
    main = ("| %s | %s | %d | %d x %d | %d | %d | %.2f | %d | %d | %.0f | %.0f %% | %.0f %% "
            "| %.1f |") % (
        label, build, limit, callers, calls, notes, total, total / notes if notes else 0,
        refused, busiest_window(req_times), notes_min, 100.0 * notes_min / limit,
        100.0 * reqs_min / limit, span)
    other = counts.get("other", 0)
    breakdown = "| %s | %s | %d | %d | %d | %d | %d | %d | %d | %.2f | %d | %d |" % (
        label, build, counts.get("contact_search", 0), counts.get("contact_get", 0),
        counts.get("deal_get", 0), counts.get("note_post", 0),
        counts.get("marker_search", 0) + other,
        refused, retries, lookups / callers if callers else 0, worker_total, worker_429)
    print(main + "\t" + breakdown)
    extra = {k: v for k, v in outcomes.items() if v and k != "delivered"}
    if notes != callers * calls or extra:
        print("bench_quota: %s/%s: %d notes for %d calls; outcomes besides delivered: %s" % (
            label, build, notes, callers * calls, extra), file=sys.stderr)


def main(argv):
    """Dispatches a subcommand."""
    if len(argv) >= 2 and argv[1] == "seed":
        cmd_seed(int(argv[2]))
    elif len(argv) >= 5 and argv[1] == "preload":
        cmd_preload(int(argv[2]), int(argv[3]), argv[4])
    elif len(argv) >= 10 and argv[1] == "analyze":
        cmd_analyze(argv[2], argv[3], int(argv[4]), int(argv[5]), int(argv[6]), int(argv[7]),
                    argv[8], argv[9:])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
