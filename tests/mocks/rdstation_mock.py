#!/usr/bin/python3
"""Mock of RD Station CRM (API v1 and v2 plus the OAuth2 token endpoint) for calllog tests.

The worker writes one note (and/or a completed call task) per finished call to RD
Station CRM.  Integration and end-to-end tests point RDSTATION_API_BASE_URL and
RDSTATION_OAUTH_URL here instead.  The mock follows /work/shared/reference/rdstation.md:
both API versions share one account (contacts, deals, notes, tasks), v1 under /api/v1
with ?token=, v2 under /crm/v2 with OAuth2 bearer tokens from /oauth2/token, the
documented status codes and (inconsistent) error bodies, 200-vs-201 on creates, a
120-per-minute sliding-window rate limit, and refresh-token rotation.

Deliberate realism the client code must cope with:
- `phone=` (v1) and `filter=phone:` (v2) match only when the query equals a stored
  phone once spaces, dashes and parentheses are removed from both; no Brazilian
  normalisation (+55, area code, ninth digit) is done for the client.
- an unencoded `+` in a query string is a space, so `phone=+5511...` finds nothing.
- GET /api/v1/deals ignores unknown filters such as contact_id and lists every deal.
- bodies are parsed as JSON only when Content-Type says JSON.
- `done` is ignored when a v1 task is created; the client must PUT it afterwards.
- deals seeded with "visible": false answer 404, like deals the token's user cannot see.

Run: /usr/bin/python3 tests/mocks/rdstation_mock.py --port 0 --port-file F [options];
see tests/mocks/README.md for the control API under /_mock.
"""

import json
import math
import os
import re
import secrets
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mocklib  # noqa: E402
from mocklib import HttpError, json_response, text_response  # noqa: E402

V1 = "/api/v1"
V2 = "/crm/v2"
OAUTH_PATH = "/oauth2/token"
TASK_TYPES = ("call", "email", "meeting", "task", "lunch", "visit", "whatsapp")
V1_PHONE_TYPES = ("cellphone", "home", "work", "fax")
V2_PHONE_TYPES = ("work", "fax", "home", "mobile")
# The same kind of phone under each version's name (one account, two vocabularies).
V1_TO_V2_PHONE_TYPE = {"cellphone": "mobile"}
V2_TO_V1_PHONE_TYPE = {"mobile": "cellphone"}
DEAL_STATUSES = ("ongoing", "won", "lost", "paused")
BLANK = "não pode ficar em branco"
INVALID = "não é válido"
V1_RATE_LIMIT_BODY = {
    "errors": {"error_type": "RATE_LIMIT_EXCEDDED", "error_message": "API usage limit exceeded"}
}
PHONE_STRIP_RE = re.compile(r"[\s\-()]")
DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
HOUR_RE = re.compile(r"([01]\d|2[0-3]):[0-5]\d")


def phone_key(value):
    """Reduce a phone to the form the mock compares: spaces, dashes and parens removed."""
    return PHONE_STRIP_RE.sub("", str(value or ""))


def is_blank(value):
    """Say whether a required field is missing in the way Rails' presence check sees it."""
    return value is None or (isinstance(value, (str, list, dict)) and len(value) == 0) or (
        isinstance(value, str) and not value.strip())


def valid_date(text):
    """Say whether text is a real calendar date written YYYY-MM-DD."""
    if not isinstance(text, str) or not DATE_RE.fullmatch(text):
        return False
    return mocklib.parse_time(text + "T00:00:00+00:00") is not None


class OAuthState:
    """RD Station's OAuth2 token endpoint: rotating refresh tokens, expiring access tokens."""

    def __init__(self, client_id, client_secret, refresh_token, access_ttl):
        self.lock = threading.Lock()
        self.client_id = client_id
        self.client_secret = client_secret
        self.initial_refresh_token = refresh_token
        self.initial_ttl = access_ttl
        self.reset()

    def reset(self):
        """Go back to the launch state: the configured refresh token valid, no access tokens."""
        with self.lock:
            self.refresh_token = self.initial_refresh_token
            self.access_ttl = self.initial_ttl
            self.access = {}  # access token -> monotonic expiry
            self.refreshes = 0
            self.rejected = 0

    def refresh(self, params):
        """Exchange a refresh token; return (status, body)."""
        grant = params.get("grant_type")
        if not grant:
            return 400, {"error": "invalid_request", "error_description": "grant_type is missing"}
        if grant != "refresh_token":
            return 400, {"error": "unsupported_grant_type"}
        with self.lock:
            if params.get("client_id") != self.client_id or \
                    params.get("client_secret") != self.client_secret:
                self.rejected += 1
                return 401, {"error": "invalid_client"}
            if not params.get("refresh_token"):
                self.rejected += 1
                return 400, {"error": "invalid_request", "error_description": "refresh_token is missing"}
            if not secrets.compare_digest(str(params["refresh_token"]).encode("utf-8"),
                                          self.refresh_token.encode("utf-8")):
                self.rejected += 1
                return 401, {"error": "invalid_grant"}
            access = "mock-at-" + secrets.token_hex(20)
            self.refresh_token = "mock-rt-" + secrets.token_hex(16)
            self.access[access] = time.monotonic() + self.access_ttl
            self.refreshes += 1
            return 200, {"access_token": access, "refresh_token": self.refresh_token,
                         "expires_in": int(self.access_ttl)}

    def access_valid(self, token):
        """Say whether an access token was issued here and has not expired."""
        with self.lock:
            expiry = self.access.get(token)
            return expiry is not None and time.monotonic() < expiry

    def expire_all(self):
        """Make every access token issued so far invalid."""
        with self.lock:
            count = len(self.access)
            self.access.clear()
            return count

    def describe(self):
        """Return the state tests may inspect."""
        with self.lock:
            now = time.monotonic()
            return {
                "refresh_token": self.refresh_token,
                "refresh_count": self.refreshes,
                "rejected_count": self.rejected,
                "valid_access_tokens": sum(1 for e in self.access.values() if e > now),
                "access_ttl": self.access_ttl,
                "client_id": self.client_id,
            }


class Store:
    """The account's data, shared by v1 and v2: users, stages, contacts, deals, notes, tasks."""

    def __init__(self, user_ids):
        self._epoch = int(time.time())
        self._seq = 0
        self.strict_users = bool(user_ids)
        ids = user_ids or ["5e0000000000000000000001"]
        self.users = [{"id": uid, "name": "Mock User %d" % (i + 1),
                       "email": "user%d@example.com" % (i + 1)} for i, uid in enumerate(ids)]
        self.pipeline_id = "5e00000000000000000000a0"
        self.stages = [
            {"id": "5e00000000000000000000a%d" % (i + 1), "name": name, "nickname": nick}
            for i, (name, nick) in enumerate([
                ("Sem contato", "SC"), ("Contato feito", "CF"),
                ("Identificação do interesse", "II"), ("Apresentação", "AP"),
                ("Proposta enviada", "PE")])
        ]
        self.clear()

    def clear(self):
        """Forget contacts, deals, notes and tasks (ids keep increasing)."""
        self.contacts = {}
        self.deals = {}
        self.notes = []
        self.tasks = {}

    def new_id(self):
        """Return a fresh 24-hex-digit id shaped like RD's (MongoDB ObjectId) ids."""
        self._seq += 1
        return "%08x%016x" % (self._epoch, self._seq)

    def user(self, user_id):
        """Return the user with this id, or None."""
        return next((u for u in self.users if u["id"] == user_id), None)

    def user_ok(self, user_id):
        """Say whether a user id is acceptable (any id unless users were configured)."""
        return isinstance(user_id, str) and (not self.strict_users or self.user(user_id) is not None)

    def stage(self, stage_id):
        """Return the deal stage with this id, or None."""
        return next((s for s in self.stages if s["id"] == stage_id), None)

    def add_contact(self, spec):
        """Create a contact from a seed/create spec; return it."""
        now = mocklib.now_utc()
        contact = {
            "id": str(spec.get("id") or self.new_id()),
            "name": spec.get("name") or "",
            "title": spec.get("title"),
            "phones": [self._phone(p) for p in spec.get("phones") or []],
            "emails": [self._email(e) for e in spec.get("emails") or []],
            "deal_ids": [],
            "organization_id": spec.get("organization_id"),
            "created_at": mocklib.parse_time(spec.get("created_at")) or now,
            "updated_at": mocklib.parse_time(spec.get("updated_at")) or now,
        }
        if contact["id"] in self.contacts:
            raise HttpError(409, "contact id %s already exists" % contact["id"])
        self.contacts[contact["id"]] = contact
        return contact

    @staticmethod
    def _phone(item):
        """Normalise a phone seed: a string or {phone, type}."""
        if isinstance(item, dict):
            return {"phone": str(item.get("phone") or ""), "type": item.get("type") or "cellphone"}
        return {"phone": str(item), "type": "cellphone"}

    @staticmethod
    def _email(item):
        """Normalise an e-mail seed: a string or {email}."""
        if isinstance(item, dict):
            return {"email": str(item.get("email") or "")}
        return {"email": str(item)}

    def add_deal(self, spec, contact_ids):
        """Create a deal from a seed/create spec, linked to the given contacts; return it."""
        now = mocklib.now_utc()
        status = spec.get("status")
        if status is None:
            win = spec.get("win")
            status = {True: "won", False: "lost"}.get(win, "paused" if spec.get("hold") else "ongoing")
        if status not in DEAL_STATUSES:
            raise HttpError(400, "deal status must be one of %s" % ", ".join(DEAL_STATUSES))
        closed = mocklib.parse_time(spec.get("closed_at"))
        if closed is None and status in ("won", "lost"):
            closed = now
        deal = {
            "id": str(spec.get("id") or self.new_id()),
            "name": spec.get("name") or "Negociação",
            "status": status,
            "closed_at": closed,
            "created_at": mocklib.parse_time(spec.get("created_at")) or now,
            "updated_at": mocklib.parse_time(spec.get("updated_at")) or now,
            "stage_id": spec.get("stage_id") or spec.get("deal_stage_id") or self.stages[0]["id"],
            "user_id": spec.get("user_id") or spec.get("owner_id") or self.users[0]["id"],
            "contact_ids": [],
            "visible": spec.get("visible", True) is not False,
            "rating": spec.get("rating", 1),
            "amount_total": float(spec.get("amount_total") or 0),
            "last_activity_at": None,
            "interactions": 0,
        }
        if deal["id"] in self.deals:
            raise HttpError(409, "deal id %s already exists" % deal["id"])
        self.deals[deal["id"]] = deal
        for cid in contact_ids:
            self.link(cid, deal["id"])
        return deal

    def link(self, contact_id, deal_id):
        """Attach a deal to a contact (both directions)."""
        contact, deal = self.contacts[contact_id], self.deals[deal_id]
        if deal_id not in contact["deal_ids"]:
            contact["deal_ids"].append(deal_id)
        if contact_id not in deal["contact_ids"]:
            deal["contact_ids"].append(contact_id)

    def unlink(self, contact_id, deal_id):
        """Detach a deal from a contact (both directions)."""
        contact, deal = self.contacts[contact_id], self.deals[deal_id]
        if deal_id in contact["deal_ids"]:
            contact["deal_ids"].remove(deal_id)
        if contact_id in deal["contact_ids"]:
            deal["contact_ids"].remove(contact_id)

    def visible_deal(self, deal_id):
        """Return the deal if it exists and the API user may see it, else None."""
        deal = self.deals.get(str(deal_id)) if deal_id is not None else None
        return deal if deal and deal["visible"] else None

    def add_note(self, version, deal, user_id, text):
        """Record a note (v1 activity / v2 note) on a deal; return it."""
        now = mocklib.now_utc()
        note = {"id": self.new_id(), "deal_id": deal["id"], "user_id": user_id, "text": text,
                "created_at": now, "version": version}
        self.notes.append(note)
        deal["last_activity_at"] = now
        deal["interactions"] += 1
        return note

    def add_task(self, version, fields):
        """Record a task; fields hold the unified task attributes; return it."""
        now = mocklib.now_utc()
        task = {"id": self.new_id(), "version": version, "done": False, "done_date": None,
                "created_at": now, "updated_at": now}
        task.update(fields)
        self.tasks[task["id"]] = task
        return task

    def find_contacts(self, phone=None, email=None, name=None):
        """Return contacts matching every given criterion, in creation order."""
        out = []
        for contact in self.contacts.values():
            if phone is not None and phone_key(phone) not in \
                    [phone_key(p["phone"]) for p in contact["phones"]]:
                continue
            if email is not None and email.lower() not in \
                    [e["email"].lower() for e in contact["emails"]]:
                continue
            if name is not None and name.lower() not in contact["name"].lower():
                continue
            out.append(contact)
        return out


# ---- views: how each API version renders the stored objects --------------------------

def v1_deal_win(deal):
    """Map a deal status to v1's win field: null open, true won, false lost."""
    return {"won": True, "lost": False}.get(deal["status"])


def v1_deal_summary(deal):
    """The deal as embedded in a v1 contact."""
    return {"_id": deal["id"], "id": deal["id"], "name": deal["name"], "win": v1_deal_win(deal),
            "closed_at": _brt(deal["closed_at"]), "updated_at": _brt(deal["updated_at"])}


def _brt(dt):
    """Format an optional datetime in v1 style."""
    return mocklib.iso_brt(dt) if dt else None


def _utc(dt):
    """Format an optional datetime in v2 style."""
    return mocklib.iso_utc(dt) if dt else None


def v1_phones(contact):
    """A contact's phones with v1's type names (v2's mobile is v1's cellphone)."""
    return [dict(p, type=V2_TO_V1_PHONE_TYPE.get(p.get("type"), p.get("type")))
            for p in contact["phones"]]


def v2_phones(contact):
    """A contact's phones with v2's type names (v1's cellphone is v2's mobile)."""
    return [dict(p, type=V1_TO_V2_PHONE_TYPE.get(p.get("type"), p.get("type")))
            for p in contact["phones"]]


def v1_contact(store, contact, embed_deals):
    """The contact as v1 renders it: list items embed deals, GET /contacts/{id} has deal_ids."""
    out = {"_id": contact["id"], "id": contact["id"], "name": contact["name"],
           "title": contact["title"], "notes": None, "facebook": None, "linkedin": None,
           "skype": None, "birthday": None, "created_at": _brt(contact["created_at"]),
           "updated_at": _brt(contact["updated_at"]), "organization_id": contact["organization_id"],
           "emails": [dict(e) for e in contact["emails"]],
           "phones": v1_phones(contact),
           "legal_bases": [], "contact_custom_fields": []}
    if embed_deals:
        out["deals"] = [v1_deal_summary(store.deals[d]) for d in contact["deal_ids"]]
    else:
        out["deal_ids"] = list(contact["deal_ids"])
    return out


def v1_deal(store, deal):
    """The deal as GET /api/v1/deals/{id} renders it."""
    stage = store.stage(deal["stage_id"]) or store.stages[0]
    user = store.user(deal["user_id"]) or {"id": deal["user_id"], "name": "", "email": ""}
    contacts = []
    for cid in deal["contact_ids"]:
        c = store.contacts[cid]
        contacts.append({"_id": c["id"], "id": c["id"], "name": c["name"], "title": c["title"],
                         "emails": [dict(e) for e in c["emails"]],
                         "phones": [dict(p) for p in c["phones"]]})
    return {
        "_id": deal["id"], "id": deal["id"], "name": deal["name"],
        "amount_montly": 0.0, "amount_unique": deal["amount_total"],
        "amount_total": deal["amount_total"], "prediction_date": None,
        "created_at": _brt(deal["created_at"]), "updated_at": _brt(deal["updated_at"]),
        "closed_at": _brt(deal["closed_at"]), "win": v1_deal_win(deal),
        "hold": deal["status"] == "paused", "rating": deal["rating"],
        "interactions": deal["interactions"], "last_activity_at": _brt(deal["last_activity_at"]),
        "deal_stage": {"_id": stage["id"], "id": stage["id"], "name": stage["name"],
                       "nickname": stage["nickname"]},
        "user": {"_id": user["id"], "id": user["id"], "name": user["name"],
                 "nickname": user["name"][:2].upper(), "email": user["email"]},
        "contacts": contacts, "organization": None, "deal_source": None, "campaign": None,
        "deal_custom_fields": [], "deal_products": [],
    }


def v1_activity(note):
    """A note as v1 renders it (an "activity")."""
    return {"_id": note["id"], "id": note["id"], "deal_id": note["deal_id"],
            "user_id": note["user_id"], "text": note["text"], "date": _brt(note["created_at"])}


def v1_task(store, task):
    """A task as v1 renders it."""
    date = task.get("date")
    hour = task.get("hour")
    if date is None and task.get("due_date") is not None:
        local = task["due_date"].astimezone(mocklib.BRT)
        date, hour = local.strftime("%Y-%m-%d"), local.strftime("%H:%M")
    users = [store.user(u) or {"id": u, "name": "", "email": ""} for u in task["user_ids"]]
    return {
        "_id": task["id"], "id": task["id"], "subject": task["subject"], "type": task["type"],
        "notes": task["notes"], "date": "%sT%s:00.000-03:00" % (date, hour or "00:00"),
        "hour": hour, "done": task["done"], "done_date": _brt(task["done_date"]),
        "deal_id": task["deal_id"], "user_ids": list(task["user_ids"]),
        "users": [{"_id": u["id"], "id": u["id"], "name": u["name"], "email": u["email"]}
                  for u in users],
        "created_at": _brt(task["created_at"]),
    }


def v2_contact(contact):
    """A contact as v2 renders it."""
    return {"id": contact["id"], "name": contact["name"], "job_title": contact["title"],
            "emails": [dict(e) for e in contact["emails"]],
            "phones": v2_phones(contact),
            "organization_id": contact["organization_id"], "deal_ids": list(contact["deal_ids"]),
            "created_at": _utc(contact["created_at"]), "updated_at": _utc(contact["updated_at"])}


def v2_deal(store, deal):
    """A deal as v2 renders it."""
    return {"id": deal["id"], "name": deal["name"], "status": deal["status"],
            "contact_ids": list(deal["contact_ids"]), "owner_id": deal["user_id"],
            "stage_id": deal["stage_id"], "pipeline_id": store.pipeline_id,
            "organization_id": None, "rating": deal["rating"],
            "total_price": deal["amount_total"], "created_at": _utc(deal["created_at"]),
            "updated_at": _utc(deal["updated_at"]), "closed_at": _utc(deal["closed_at"])}


def v2_note(note):
    """A note as v2 renders it."""
    return {"id": note["id"], "description": note["text"], "user_id": note["user_id"],
            "deal_id": note["deal_id"], "registered_at": _utc(note["created_at"]),
            "created_at": _utc(note["created_at"]), "updated_at": _utc(note["created_at"])}


def v2_task(task):
    """A task as v2 renders it."""
    due = task.get("due_date")
    if due is None and task.get("date"):
        due = mocklib.parse_time("%sT%s:00-03:00" % (task["date"], task.get("hour") or "00:00"))
    return {"id": task["id"], "name": task["subject"], "type": task["type"],
            "description": task["notes"], "due_date": _utc(due), "deal_id": task["deal_id"],
            "owner_ids": list(task["user_ids"]), "status": "completed" if task["done"] else "open",
            "completed_at": _utc(task["done_date"]), "created_at": _utc(task["created_at"]),
            "updated_at": _utc(task["updated_at"])}


# ---- RDQL (v2 filter=) -------------------------------------------------------------------

RDQL_CLAUSE_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(:>=|:<=|>=|<=|:~|:)\s*(.*?)\s*$")


def parse_rdql(text):
    """Parse the RDQL subset the mock understands into [(field, op, [values])].

    Supported: field:value, field:(a,b) (IN), field:~value (contains), field>=value,
    field<=value, joined by `and`; values may be double-quoted.  Anything else -> 400.
    """
    clauses = []
    for part in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
        if re.search(r"\s+or\s+", part, flags=re.IGNORECASE):
            raise HttpError(400, "the mock does not support 'or' in filters")
        found = RDQL_CLAUSE_RE.match(part)
        if not found:
            raise HttpError(400, "invalid filter clause: %r" % part)
        field, op, value = found.group(1), found.group(2).lstrip(":") or ":", found.group(3)
        if op == "~":
            values = [_unquote(value)]
        elif value.startswith("(") and value.endswith(")") and op == ":":
            values = [_unquote(v.strip()) for v in value[1:-1].split(",") if v.strip()]
            op = "in"
        else:
            values = [_unquote(value)]
        clauses.append((field, op, values))
    return clauses


def _unquote(value):
    """Strip one pair of surrounding double quotes."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def rdql_check_fields(clauses, getters):
    """Refuse (400) filters on fields the endpoint does not support."""
    for field, _, _ in clauses:
        if field not in getters:
            raise HttpError(400, "unsupported filter field %r" % field)


def rdql_accepts(clauses, getters, obj):
    """Say whether an object passes every clause; getters map field -> (obj -> list of str)."""
    for field, op, values in clauses:
        have = getters[field](obj)
        if op in (":", "in"):
            if not any(v in have for v in values):
                return False
        elif op == "~":
            if not any(values[0].lower() in h.lower() for h in have):
                return False
        elif op == ">=":
            if not any(h >= values[0] for h in have):
                return False
        elif op == "<=":
            if not any(h <= values[0] for h in have):
                return False
    return True


class RdStationMock(mocklib.MockApp):
    """The RD Station CRM mock: v1, v2, OAuth2 and the /_mock control API."""

    name = "rdstation-mock"

    def __init__(self, opts):
        super().__init__(opts.rate_limit, opts.rate_window, opts.quiet)
        self.v1_token = opts.v1_token
        self.free_plan = self.launch_free_plan = opts.free_plan
        self.store = Store(opts.user_id or [])
        self.launch_users = list(self.store.users)
        self.oauth = OAuthState(opts.client_id, opts.client_secret, opts.refresh_token,
                                opts.access_ttl)
        self.v1 = mocklib.Router()
        self.v2 = mocklib.Router()
        self._add_v1_routes()
        self._add_v2_routes()
        self._add_control_routes()

    # ---- pipeline ---------------------------------------------------------------------

    def serve_api(self, req):
        """Route a request to OAuth, v1 or v2."""
        if req.path == OAUTH_PATH:
            req.api = "oauth"
            return self._oauth_token(req)
        if req.path == V1 or req.path.startswith(V1 + "/"):
            req.api = "v1"
            return self._serve_version(req, V1, self.v1, self._v1_authorized)
        if req.path == V2 or req.path.startswith(V2 + "/"):
            req.api = "v2"
            return self._serve_version(req, V2, self.v2, self._v2_authorized)
        req.api = "unknown"
        return text_response(404, mocklib.html_error_page(404), "text/html; charset=utf-8")

    def _serve_version(self, req, prefix, router, authorized):
        """Rate-limit, authenticate, then dispatch a v1/v2 request."""
        wait_s = self.check_rate_limit()
        if wait_s is not None:
            return self._rate_limited(req, max(1, math.ceil(wait_s)))
        if not authorized(req):
            return self.default_error(401, req)
        func, groups = router.match(req.method, req.path[len(prefix):] or "/")
        if func is None:
            return self.default_error(404, req)
        with self.lock:
            return func(req, *groups)

    def _rate_limited(self, req, retry_after):
        """The 429 answer of the API version the request addressed."""
        if req.api == "v2":
            return self._v2_errors(429, "Too Many Requests", "API usage limit exceeded",
                                   headers={"Retry-After": str(retry_after)})
        return json_response(429, V1_RATE_LIMIT_BODY)

    def _v1_authorized(self, req):
        """v1 authenticates with ?token= only."""
        token = req.arg("token")
        return token is not None and secrets.compare_digest(
            token.encode("utf-8"), self.v1_token.encode("utf-8"))

    def _v2_authorized(self, req):
        """v2 authenticates with Authorization: Bearer <access token>."""
        header = req.headers.get("Authorization") or ""
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and self.oauth.access_valid(token.strip())

    def default_error(self, status, req, detail=None):
        """The error body each part of RD Station uses for a status."""
        api = req.api or self._guess_api(req.path)
        if status >= 500 and (api != "v2" or status != 500):
            return text_response(status, mocklib.html_error_page(status), "text/html; charset=utf-8")
        if api == "v2":
            headers = {"Retry-After": "1"} if status == 429 else None
            if status == 401:
                headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
                detail = detail or "The access token is missing, invalid or expired"
            return self._v2_errors(status, mocklib.reason_phrase(status),
                                   detail or mocklib.reason_phrase(status), headers=headers)
        if api == "oauth":
            if status == 429:
                return json_response(429, V1_RATE_LIMIT_BODY)
            return json_response(status, {"error": detail or "invalid_request"})
        return self._v1_error(status, detail)

    @staticmethod
    def _guess_api(path):
        """Which API a path belongs to (for errors raised before routing)."""
        if path.startswith(V2):
            return "v2"
        if path == OAUTH_PATH:
            return "oauth"
        return "v1"

    @staticmethod
    def _v1_error(status, detail=None):
        """v1's error bodies, inconsistent as documented."""
        if status == 401:
            return json_response(401, {"error": "Permission denied."})
        if status == 403:
            return json_response(403, {"error": "forbidden"})
        if status == 404:
            return json_response(404, {"errors": {"error_type": "RESOURCE_NOT_FOUND",
                                                  "error_message": detail or "Resource not found"}})
        if status == 422:
            return json_response(422, {"errors": {"base": [detail or INVALID]}})
        if status == 429:
            return json_response(429, V1_RATE_LIMIT_BODY)
        if status == 400:
            return json_response(400, {"errors": {"error_type": "BAD_REQUEST",
                                                  "error_message": detail or "Bad request"}})
        return json_response(status, {"error": detail or mocklib.reason_phrase(status)})

    @staticmethod
    def _v2_errors(status, title, detail, pointer=None, headers=None):
        """A v2 JSON:API-style error answer with one entry."""
        entry = {"status": str(status), "title": title, "detail": detail}
        if pointer:
            entry["source"] = {"pointer": pointer}
        return json_response(status, {"errors": [entry]}, headers=headers)

    # ---- OAuth ------------------------------------------------------------------------

    def _oauth_token(self, req):
        """POST /oauth2/token: refresh-token grant with rotation."""
        if req.method != "POST":
            return json_response(405, {"error": "method_not_allowed"}, headers={"Allow": "POST"})
        if req.is_json():
            body = req.json()
            params = body if isinstance(body, dict) else {}
        else:
            params = req.form()
        status, body = self.oauth.refresh(params)
        return json_response(status, body, headers={"Cache-Control": "no-store"})

    # ---- v1 ---------------------------------------------------------------------------

    def _add_v1_routes(self):
        """Register the v1 endpoints (paths relative to /api/v1)."""
        r = self.v1
        r.add("GET", r"/contacts", self._v1_contacts_list)
        r.add("POST", r"/contacts", self._v1_contacts_create)
        r.add("GET", r"/contacts/([^/]+)", self._v1_contact_show)
        r.add("PUT", r"/contacts/([^/]+)", self._v1_contact_update)
        r.add("GET", r"/deals", self._v1_deals_list)
        r.add("POST", r"/deals", self._v1_deals_create)
        r.add("GET", r"/deals/([^/]+)", self._v1_deal_show)
        r.add("POST", r"/activities", self._v1_activity_create)
        r.add("GET", r"/activities", self._v1_activities_list)
        r.add("POST", r"/tasks", self._v1_task_create)
        r.add("GET", r"/tasks", self._v1_tasks_list)
        r.add("GET", r"/tasks/([^/]+)", self._v1_task_show)
        r.add("PUT", r"/tasks/([^/]+)", self._v1_task_update)
        r.add("GET", r"/users", self._v1_users)
        r.add("GET", r"/token/check", self._v1_token_check)
        r.add("GET", r"/deal_stages", self._v1_stages)
        r.add("GET", r"/deal_pipelines", self._v1_pipelines)

    @staticmethod
    def _v1_paging(req):
        """Read page (from 1) and limit (default 20, at most 200) for v1 lists."""
        try:
            page = max(1, int(req.arg("page") or 1))
            limit = min(200, max(1, int(req.arg("limit") or 20)))
        except ValueError:
            raise HttpError(400, "page and limit must be integers") from None
        return page, limit

    @staticmethod
    def _v1_params(req, root):
        """The object under `root` in a v1 JSON body ({} if absent or not JSON)."""
        if not req.is_json():
            return {}
        body = req.json()
        if not isinstance(body, dict):
            return {}
        inner = body.get(root)
        return inner if isinstance(inner, dict) else {}

    def _v1_contacts_list(self, req):
        """GET /contacts?phone=|email=|q=&page&limit."""
        page, limit = self._v1_paging(req)
        found = self.store.find_contacts(phone=req.arg("phone") or None,
                                         email=req.arg("email") or None, name=req.arg("q") or None)
        chunk = found[(page - 1) * limit: page * limit]
        return json_response(200, {
            "contacts": [v1_contact(self.store, c, embed_deals=True) for c in chunk],
            "total": len(found), "has_more": page * limit < len(found)})

    def _v1_contact_show(self, req, contact_id):
        """GET /contacts/{id}: the contact with deal_ids."""
        contact = self.store.contacts.get(contact_id)
        if contact is None:
            return self._v1_error(404, "Contact not found")
        return json_response(200, v1_contact(self.store, contact, embed_deals=False))

    def _v1_contacts_create(self, req):
        """POST /contacts {"contact": {name, phones, emails, deal_ids}} -> 200."""
        params = self._v1_params(req, "contact")
        if is_blank(params.get("name")):
            return json_response(422, {"errors": {"name": [BLANK]}})
        deal_ids = params.get("deal_ids") or []
        for did in deal_ids:
            if self.store.visible_deal(did) is None:
                return self._v1_error(404, "Deal %s not found" % did)
        contact = self.store.add_contact({k: params.get(k) for k in ("name", "title", "phones", "emails")})
        for did in deal_ids:
            self.store.link(contact["id"], str(did))
        return json_response(200, v1_contact(self.store, contact, embed_deals=False))

    def _v1_contact_update(self, req, contact_id):
        """PUT /contacts/{id} {"contact": {name, title, deal_ids}} -> 200 with deal_ids.

        deal_ids replaces the contact's deals: a client that wants to add one sends the
        current list plus the new id (deals left out are unlinked)."""
        contact = self.store.contacts.get(contact_id)
        if contact is None:
            return self._v1_error(404, "Contact not found")
        params = self._v1_params(req, "contact")
        if "name" in params and is_blank(params.get("name")):
            return json_response(422, {"errors": {"name": [BLANK]}})
        deal_ids = params.get("deal_ids")
        if deal_ids is not None:
            if not isinstance(deal_ids, list):
                return json_response(422, {"errors": {"deal_ids": [INVALID]}})
            for did in deal_ids:
                if self.store.visible_deal(did) is None:
                    return self._v1_error(404, "Deal %s not found" % did)
            for did in list(contact["deal_ids"]):
                if did not in [str(d) for d in deal_ids]:
                    self.store.unlink(contact_id, did)
            for did in deal_ids:
                self.store.link(contact_id, str(did))
        for key in ("name", "title"):
            if key in params:
                contact[key] = params[key]
        contact["updated_at"] = mocklib.now_utc()
        return json_response(200, v1_contact(self.store, contact, embed_deals=False))

    def _v1_deals_list(self, req):
        """GET /deals: every deal the token sees; contact filters are not supported (ignored)."""
        page, limit = self._v1_paging(req)
        deals = [d for d in self.store.deals.values() if d["visible"]]
        win = req.arg("win")
        if win in ("true", "false", "null"):
            want = {"true": True, "false": False, "null": None}[win]
            deals = [d for d in deals if v1_deal_win(d) is want]
        chunk = deals[(page - 1) * limit: page * limit]
        return json_response(200, {"deals": [v1_deal(self.store, d) for d in chunk],
                                   "total": len(deals), "has_more": page * limit < len(deals)})

    def _v1_deal_show(self, req, deal_id):
        """GET /deals/{id}."""
        deal = self.store.visible_deal(deal_id)
        if deal is None:
            return self._v1_error(404, "Deal not found")
        return json_response(200, v1_deal(self.store, deal))

    def _v1_deals_create(self, req):
        """POST /deals {"deal": {name, deal_stage_id, user_id, contact_ids}, "contacts": [...]}."""
        params = self._v1_params(req, "deal")
        body = req.json() if req.is_json() else None
        errors = {}
        if is_blank(params.get("name")):
            errors["name"] = [BLANK]
        if is_blank(params.get("deal_stage_id")):
            errors["deal_stage_id"] = [BLANK]
        elif self.store.stage(params["deal_stage_id"]) is None:
            errors["deal_stage_id"] = [INVALID]
        if params.get("user_id") is not None and not self.store.user_ok(params["user_id"]):
            errors["user_id"] = [INVALID]
        if errors:
            return json_response(422, {"errors": errors})
        contact_ids = [str(c) for c in params.get("contact_ids") or []]
        new_contacts = []
        extra = body.get("contacts") if isinstance(body, dict) else None
        for item in extra if isinstance(extra, list) else []:
            if not isinstance(item, dict):
                continue
            ref = item.get("_id") or item.get("id")
            if ref:
                contact_ids.append(str(ref))
            elif not is_blank(item.get("name")):
                new_contacts.append(item)
        for cid in contact_ids:
            if cid not in self.store.contacts:
                return self._v1_error(404, "Contact %s not found" % cid)
        for item in new_contacts:
            contact_ids.append(self.store.add_contact(item)["id"])
        deal = self.store.add_deal({"name": params["name"], "stage_id": params["deal_stage_id"],
                                    "user_id": params.get("user_id"),
                                    "rating": params.get("rating", 1)}, contact_ids)
        return json_response(200, v1_deal(self.store, deal))

    def _v1_activity_create(self, req):
        """POST /activities {"activity": {deal_id, user_id, text}} -> 200 (not 201)."""
        params = self._v1_params(req, "activity")
        errors = {f: [BLANK] for f in ("deal_id", "user_id", "text") if is_blank(params.get(f))}
        if "user_id" not in errors and not self.store.user_ok(params["user_id"]):
            errors["user_id"] = [INVALID]
        if errors:
            return json_response(422, {"errors": errors})
        deal = self.store.visible_deal(params["deal_id"])
        if deal is None:
            return self._v1_error(404, "Deal not found")
        note = self.store.add_note("v1", deal, params["user_id"], str(params["text"]))
        return json_response(200, v1_activity(note))

    def _v1_activities_list(self, req):
        """GET /activities?deal_id=&page&limit -> {"activities": [...]} newest first."""
        page, limit = self._v1_paging(req)
        deal_id = req.arg("deal_id")
        notes = [n for n in reversed(self.store.notes) if deal_id is None or n["deal_id"] == deal_id]
        chunk = notes[(page - 1) * limit: page * limit]
        return json_response(200, {"activities": [v1_activity(n) for n in chunk]})

    def _v1_task_errors(self, params, creating):
        """Validate v1 task fields; return {field: [messages]}."""
        errors = {}
        required = ("deal_id", "subject", "type", "date", "hour", "user_ids") if creating else ()
        for field in required:
            if is_blank(params.get(field)):
                errors[field] = [BLANK]
        subject = params.get("subject")
        if "subject" not in errors and subject is not None and len(str(subject).strip()) < 3:
            errors["subject"] = ["é muito curto (mínimo: 3 caracteres)"]
        if "type" not in errors and params.get("type") is not None and params["type"] not in TASK_TYPES:
            errors["type"] = ["não está incluído na lista"]
        if "date" not in errors and params.get("date") is not None and not valid_date(params["date"]):
            errors["date"] = [INVALID]
        hour = params.get("hour")
        if "hour" not in errors and hour is not None and not (
                isinstance(hour, str) and HOUR_RE.fullmatch(hour)):
            errors["hour"] = [INVALID]
        users = params.get("user_ids")
        if "user_ids" not in errors and users is not None and not (
                isinstance(users, list) and all(self.store.user_ok(u) for u in users)):
            errors["user_ids"] = [INVALID]
        if "done" in params and not isinstance(params["done"], bool):
            errors["done"] = [INVALID]
        return errors

    def _v1_task_create(self, req):
        """POST /tasks {"task": {...}} -> 200 with done false (done is ignored at creation)."""
        params = self._v1_params(req, "task")
        errors = self._v1_task_errors(params, creating=True)
        if errors:
            return json_response(422, {"errors": errors})
        deal = self.store.visible_deal(params["deal_id"])
        if deal is None:
            return self._v1_error(404, "Deal not found")
        if self.free_plan and params["type"] != "task":
            return self._v1_error(403)
        task = self.store.add_task("v1", {
            "deal_id": deal["id"], "subject": str(params["subject"]), "type": params["type"],
            "notes": params.get("notes"), "date": params["date"], "hour": params["hour"],
            "due_date": None, "user_ids": list(params["user_ids"])})
        return json_response(200, v1_task(self.store, task))

    def _v1_task_show(self, req, task_id):
        """GET /tasks/{id}."""
        task = self.store.tasks.get(task_id)
        if task is None:
            return self._v1_error(404, "Task not found")
        return json_response(200, v1_task(self.store, task))

    def _v1_task_update(self, req, task_id):
        """PUT /tasks/{id} {"task": {"done": true, ...}} -> 200."""
        task = self.store.tasks.get(task_id)
        if task is None:
            return self._v1_error(404, "Task not found")
        params = self._v1_params(req, "task")
        errors = self._v1_task_errors(params, creating=False)
        if errors:
            return json_response(422, {"errors": errors})
        if self.free_plan and params.get("type") not in (None, "task"):
            return self._v1_error(403)
        self._apply_task_update(task, {
            "subject": params.get("subject"), "type": params.get("type"),
            "notes": params.get("notes"), "date": params.get("date"), "hour": params.get("hour"),
            "user_ids": params.get("user_ids"), "done": params.get("done")})
        return json_response(200, v1_task(self.store, task))

    @staticmethod
    def _apply_task_update(task, changes):
        """Apply non-None changes to a stored task, stamping done_date on completion."""
        for key, value in changes.items():
            if value is None:
                continue
            if key == "done":
                if value and not task["done"]:
                    task["done_date"] = mocklib.now_utc()
                elif not value:
                    task["done_date"] = None
            if key in ("date", "hour"):
                task["due_date"] = None
            task[key] = value
        task["updated_at"] = mocklib.now_utc()

    def _v1_tasks_list(self, req):
        """GET /tasks?deal_id=&type=&done=&user_id=&page&limit."""
        page, limit = self._v1_paging(req)
        tasks = list(self.store.tasks.values())
        for field in ("deal_id", "type"):
            want = req.arg(field)
            if want:
                tasks = [t for t in tasks if t[field] == want]
        done = req.arg("done")
        if done in ("true", "false"):
            tasks = [t for t in tasks if t["done"] == (done == "true")]
        user = req.arg("user_id")
        if user:
            tasks = [t for t in tasks if user in t["user_ids"]]
        chunk = tasks[(page - 1) * limit: page * limit]
        return json_response(200, {"tasks": [v1_task(self.store, t) for t in chunk],
                                   "total": len(tasks), "has_more": page * limit < len(tasks)})

    def _v1_users(self, req):
        """GET /users."""
        return json_response(200, {"users": [
            {"_id": u["id"], "id": u["id"], "name": u["name"], "email": u["email"], "active": True}
            for u in self.store.users]})

    def _v1_token_check(self, req):
        """GET /token/check: 200 for the valid token (401 comes from authentication). The
        real answer's body is undocumented; calllog reads only the status."""
        return json_response(200, {})

    def _v1_stages(self, req):
        """GET /deal_stages."""
        return json_response(200, {"deal_stages": [
            {"_id": s["id"], "id": s["id"], "name": s["name"], "nickname": s["nickname"],
             "order": i + 1, "deal_pipeline_id": self.store.pipeline_id}
            for i, s in enumerate(self.store.stages)], "total": len(self.store.stages)})

    def _v1_pipelines(self, req):
        """GET /deal_pipelines."""
        stages = [{"_id": s["id"], "id": s["id"], "name": s["name"], "nickname": s["nickname"],
                   "order": i + 1} for i, s in enumerate(self.store.stages)]
        return json_response(200, [{"_id": self.store.pipeline_id, "id": self.store.pipeline_id,
                                    "name": "Funil padrão", "deal_stages": stages}])

    # ---- v2 ---------------------------------------------------------------------------

    def _add_v2_routes(self):
        """Register the v2 endpoints (paths relative to /crm/v2)."""
        r = self.v2
        r.add("GET", r"/contacts", self._v2_contacts_list)
        r.add("POST", r"/contacts", self._v2_contacts_create)
        r.add("GET", r"/contacts/([^/]+)", self._v2_contact_show)
        r.add("GET", r"/deals", self._v2_deals_list)
        r.add("POST", r"/deals", self._v2_deals_create)
        r.add("GET", r"/deals/([^/]+)", self._v2_deal_show)
        r.add("POST", r"/deals/([^/]+)/notes", self._v2_note_create)
        r.add("GET", r"/deals/([^/]+)/notes", self._v2_notes_list)
        r.add("POST", r"/tasks", self._v2_task_create)
        r.add("GET", r"/tasks", self._v2_tasks_list)
        r.add("GET", r"/tasks/([^/]+)", self._v2_task_show)
        r.add("PUT", r"/tasks/([^/]+)", self._v2_task_update)
        r.add("GET", r"/users", self._v2_users)

    def _v2_data(self, req):
        """The object under "data" in a v2 body ({} if absent or not JSON)."""
        if not req.is_json():
            return {}
        body = req.json()
        data = body.get("data") if isinstance(body, dict) else None
        return data if isinstance(data, dict) else {}

    def _v2_list(self, req, items):
        """Paginate with page[number]/page[size] (default 25, max 200) and add links."""
        try:
            number = max(1, int(req.arg("page[number]") or 1))
            size = min(200, max(1, int(req.arg("page[size]") or 25)))
        except ValueError:
            raise HttpError(400, "page[number] and page[size] must be integers") from None
        chunk = items[(number - 1) * size: number * size]
        base = "http://%s%s" % (req.headers.get("Host") or "127.0.0.1", req.path)
        args = {k: v[0] for k, v in req.args.items()}

        def link(num):
            """URL of page `num` with the same filters."""
            return base + "?" + urllib.parse.urlencode(dict(args, **{"page[number]": num,
                                                                    "page[size]": size}))
        links = {"self": link(number), "first": link(1)}
        if number * size < len(items):
            links["next"] = link(number + 1)
        if number > 1:
            links["prev"] = link(number - 1)
        return json_response(200, {"data": chunk, "links": links})

    def _v2_filter(self, req):
        """The parsed filter= parameter ([] when absent)."""
        text = req.arg("filter")
        return parse_rdql(text) if text else []

    @staticmethod
    def _v2_invalid(problems):
        """422 with one error entry per (field, message)."""
        return json_response(422, {"errors": [
            {"status": "422", "title": "Unprocessable Entity", "detail": "%s %s" % (field, msg),
             "source": {"pointer": "/data/%s" % field}} for field, msg in problems]})

    def _v2_not_found(self, what):
        """404 in v2 style."""
        return self._v2_errors(404, "Not Found", "%s not found" % what)

    def _v2_contacts_list(self, req):
        """GET /contacts?filter=phone:...|email:...|name:~...|id:..."""
        clauses = self._v2_filter(req)
        getters = {"id": lambda c: [c["id"]], "name": lambda c: [c["name"]],
                   "email": lambda c: [e["email"].lower() for e in c["emails"]],
                   "phone": lambda c: [phone_key(p["phone"]) for p in c["phones"]]}
        prepared = []
        for field, op, values in clauses:
            if field == "phone":
                values = [phone_key(v) for v in values]
            elif field == "email":
                values = [v.lower() for v in values]
            prepared.append((field, op, values))
        rdql_check_fields(prepared, getters)
        found = [v2_contact(c) for c in self.store.contacts.values()
                 if rdql_accepts(prepared, getters, c)]
        return self._v2_list(req, found)

    def _v2_contact_show(self, req, contact_id):
        """GET /contacts/{id}."""
        contact = self.store.contacts.get(contact_id)
        if contact is None:
            return self._v2_not_found("Contact")
        return json_response(200, {"data": v2_contact(contact), "links": {}})

    def _v2_contacts_create(self, req):
        """POST /contacts {"data": {name, phones, emails}} -> 201."""
        data = self._v2_data(req)
        if is_blank(data.get("name")):
            return self._v2_invalid([("name", "can't be blank")])
        phones = data.get("phones") or []
        problems = [("phones/%d/type" % i, "is not included in the list (%s)" % ", ".join(V2_PHONE_TYPES))
                    for i, p in enumerate(phones if isinstance(phones, list) else [])
                    if isinstance(p, dict) and p.get("type") is not None
                    and p.get("type") not in V2_PHONE_TYPES]
        if problems:
            return self._v2_invalid(problems)
        contact = self.store.add_contact({k: data.get(k) for k in ("name", "phones", "emails")})
        contact["title"] = data.get("job_title")
        return json_response(201, {"data": v2_contact(contact), "links": {}})

    def _v2_deals_list(self, req):
        """GET /deals?filter=contact_id:X | contact_ids:(a,b) | status:won ..."""
        clauses = self._v2_filter(req)
        getters = {"id": lambda d: [d["id"]], "status": lambda d: [d["status"]],
                   "name": lambda d: [d["name"]], "owner_id": lambda d: [d["user_id"]],
                   "contact_id": lambda d: d["contact_ids"], "contact_ids": lambda d: d["contact_ids"],
                   "stage_id": lambda d: [d["stage_id"]],
                   "updated_at": lambda d: [_utc(d["updated_at"])]}
        rdql_check_fields(clauses, getters)
        found = [v2_deal(self.store, d) for d in self.store.deals.values()
                 if d["visible"] and rdql_accepts(clauses, getters, d)]
        return self._v2_list(req, found)

    def _v2_deal_show(self, req, deal_id):
        """GET /deals/{id}."""
        deal = self.store.visible_deal(deal_id)
        if deal is None:
            return self._v2_not_found("Deal")
        return json_response(200, {"data": v2_deal(self.store, deal), "links": {}})

    def _v2_deals_create(self, req):
        """POST /deals {"data": {name, contact_ids, stage_id, owner_id}} -> 201."""
        data = self._v2_data(req)
        problems = []
        if is_blank(data.get("name")):
            problems.append(("name", "can't be blank"))
        if data.get("stage_id") is not None and self.store.stage(data["stage_id"]) is None:
            problems.append(("stage_id", "is invalid"))
        if data.get("owner_id") is not None and not self.store.user_ok(data["owner_id"]):
            problems.append(("owner_id", "is invalid"))
        contact_ids = data.get("contact_ids") or []
        if not isinstance(contact_ids, list):
            problems.append(("contact_ids", "must be a list"))
        if problems:
            return self._v2_invalid(problems)
        for cid in contact_ids:
            if str(cid) not in self.store.contacts:
                return self._v2_not_found("Contact %s" % cid)
        deal = self.store.add_deal({"name": data["name"], "stage_id": data.get("stage_id"),
                                    "user_id": data.get("owner_id")},
                                   [str(c) for c in contact_ids])
        return json_response(201, {"data": v2_deal(self.store, deal), "links": {}})

    def _v2_note_create(self, req, deal_id):
        """POST /deals/{id}/notes {"data": {description, user_id}} -> 201."""
        deal = self.store.visible_deal(deal_id)
        if deal is None:
            return self._v2_not_found("Deal")
        data = self._v2_data(req)
        problems = []
        if is_blank(data.get("description")):
            problems.append(("description", "can't be blank"))
        user_id = data.get("user_id")
        if user_id is not None and not self.store.user_ok(user_id):
            problems.append(("user_id", "is invalid"))
        if problems:
            return self._v2_invalid(problems)
        note = self.store.add_note("v2", deal, user_id or self.store.users[0]["id"],
                                   str(data["description"]))
        return json_response(201, {"data": v2_note(note), "links": {}})

    def _v2_notes_list(self, req, deal_id):
        """GET /deals/{id}/notes, newest first."""
        deal = self.store.visible_deal(deal_id)
        if deal is None:
            return self._v2_not_found("Deal")
        notes = [v2_note(n) for n in reversed(self.store.notes) if n["deal_id"] == deal["id"]]
        return self._v2_list(req, notes)

    def _v2_task_problems(self, data, creating):
        """Validate v2 task fields; return [(field, message)]."""
        problems = []
        if creating:
            for field in ("name", "type", "due_date", "deal_id"):
                if is_blank(data.get(field)):
                    problems.append((field, "can't be blank"))
        blank = {f for f, _ in problems}
        if "name" not in blank and data.get("name") is not None and len(str(data["name"]).strip()) < 3:
            problems.append(("name", "is too short (minimum is 3 characters)"))
        if "type" not in blank and data.get("type") is not None and data["type"] not in TASK_TYPES:
            problems.append(("type", "is not included in the list"))
        if "due_date" not in blank and data.get("due_date") is not None and (
                not isinstance(data["due_date"], str) or mocklib.parse_time(data["due_date"]) is None
                or not DATE_RE.match(data["due_date"])):
            problems.append(("due_date", "is invalid"))
        owners = data.get("owner_ids")
        if owners is not None and not (isinstance(owners, list)
                                       and all(self.store.user_ok(o) for o in owners)):
            problems.append(("owner_ids", "is invalid"))
        if data.get("status") is not None and data["status"] not in ("open", "completed"):
            problems.append(("status", "is not included in the list"))
        return problems

    def _v2_task_create(self, req):
        """POST /tasks {"data": {name, type, description, due_date, deal_id, owner_ids}} -> 201 open."""
        data = self._v2_data(req)
        problems = self._v2_task_problems(data, creating=True)
        if problems:
            return self._v2_invalid(problems)
        deal = self.store.visible_deal(data["deal_id"])
        if deal is None:
            return self._v2_not_found("Deal")
        if self.free_plan and data["type"] != "task":
            return self._v2_errors(403, "Forbidden", "task type not available on this plan")
        task = self.store.add_task("v2", {
            "deal_id": deal["id"], "subject": str(data["name"]), "type": data["type"],
            "notes": data.get("description"), "date": None, "hour": None,
            "due_date": mocklib.parse_time(data["due_date"]),
            "user_ids": list(data.get("owner_ids") or [])})
        return json_response(201, {"data": v2_task(task), "links": {}})

    def _v2_task_show(self, req, task_id):
        """GET /tasks/{id}."""
        task = self.store.tasks.get(task_id)
        if task is None:
            return self._v2_not_found("Task")
        return json_response(200, {"data": v2_task(task), "links": {}})

    def _v2_task_update(self, req, task_id):
        """PUT /tasks/{id} {"data": {"status": "completed", ...}} -> 200."""
        task = self.store.tasks.get(task_id)
        if task is None:
            return self._v2_not_found("Task")
        data = self._v2_data(req)
        problems = self._v2_task_problems(data, creating=False)
        if problems:
            return self._v2_invalid(problems)
        status = data.get("status")
        self._apply_task_update(task, {
            "subject": data.get("name"), "type": data.get("type"),
            "notes": data.get("description"), "user_ids": data.get("owner_ids"),
            "done": None if status is None else status == "completed"})
        if data.get("due_date") is not None:
            task["due_date"] = mocklib.parse_time(data["due_date"])
            task["date"] = task["hour"] = None
        return json_response(200, {"data": v2_task(task), "links": {}})

    def _v2_users(self, req):
        """GET /users: the account's users (id, name, email), v2 list envelope."""
        return self._v2_list(req, [{"id": u["id"], "name": u["name"], "email": u["email"]}
                                   for u in self.store.users])

    def _v2_tasks_list(self, req):
        """GET /tasks?filter=deal_id:X and status:open ..."""
        clauses = self._v2_filter(req)
        getters = {"id": lambda t: [t["id"]], "deal_id": lambda t: [t["deal_id"]],
                   "type": lambda t: [t["type"]],
                   "status": lambda t: ["completed" if t["done"] else "open"],
                   "owner_id": lambda t: t["user_ids"], "owner_ids": lambda t: t["user_ids"]}
        rdql_check_fields(clauses, getters)
        found = [v2_task(t) for t in self.store.tasks.values() if rdql_accepts(clauses, getters, t)]
        return self._v2_list(req, found)

    # ---- control API ------------------------------------------------------------------

    def reset_data(self, body):
        """Forget the account's data, added users and the plan switch; restore OAuth unless
        {"keep_oauth": true}."""
        self.store.clear()
        self.store.users = list(self.launch_users)
        self.free_plan = self.launch_free_plan
        if not body.get("keep_oauth"):
            self.oauth.reset()

    def _add_control_routes(self):
        """Register RD-specific control endpoints."""
        c = self.control
        c.add("POST", r"/_mock/contacts", self._ctl_seed_contacts)
        c.add("GET", r"/_mock/contacts", self._ctl_list_contacts)
        c.add("GET", r"/_mock/deals", self._ctl_list_deals)
        c.add("POST", r"/_mock/deals", self._ctl_seed_deal)
        c.add("POST", r"/_mock/deals/([^/]+)", self._ctl_update_deal)
        c.add("GET", r"/_mock/notes", self._ctl_notes)
        c.add("GET", r"/_mock/tasks", self._ctl_tasks)
        c.add("GET", r"/_mock/oauth", lambda req: json_response(200, self.oauth.describe()))
        c.add("POST", r"/_mock/oauth", self._ctl_oauth_set)
        c.add("POST", r"/_mock/oauth/expire", self._ctl_oauth_expire)
        c.add("GET", r"/_mock/plan", self._ctl_plan)
        c.add("POST", r"/_mock/plan", self._ctl_plan_set)
        c.add("POST", r"/_mock/users", self._ctl_add_user)

    def seed_contact(self, spec):
        """Create a contact and its deals from a seed spec; return the ids."""
        if not isinstance(spec, dict):
            raise HttpError(400, "a contact seed must be an object")
        deals = spec.get("deals") or []
        if not isinstance(deals, list) or not all(isinstance(d, dict) for d in deals):
            raise HttpError(400, "deals must be a list of objects")
        contact = self.store.add_contact(spec)
        deal_ids = []
        for dspec in deals:
            existing = dspec.get("id") and self.store.deals.get(str(dspec["id"]))
            if existing:
                self.store.link(contact["id"], existing["id"])
                deal_ids.append(existing["id"])
            else:
                deal_ids.append(self.store.add_deal(dspec, [contact["id"]])["id"])
        return {"contact_id": contact["id"], "deal_ids": deal_ids}

    def _ctl_seed_contacts(self, req):
        """POST /_mock/contacts: one contact {...} or {"contacts": [...]}; returns ids."""
        body = self.control_body(req)
        with self.lock:
            if isinstance(body, dict) and isinstance(body.get("contacts"), list):
                return json_response(201, {"contacts": [self.seed_contact(s) for s in body["contacts"]]})
            return json_response(201, self.seed_contact(body))

    def _ctl_list_contacts(self, req):
        """GET /_mock/contacts: every contact, v1 shape with deals embedded."""
        with self.lock:
            return json_response(200, {"contacts": [
                v1_contact(self.store, c, embed_deals=True) for c in self.store.contacts.values()]})

    def _ctl_list_deals(self, req):
        """GET /_mock/deals: every deal, v2 shape plus visibility."""
        with self.lock:
            return json_response(200, {"deals": [
                dict(v2_deal(self.store, d), visible=d["visible"]) for d in self.store.deals.values()]})

    def _ctl_seed_deal(self, req):
        """POST /_mock/deals {"contact_id": ..., name, status, ...}: add a deal to a contact."""
        body = self.control_body(req)
        if not isinstance(body, dict):
            raise HttpError(400, "body must be an object")
        with self.lock:
            cids = body.get("contact_ids") or ([body["contact_id"]] if body.get("contact_id") else [])
            for cid in cids:
                if cid not in self.store.contacts:
                    raise HttpError(404, "no contact %s" % cid)
            deal = self.store.add_deal(body, cids)
            return json_response(201, {"deal_id": deal["id"]})

    def _ctl_update_deal(self, req, deal_id):
        """POST /_mock/deals/{id} {status, updated_at, closed_at, visible, name}: change a deal."""
        body = self.control_body(req)
        if not isinstance(body, dict):
            raise HttpError(400, "body must be an object")
        with self.lock:
            deal = self.store.deals.get(deal_id)
            if deal is None:
                raise HttpError(404, "no deal %s" % deal_id)
            if "status" in body:
                if body["status"] not in DEAL_STATUSES:
                    raise HttpError(400, "bad status")
                deal["status"] = body["status"]
                deal["closed_at"] = mocklib.now_utc() if body["status"] in ("won", "lost") else None
            for key in ("updated_at", "closed_at"):
                if key in body:
                    deal[key] = mocklib.parse_time(body[key])
            if "status" in body and "updated_at" not in body:
                deal["updated_at"] = mocklib.now_utc()
            if "visible" in body:
                deal["visible"] = bool(body["visible"])
            if "name" in body:
                deal["name"] = str(body["name"])
            return json_response(200, {"deal": dict(v2_deal(self.store, deal), visible=deal["visible"])})

    def _ctl_notes(self, req):
        """GET /_mock/notes[?deal_id=]: every note created through either version."""
        deal_id = req.arg("deal_id")
        with self.lock:
            notes = [{"version": n["version"], "id": n["id"], "deal_id": n["deal_id"],
                      "text": n["text"], "user_id": n["user_id"], "created_at": _utc(n["created_at"])}
                     for n in self.store.notes if deal_id is None or n["deal_id"] == deal_id]
        return json_response(200, {"notes": notes})

    def _ctl_tasks(self, req):
        """GET /_mock/tasks[?deal_id=]: every task created through either version."""
        deal_id = req.arg("deal_id")
        with self.lock:
            tasks = []
            for t in self.store.tasks.values():
                if deal_id is not None and t["deal_id"] != deal_id:
                    continue
                v2 = v2_task(t)
                tasks.append({"version": t["version"], "id": t["id"], "deal_id": t["deal_id"],
                              "subject": t["subject"], "type": t["type"], "notes": t["notes"],
                              "done": t["done"], "status": v2["status"],
                              "user_ids": list(t["user_ids"]), "date": t.get("date"),
                              "hour": t.get("hour"), "due_date": v2["due_date"],
                              "done_date": _utc(t["done_date"]), "created_at": _utc(t["created_at"])})
        return json_response(200, {"tasks": tasks})

    def _ctl_oauth_set(self, req):
        """POST /_mock/oauth {"access_ttl": S, "refresh_token": T}: change OAuth settings."""
        body = self.control_body(req)
        if not isinstance(body, dict):
            raise HttpError(400, "body must be an object")
        with self.oauth.lock:
            if body.get("access_ttl") is not None:
                self.oauth.access_ttl = float(body["access_ttl"])
            if body.get("refresh_token"):
                self.oauth.refresh_token = str(body["refresh_token"])
        return json_response(200, self.oauth.describe())

    def _ctl_plan(self, req):
        """GET /_mock/plan: {"call_tasks": bool} (false = free plan, only type task)."""
        return json_response(200, {"call_tasks": not self.free_plan})

    def _ctl_plan_set(self, req):
        """POST /_mock/plan {"call_tasks": false}: act as a free plan (403 on other types)."""
        body = self.control_body(req)
        if not isinstance(body, dict) or not isinstance(body.get("call_tasks"), bool):
            raise HttpError(400, 'body must be {"call_tasks": true|false}')
        with self.lock:
            self.free_plan = not body["call_tasks"]
        return json_response(200, {"call_tasks": not self.free_plan})

    def _ctl_add_user(self, req):
        """POST /_mock/users {"id", "email", "name"}: add an account user (GET /users lists it)."""
        body = self.control_body(req)
        if not isinstance(body, dict) or not body.get("id") or not body.get("email"):
            raise HttpError(400, "id and email are required")
        with self.lock:
            if self.store.user(str(body["id"])) is not None:
                raise HttpError(409, "user %s already exists" % body["id"])
            user = {"id": str(body["id"]), "email": str(body["email"]),
                    "name": str(body.get("name") or body["email"])}
            self.store.users.append(user)
        return json_response(201, user)

    def _ctl_oauth_expire(self, req):
        """POST /_mock/oauth/expire: every access token issued so far stops working."""
        return json_response(200, {"expired": self.oauth.expire_all()})


def parse_args(argv):
    """Command-line options."""
    parser = mocklib.new_argument_parser("Mock RD Station CRM (v1, v2, OAuth2) for calllog tests.")
    parser.add_argument("--v1-token", default="mock-v1-token", help="the v1 ?token= value")
    parser.add_argument("--client-id", default="mock-client-id")
    parser.add_argument("--client-secret", default="mock-client-secret")
    parser.add_argument("--refresh-token", default="mock-refresh-token",
                        help="the initially valid OAuth2 refresh token")
    parser.add_argument("--access-ttl", type=float, default=7200,
                        help="access token lifetime in seconds (default 7200)")
    parser.add_argument("--rate-limit", type=int, default=120,
                        help="API requests per window, v1+v2 together (default 120; 0 = off)")
    parser.add_argument("--rate-window", type=float, default=60.0,
                        help="rate-limit window in seconds (default 60)")
    parser.add_argument("--user-id", action="append",
                        help="an RD user id; when given, other user ids are refused (repeatable)")
    parser.add_argument("--free-plan", action="store_true",
                        help="refuse task types other than 'task' with 403, like free plans")
    parser.add_argument("--seed", help="JSON file: a list of contact seeds to load at start")
    return parser.parse_args(argv)


def main(argv):
    """Start the mock and serve until SIGTERM."""
    opts = parse_args(argv)
    app = RdStationMock(opts)
    if opts.seed:
        with open(opts.seed, encoding="utf-8") as handle:
            seeds = json.load(handle)
        for spec in seeds if isinstance(seeds, list) else seeds.get("contacts", []):
            app.seed_contact(spec)
    return mocklib.serve(app, opts.port, opts.port_file)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
