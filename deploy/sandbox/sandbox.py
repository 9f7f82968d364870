#!/usr/bin/python3
"""sandbox — RD Station CRM and Twilio in one process, so the demo needs no account.

A new user should see calllog turn a phone call into a CRM note before they own a
Twilio account, an RD Station token or a public URL (issue 7). The demo
(`deploy/run-local.sh demo`, `docker compose --profile demo up`) therefore runs the real
ingest and workers against this process, which stands in for the two outside services:

- RD Station CRM (v1 under /api/v1, v2 and OAuth2 too) on one port: the test suites' mock
  (tests/mocks/rdstation_mock.py), so auth, the 120 requests/minute limit, exact phone
  matching and the error bodies are those the tests hold the worker to. At start it
  holds a few Brazilian contacts with open deals (SEED_CONTACTS).
- Twilio on the other port: the REST mock (tests/mocks/twilio_mock.py: Calls, the Calls
  list the reconciler pages, Recordings, Basic auth, Twilio's error bodies) plus what
  Twilio does when a call happens. `POST /_sandbox/calls` creates the Call resource and
  sends its status callbacks (initiated, ringing, in-progress when answered, the final
  status) to the ingest, form-encoded and signed with X-Twilio-Signature exactly as
  Twilio signs them (tests/e2e/twilio_sign.py).

The mocks are imported, not copied, so the demo and the tests cannot drift apart.

Control endpoints, on the Twilio port (no auth; `calllog-admin demo call` uses them):

  POST /_sandbox/calls   {"from", "to", "direction": "inbound"|"outbound-api",
                          "status": "completed"|"no-answer"|"busy"|"failed"|"canceled",
                          "duration": seconds}, every field optional
                         → 201 {"sid", "callbacks": [{"status", "http_status"}, …], …}
  GET  /_sandbox/notes?call_sid=CA…   → {"notes": [{deal_id, deal_name, contact_name,
                                         text, created_at}], "tasks": [{…, subject, text,
                                         done, followup, due_local}]} (followup: a
                                         missed call's follow-up task)
  GET  /_sandbox/contacts             → the contacts and deals a call can land on
  GET  /_sandbox/healthz              → 200
  /_mock/…                            → the Twilio mock's control API (README in tests/mocks)

Run: /usr/bin/python3 deploy/sandbox/sandbox.py --status-callback URL --auth-token TOKEN
     [--rd-port P] [--twilio-port P] [--port-file F] [--bind 127.0.0.1] [--quiet]
The port file is JSON, {"rd": P1, "twilio": P2}, written once both ports listen.
Only the Python 3.11 standard library is used, like the mocks.
"""

import argparse
import json
import math
import os
import re
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import timedelta

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "mocks"))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

import mocklib  # noqa: E402
import rdstation_mock  # noqa: E402
import twilio_mock  # noqa: E402
import twilio_sign  # noqa: E402
from mocklib import HttpError, json_response  # noqa: E402

OUR_LINE = "+551130001000"
DEFAULT_CUSTOMER = "+5511971730783"  # Maria Souza, the first seeded contact
RD_USER_ID = "5e0000000000000000000001"  # the RD mock's default user (RDSTATION_USER_ID)
CALLBACK_TIMEOUT_S = 15  # Twilio waits at most 15 s for a status callback
TERMINAL = ("completed", "no-answer", "busy", "failed", "canceled")
DIRECTIONS = {"inbound": "inbound", "outbound-api": "outbound-api", "outbound": "outbound-api"}
E164_RE = re.compile(r"^\+[1-9][0-9]{6,14}$")
# Seconds a call rings before its final status, and the SIP code Twilio reports with it.
RING_SECONDS = {"completed": 6, "no-answer": 25, "busy": 2, "failed": 0, "canceled": 9}
SIP_CODES = {"completed": "200", "no-answer": "487", "busy": "486", "failed": "500",
             "canceled": "487"}

# Who the demo's calls can reach: phones as people type them into RD, deals updated
# `days_ago`. The open deal updated most recently is the one that receives the note.
SEED_CONTACTS = [
    {"name": "Maria Souza", "phones": ["(11) 97173-0783"], "emails": ["maria.souza@example.com.br"],
     "deals": [{"name": "Plano Mensal — Maria Souza", "status": "won", "days_ago": 40},
               {"name": "Plano Anual — Maria Souza", "status": "ongoing", "days_ago": 2}]},
    {"name": "João Pereira", "phones": ["+55 21 98888-7777"], "emails": ["joao.pereira@example.com.br"],
     "deals": [{"name": "Consultoria — João Pereira", "status": "ongoing", "days_ago": 1},
               {"name": "Implantação — João Pereira", "status": "ongoing", "days_ago": 15}]},
    {"name": "Ana Lima", "phones": [{"phone": "(31) 3333-4444", "type": "work"}],
     "emails": ["ana.lima@example.com.br"],
     "deals": [{"name": "Renovação — Ana Lima", "status": "ongoing", "days_ago": 5}]},
]


def iso_days_ago(days):
    """An ISO 8601 UTC timestamp `days` days before now."""
    return mocklib.iso_utc(mocklib.now_utc() - timedelta(days=days))


def digits(phone):
    """The ASCII digits of a phone number."""
    return re.sub(r"[^0-9]", "", str(phone or ""))


def same_number(e164, stored):
    """Say whether an E.164 number and a phone as stored in RD are the same Brazilian line
    (with or without +55); only used to tell the caller whom a call will reach."""
    a, b = digits(e164), digits(stored)
    return bool(b) and (a == b or (a.startswith("55") and a[2:] == b))


def seed_rd(rd):
    """Creates SEED_CONTACTS, with their deals, in the RD mock."""
    for contact in SEED_CONTACTS:
        deals = [{"name": d["name"], "status": d["status"], "user_id": RD_USER_ID,
                  "updated_at": iso_days_ago(d["days_ago"]),
                  "closed_at": iso_days_ago(d["days_ago"]) if d["status"] in ("won", "lost") else None}
                 for d in contact["deals"]]
        spec = {"name": contact["name"], "phones": contact["phones"], "emails": contact["emails"],
                "deals": deals}
        with rd.lock:
            rd.seed_contact(spec)


class SandboxTwilio(twilio_mock.TwilioMock):
    """The Twilio REST mock plus the /_sandbox control endpoints that play calls."""

    name = "sandbox-twilio"

    def __init__(self, opts, rd, callback_url, auth_token):
        super().__init__(opts)
        self.rd = rd
        self.callback_url = callback_url
        self.auth_token = auth_token
        self.sandbox = mocklib.Router()
        self.sandbox.add("POST", r"/_sandbox/calls", self._sandbox_call)
        self.sandbox.add("GET", r"/_sandbox/notes", self._sandbox_notes)
        self.sandbox.add("GET", r"/_sandbox/contacts", self._sandbox_contacts)
        self.sandbox.add("GET", r"/_sandbox/healthz",
                         lambda req: json_response(200, {"ok": True, "name": "sandbox"}))

    def handle(self, req):
        """Answers /_sandbox requests here (no auth, not in the request log), the rest as
        the Twilio mock does."""
        if req.path == "/_sandbox" or req.path.startswith("/_sandbox/"):
            req.api = "control"
            return self._guard(req, self._handle_sandbox)
        return super().handle(req)

    def _handle_sandbox(self, req):
        """Dispatches a /_sandbox request to its route."""
        func, groups = self.sandbox.match(req.method, req.path)
        if func is None:
            raise HttpError(405 if groups else 404, "no sandbox route %s %s" % (req.method, req.path))
        return func(req, *groups)

    # ---- POST /_sandbox/calls -------------------------------------------------------

    def _sandbox_call(self, req):
        """Plays one call: the Call resource, then its signed status callbacks."""
        call = call_request(self.control_body(req))
        call["sid"] = twilio_mock.random_sid("CA")
        steps = lifecycle(call)
        callbacks = []
        for seq, step in enumerate(steps):
            self._store_call(call, step)
            callbacks.append(self._post_callback(call, step, seq))
        customer = call["to"] if call["direction"] == "outbound-api" else call["from"]
        result = {"sid": call["sid"], "from": call["from"], "to": call["to"],
                  "direction": call["direction"], "status": call["status"],
                  "duration": call["duration"] if call["status"] == "completed" else 0,
                  "customer": customer, "contact": self._contact_name(customer),
                  "status_callback": self.callback_url, "callbacks": callbacks}
        self._say("call %s %s %s -> %s %s: %s" % (
            call["sid"], call["direction"], call["from"], call["to"], call["status"],
            ", ".join("%s %s" % (c["status"], c["http_status"]) for c in callbacks)))
        return json_response(201, result)

    def _store_call(self, call, step):
        """Shows the call in the REST API as it stands after `step` (Twilio updates the
        resource before it sends the callback, so enrichment sees the final state)."""
        status = step["status"]
        spec = {"sid": call["sid"], "direction": call["direction"], "from": call["from"],
                "to": call["to"], "date_created": mocklib.rfc2822(call["times"]["initiated"]),
                "start_time": mocklib.rfc2822(call["times"]["initiated"]),
                "status": "queued" if status == "initiated" else status,
                "end_time": mocklib.rfc2822(call["times"]["end"]) if status in TERMINAL else None,
                "date_updated": mocklib.rfc2822(mocklib.now_utc())}
        if status == "completed":
            spec["duration"] = str(call["duration"])
        with self.lock:
            self.calls[call["sid"]] = self.build_call(spec)

    def _post_callback(self, call, step, seq):
        """POSTs one status callback, signed; Twilio retries once when the connection
        fails and not otherwise. Returns {"status", "http_status"[, "error"]}."""
        params = callback_params(call, step, seq, self.account_sid)
        body, signature = twilio_sign.sign_form(self.auth_token, self.callback_url, params)
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   "X-Twilio-Signature": signature, "User-Agent": "TwilioProxy/1.1",
                   "I-Twilio-Idempotency-Token": str(uuid.uuid4())}
        outcome = {"status": step["status"], "http_status": 0}
        for attempt in range(2):
            try:
                request = urllib.request.Request(self.callback_url, data=body, headers=headers,
                                                 method="POST")
                with urllib.request.urlopen(request, timeout=CALLBACK_TIMEOUT_S) as answer:
                    answer.read()
                    outcome["http_status"] = answer.status
                return outcome
            except urllib.error.HTTPError as exc:
                outcome["http_status"] = exc.code
                return outcome
            except (urllib.error.URLError, OSError) as exc:
                outcome["error"] = str(getattr(exc, "reason", exc))
                if attempt == 0:
                    self.stopping.wait(1.0)
        return outcome

    def _contact_name(self, e164):
        """The seeded (or created) RD contact holding this number, or None."""
        with self.rd.lock:
            for contact in self.rd.store.contacts.values():
                if any(same_number(e164, p["phone"]) for p in contact["phones"]):
                    return contact["name"]
        return None

    # ---- GET /_sandbox/notes, /_sandbox/contacts ----------------------------------------

    def _sandbox_notes(self, req):
        """The RD notes and tasks carrying call_sid's marker (or its follow-up task's); every
        calllog note and task without it."""
        sid = req.arg("call_sid") or ""
        marker = "[calllog:%s]" % sid if sid else "[calllog:"
        fmarker = "[calllog-followup:%s]" % sid if sid else "[calllog-followup:"
        store = self.rd.store
        with self.rd.lock:
            notes = [dict(self._deal_fields(n["deal_id"]), text=n["text"],
                          created_at=mocklib.iso_utc(n["created_at"]))
                     for n in store.notes if marker in (n["text"] or "")]
            tasks = [dict(self._deal_fields(t["deal_id"]), subject=t["subject"], text=t["notes"],
                          done=t["done"], created_at=mocklib.iso_utc(t["created_at"]),
                          followup=fmarker in (t.get("notes") or ""), due_local=self._due_local(t))
                     for t in store.tasks.values()
                     if marker in (t.get("notes") or "") or fmarker in (t.get("notes") or "")]
        return json_response(200, {"notes": notes, "tasks": tasks})

    @staticmethod
    def _due_local(task):
        """A task's due time as São Paulo wall-clock time ("07/12/2026 08:00"), or None."""
        due = mocklib.parse_time(rdstation_mock.v2_task(task)["due_date"])
        return due.astimezone(mocklib.BRT).strftime("%d/%m/%Y %H:%M") if due else None

    def _deal_fields(self, deal_id):
        """deal_id, deal_name and contact_name of a deal (caller holds the RD lock)."""
        deal = self.rd.store.deals.get(deal_id) or {"name": None, "contact_ids": []}
        contacts = [self.rd.store.contacts[c]["name"] for c in deal["contact_ids"]
                    if c in self.rd.store.contacts]
        return {"deal_id": deal_id, "deal_name": deal["name"],
                "contact_name": contacts[0] if contacts else None}

    def _sandbox_contacts(self, req):
        """Every RD contact with its phones and deals, and the line the demo calls use."""
        store = self.rd.store
        with self.rd.lock:
            contacts = [{"id": c["id"], "name": c["name"],
                         "phones": [p["phone"] for p in c["phones"]],
                         "deals": [{"id": d, "name": store.deals[d]["name"],
                                    "status": store.deals[d]["status"],
                                    "updated_at": mocklib.iso_utc(store.deals[d]["updated_at"])}
                                   for d in c["deal_ids"]]}
                        for c in store.contacts.values()]
        return json_response(200, {"our_line": OUR_LINE, "contacts": contacts})

    def _say(self, text):
        """One line on stderr, like the mocks' request lines."""
        if not self.quiet:
            sys.stderr.write("%s sandbox %s\n" % (time.strftime("%H:%M:%S"), text))
            sys.stderr.flush()


def call_request(body):
    """Validates a POST /_sandbox/calls body and fills in the defaults: Maria Souza calls
    our line (inbound) or our line calls her (outbound-api), completed after 42 s."""
    if not isinstance(body, dict):
        raise HttpError(400, "body must be a JSON object")
    direction = DIRECTIONS.get(body.get("direction") or "inbound")
    if direction is None:
        raise HttpError(400, "direction must be inbound or outbound-api")
    status = body.get("status") or "completed"
    if status not in TERMINAL:
        raise HttpError(400, "status must be one of %s" % ", ".join(TERMINAL))
    frm = body.get("from") or (DEFAULT_CUSTOMER if direction == "inbound" else OUR_LINE)
    to = body.get("to") or (OUR_LINE if direction == "inbound" else DEFAULT_CUSTOMER)
    for name, value in (("from", frm), ("to", to)):
        if not isinstance(value, str) or not E164_RE.match(value):
            raise HttpError(400, "%s must be an E.164 number such as +5511971730783" % name)
    duration = body.get("duration", 42)
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not 0 <= duration <= 86400:
        raise HttpError(400, "duration must be a number of seconds between 0 and 86400")
    return {"from": frm, "to": to, "direction": direction, "status": status,
            "duration": int(duration)}


def lifecycle(call):
    """The status callbacks of a call, in order, with their virtual times: the call ends
    now, after ringing and (when answered) talking for `duration` seconds."""
    status = call["status"]
    end = mocklib.now_utc()
    talk = call["duration"] if status == "completed" else 0
    answered = end - timedelta(seconds=talk)
    ringing = answered - timedelta(seconds=RING_SECONDS[status])
    initiated = ringing - timedelta(seconds=1)
    call["times"] = {"initiated": initiated, "end": end}
    steps = [{"status": "initiated", "at": initiated}]
    if status != "failed":
        steps.append({"status": "ringing", "at": ringing})
    if status == "completed":
        steps.append({"status": "in-progress", "at": answered})
    steps.append({"status": status, "at": end})
    return steps


def callback_params(call, step, seq, account_sid):
    """The form parameters Twilio sends with one status callback."""
    params = {
        "CallSid": call["sid"], "AccountSid": account_sid, "ApiVersion": "2010-04-01",
        "From": call["from"], "To": call["to"], "Caller": call["from"], "Called": call["to"],
        "Direction": call["direction"], "CallStatus": step["status"],
        "Timestamp": mocklib.rfc2822(step["at"]), "CallbackSource": "call-progress-events",
        "SequenceNumber": str(seq),
    }
    for prefix, number in (("From", call["from"]), ("To", call["to"]),
                           ("Caller", call["from"]), ("Called", call["to"])):
        if number.startswith("+55"):
            params[prefix + "Country"] = "BR"
    if step["status"] in TERMINAL:
        talk = call["duration"] if step["status"] == "completed" else 0
        params["CallDuration"] = str(talk)
        params["SipResponseCode"] = SIP_CODES[step["status"]]
        if step["status"] == "completed":
            params["Duration"] = str(max(1, math.ceil(talk / 60)))
    return params


def write_ports(path, ports):
    """Writes {"rd": P1, "twilio": P2} atomically, so a reader never sees half a file."""
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w", encoding="ascii") as handle:
        json.dump(ports, handle)
        handle.write("\n")
    os.replace(tmp, path)


def serve(apps, bind, port_file, on_listen):
    """Serves each (app, port) on `bind` until SIGTERM/SIGINT, then stops them cleanly.
    Calls on_listen({"rd": P1, "twilio": P2}) once both listen."""
    servers = [mocklib.MockHTTPServer((bind, port), app) for app, port in apps]
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: done.set())
    signal.signal(signal.SIGINT, lambda signum, frame: done.set())
    for server in servers:
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                         name="serve-" + server.app.name, daemon=True).start()
    ports = {"rd": servers[0].server_address[1], "twilio": servers[1].server_address[1]}
    if port_file:
        write_ports(port_file, ports)
    on_listen(ports)
    while not done.wait(0.2):
        pass
    for server in servers:
        server.app.stopping.set()
        server.shutdown()
        server.server_close()
    sys.stderr.write("sandbox stopped\n")
    sys.stderr.flush()
    return 0


def describe(bind, rd_port, tw_port, callback_url):
    """The start-up lines: where each stand-in listens and whom a call can reach."""
    host = "127.0.0.1" if bind in ("0.0.0.0", "") else bind
    lines = ["sandbox: RD Station CRM on http://%s:%d/api/v1 (token mock-v1-token, user %s)"
             % (host, rd_port, RD_USER_ID),
             "sandbox: Twilio REST on http://%s:%d; status callbacks go to %s"
             % (host, tw_port, callback_url),
             "sandbox: our line %s; contacts:" % OUR_LINE]
    for contact in SEED_CONTACTS:
        phones = ", ".join(p if isinstance(p, str) else p["phone"] for p in contact["phones"])
        deals = "; ".join("%s (%s)" % (d["name"], d["status"]) for d in contact["deals"])
        lines.append("sandbox:   %s %s — %s" % (contact["name"], phones, deals))
    return "\n".join(lines) + "\n"


def parse_args(argv):
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description="RD Station CRM and Twilio stand-ins for the calllog demo.")
    parser.add_argument("--rd-port", type=int, default=0, help="RD Station port (0 = pick)")
    parser.add_argument("--twilio-port", type=int, default=0, help="Twilio port (0 = pick)")
    parser.add_argument("--port-file", help='write {"rd": P1, "twilio": P2} here once listening')
    parser.add_argument("--bind", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 in a container)")
    parser.add_argument("--status-callback", required=True,
                        help="the ingest's webhook URL, e.g. http://127.0.0.1:8080/twilio/log-call")
    parser.add_argument("--auth-token", default=os.environ.get("TWILIO_AUTH_TOKEN") or None,
                        help="Twilio auth token the callbacks are signed with (default "
                             "$TWILIO_AUTH_TOKEN); also accepted as AccountSid:AuthToken")
    parser.add_argument("--quiet", action="store_true", help="no per-request lines on stderr")
    opts = parser.parse_args(argv)
    if not opts.auth_token:
        parser.error("--auth-token (or TWILIO_AUTH_TOKEN) is required")
    return opts


def main(argv):
    """Builds both stand-ins, seeds RD, serves until SIGTERM."""
    opts = parse_args(argv)
    quiet = ["--quiet"] if opts.quiet else []
    rd = rdstation_mock.RdStationMock(rdstation_mock.parse_args(["--user-id", RD_USER_ID] + quiet))
    tw_opts = twilio_mock.parse_args(["--auth-token", opts.auth_token, "--max-concurrent", "100"]
                                     + quiet)
    tw = SandboxTwilio(tw_opts, rd, opts.status_callback, opts.auth_token)
    seed_rd(rd)

    def announce(ports):
        """Prints where each stand-in listens and whom a call can reach."""
        sys.stderr.write(describe(opts.bind, ports["rd"], ports["twilio"], opts.status_callback))
        sys.stderr.flush()

    return serve([(rd, opts.rd_port), (tw, opts.twilio_port)], opts.bind, opts.port_file,
                 announce)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
