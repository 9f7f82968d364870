#!/usr/bin/env python3
"""roundtrips.py - the worker's Redis and Postgres round trips per delivered call.

Used by worker_lib.sh (roundtrip_row). Two sub-commands:

  roundtrips.py count CALLS MONITOR_LOG PG_LOG
      Reads what Redis MONITOR printed and what PostgreSQL logged (log_statement = all,
      log_line_prefix '%a|') while one worker delivered CALLS calls, and prints Markdown
      rows `| system | command | round trips | per call |`: every command a client sent
      (commands a Lua script ran are listed under their EVAL, not counted), every statement
      (psql's own, i.e. the benchmark's polling, left out), and a total per system.
      The last line is `TOTALS redis_per_call pg_per_call redis_writes_per_call`.
  roundtrips.py pgbench PG_LOG OUT
      Writes a pgbench script that runs the statements of one delivered call, in the
      worker's order, with its parameters, for a fresh CallSid each time (the floor of the
      Postgres part of a call).

A round trip is one command or statement sent and its answer awaited: the worker sends
each on its own (no pipelining), so commands = round trips.
"""
import collections, re, sys

MONITOR_LINE = re.compile(r'^\d+\.\d+ \[\d+ ([^\]]+)\] (.*)$')
ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')
# Commands that change the data set (Redis appends them to the AOF: fsync with `always`).
READ_ONLY = {"GET", "MGET", "HGET", "HMGET", "HGETALL", "EXISTS", "TTL", "PTTL", "XLEN",
             "XPENDING", "ZCARD", "ZRANGE", "PING", "INFO", "SELECT", "AUTH", "HELLO"}


def unescape(s):
    """MONITOR's quoting (C-like escapes) back to text."""
    return s.encode("latin-1", "backslashreplace").decode("unicode_escape")


def redis_commands(path):
    """[(label, is_write)] for the commands clients sent, in order; a script's label names
    its first key and the commands it ran."""
    out = []
    for line in open(path, encoding="utf-8", errors="replace"):
        m = MONITOR_LINE.match(line.strip())
        if not m:
            continue
        args = [unescape(a) for a in ARG.findall(m.group(2))]
        if not args:
            continue
        name = args[0].upper()
        if m.group(1) == "lua":
            if out and out[-1][0].startswith("EVAL") and name not in out[-1][2]:
                out[-1][2].append(name)
            continue
        key = args[3] if name in ("EVAL", "EVALSHA") and len(args) > 3 else ""
        out.append([name, key.split(":", 1)[-1] if key else "", [], name not in READ_ONLY])
    rows = []
    for name, key, inner, write in out:
        if inner:
            label = "%s %s (%s)" % (name, key, ", ".join(inner))
            write = write and any(c not in READ_ONLY for c in inner)
        else:
            label = name
        rows.append((label, write))
    return rows


PG_STATEMENT = re.compile(r'^([^|]*)\|.*?LOG:  (?:statement|execute [^:]*): (.*)$')


def pg_statements(path):
    """[(label, sql, params)] for the statements clients other than psql ran, in order."""
    out = []
    for line in open(path, encoding="utf-8", errors="replace"):
        m = PG_STATEMENT.match(line.rstrip("\n"))
        if m and m.group(1) != "psql":
            out.append([label_sql(m.group(2)), m.group(2), None])
        elif "DETAIL:  parameters:" in line and out:
            out[-1][2] = line.split("parameters:", 1)[1].strip()
    return out


def label_sql(sql):
    """A short name for a statement of ledger.c."""
    words = sql.split()
    if not words:
        return "?"
    verb = words[0].upper()
    if verb == "INSERT" and "ON CONFLICT" in sql and "'processing'" in sql:
        return "INSERT ... ON CONFLICT DO UPDATE (claim)"
    if verb == "UPDATE":
        m = re.search(r"SET\s+(state = '\w+'|\w+)", sql)
        return "UPDATE SET %s" % (m.group(1) if m else "?")
    if verb == "WITH":
        return "WITH ... (%s)" % ("claim" if "'processing'" in sql else "?")
    return " ".join(words[:3])[:60]


def count(calls, monitor, pglog):
    """Prints the table rows and the TOTALS line."""
    calls = max(calls, 1)
    redis = redis_commands(monitor)
    pg = pg_statements(pglog)
    for system, items in (("Redis", [r[0] for r in redis]), ("Postgres", [p[0] for p in pg])):
        for label, n in collections.Counter(items).most_common():
            print("| %s | %s | %d | %.2f |" % (system, label.replace("|", "\\|"), n, n / calls))
        print("| %s | **all** | %d | **%.2f** |" % (system, len(items), len(items) / calls))
    writes = sum(1 for _, w in redis if w)
    print("TOTALS %.3f %.3f %.3f" % (len(redis) / calls, len(pg) / calls, writes / calls))


def parse_params(text):
    """libpq's logged `$1 = 'a', $2 = NULL, ...` into {1: "'a'", 2: "NULL"}."""
    out = {}
    for m in re.finditer(r"\$(\d+) = ('(?:[^']|'')*'|NULL)", text or ""):
        out[int(m.group(1))] = m.group(2)
    return out


def pgbench(pglog, path):
    """Writes the pgbench script for one call: the statements of the last CallSid the log
    shows delivered, its CallSid replaced by a fresh one per transaction."""
    stmts = pg_statements(pglog)
    sids = [parse_params(p).get(1) for _, _, p in stmts]
    delivered = [i for i, (label, _, _) in enumerate(stmts) if "delivered" in label]
    if not delivered:
        sys.exit("roundtrips.py: no delivered call in the log")
    sid = sids[delivered[-1]]
    lines = ["\\set n random(1, 2000000000)"]
    for (label, sql, params), s in zip(stmts, sids):
        if s != sid:
            continue
        values = parse_params(params)
        values[1] = "'CAfloor' || :client_id || '-' || :n"
        text = re.sub(r"\$(\d+)", lambda m: values.get(int(m.group(1)), "NULL"), sql)
        lines.append(" ".join(text.split()) + ";")
    open(path, "w").write("\n".join(lines) + "\n")
    print(len(lines) - 1)


if __name__ == "__main__":
    if sys.argv[1] == "count":
        count(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    elif sys.argv[1] == "pgbench":
        pgbench(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
