#!/usr/bin/env python3
"""signed_callback.py WORKDIR TOKEN URL - the load of the ingest benchmarks.

Writes into WORKDIR a realistic Twilio `completed` status callback (26 parameters): the
form body (`body`), its X-Twilio-Signature for URL with TOKEN (`signature`), and wrk
scripts POSTing it (`post.lua`) or GETting a path (`get.lua`), whose `done` prints one line
`BENCH requests duration_s p50_ms p99_ms errors`. Used by bench_ingest.sh and
bench_ingest_cpu.sh, so both measure the same request.
"""
import base64, hashlib, hmac, sys, urllib.parse
work, token, url = sys.argv[1:4]
params = [
    ("Called", "+551130001000"), ("ToState", "SP"), ("CallerCountry", "BR"),
    ("Direction", "inbound"), ("Timestamp", "Tue, 24 Nov 2026 19:02:35 +0000"),
    ("CallbackSource", "call-progress-events"), ("CallerState", "SP"),
    ("SequenceNumber", "3"), ("CallSid", "CA7f3c1e9a0b2d4c6e8f0a1b2c3d4e5f60"),
    ("To", "+551130001000"), ("ToCountry", "BR"), ("ApiVersion", "2010-04-01"),
    ("CalledCity", "SAO PAULO"), ("CallStatus", "completed"), ("Duration", "3"),
    ("From", "+5511971730783"), ("CallDuration", "155"),
    ("AccountSid", "AC0123456789abcdef0123456789abcdef"), ("CalledCountry", "BR"),
    ("CallerCity", "SAO PAULO"), ("ToCity", "SAO PAULO"), ("FromCountry", "BR"),
    ("Caller", "+5511971730783"), ("FromCity", "SAO PAULO"), ("CalledState", "SP"),
    ("FromState", "SP"),
]
s = url + "".join(k + v for k, v in sorted(params))
sig = base64.b64encode(hmac.new(token.encode(), s.encode(), hashlib.sha1).digest()).decode()
body = urllib.parse.urlencode(params)
open(f"{work}/body", "w").write(body)
open(f"{work}/signature", "w").write(sig)
done = r'''
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH %d %.3f %.3f %.3f %d\n", summary.requests,
    summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.connect + e.read + e.write + e.status + e.timeout))
end
'''
with open(f"{work}/get.lua", "w") as f:
    f.write(done)
with open(f"{work}/post.lua", "w") as f:
    f.write('wrk.method = "POST"\n')
    f.write("wrk.body = [==[%s]==]\n" % body)
    f.write('wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n')
    f.write('wrk.headers["X-Twilio-Signature"] = "%s"\n' % sig)
    f.write(done)
