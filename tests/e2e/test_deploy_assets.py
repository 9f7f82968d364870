"""test_deploy_assets — the deploy assets agree with the code, the runbook and each other.

deploy/prometheus/alerts.yml, deploy/prometheus/prometheus.yml and
deploy/grafana/calllog-dashboard.json name metrics, labels, jobs and runbook sections.
Nothing at run time would tell us when one of those names drifts from what the programs
export (a renamed metric just makes an alert silently never fire), so these tests read
the C sources' metrics_register calls and label strings, docker-compose.yml and
docs/operations.md, and check every name the assets use. When promtool (Debian package
`prometheus`, or $PROMTOOL) is installed they also run `promtool check` on the rules, the
config and the dashboard's queries, and `promtool test rules` on scenarios that must (and
must not) fire the alerts.

docker-compose.yml must work without a .env (issue 7): no env_file, every setting the
programs read passed as ${VAR:-…}, a `demo` profile whose services talk only to the
sandbox, and production services that cannot reach it. With docker compose (v2) or
docker-compose (v1, Debian's package; deploy/install-deps.sh installs it, no engine
needed) `config` is run on a copy of the file in a directory without .env, then with one.
deploy/run-local.sh's `start` must never use the sandbox either.
No program is started; nothing here needs a build.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
PROM_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "calllog-dashboard.json"
RUNBOOK = ROOT / "docs" / "operations.md"
COMPOSE = ROOT / "docker-compose.yml"
SOURCE_DIRS = ("common", "ingest", "worker")
RUN_LOCAL = ROOT / "deploy" / "run-local.sh"
DEMO_SERVICES = {"sandbox", "demo-ingest", "demo-worker", "demo-call"}
# Profile tls: the stunnel sidecar for a Redis reachable only over TLS (test_redis_tls.py).
TLS_SERVICES = {"redis-tls"}
# Settings compose leaves out of a service on purpose: one consumer name shared by every
# replica would break the consumer group (the default, <hostname>-<pid>, is unique).
COMPOSE_OMITS = {"WORKER_CONSUMER_NAME"}

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Labels Prometheus itself attaches (target labels, histogram buckets, ALERTS).
BUILTIN_LABELS = {"le", "job", "instance", "alertname", "alertstate", "__name__"}
# Series Prometheus itself produces.
BUILTIN_METRICS = {"up"}
JOBS = {"calllog-ingest", "calllog-worker"}
SEVERITIES = {"critical", "warning", "info"}


# ---- reading the code ---------------------------------------------------------------


def c_sources():
    """Text of every .c file of the programs, concatenated."""
    texts = []
    for d in SOURCE_DIRS:
        for p in sorted((ROOT / d).glob("*.c")):
            texts.append(p.read_text(encoding="utf-8", errors="replace"))
    return "\n".join(texts)


def registered_metrics(source):
    """{name: 'COUNTER'|'GAUGE'|'HISTOGRAM'} from metrics_register(METRIC_X, "name", ...)."""
    found = re.findall(r'metrics_register\(\s*METRIC_(COUNTER|GAUGE|HISTOGRAM)\s*,\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"',
                       source)
    return {name: kind for kind, name in found}


def source_labels(source):
    """Label names the code renders: `name=\\"...` inside C strings, or label(.., "name", ..)."""
    names = set(re.findall(r'([a-z_][a-z0-9_]*)=\\"', source))
    names |= set(re.findall(r'\blabel\([^,()]+,[^,()]+,\s*"([a-z_][a-z0-9_]*)"', source))
    return names


@pytest.fixture(scope="module")
def code():
    src = c_sources()
    metrics = registered_metrics(src)
    assert len(metrics) >= 15, f"too few metrics_register calls found: {sorted(metrics)}"
    return {"source": src, "metrics": metrics, "labels": source_labels(src)}


# ---- reading PromQL -----------------------------------------------------------------


def metric_names(expr):
    """Metric names an expression selects (calllog_* and Prometheus's own `up`)."""
    names = set(re.findall(r"\b(calllog_[a-z0-9_]+)\b", expr))
    names |= {m for m in BUILTIN_METRICS if re.search(rf"\b{m}\s*(\{{|==|!=|>|<|\)|$)", expr)}
    return names


def unknown_metrics(expr, metrics):
    """Names in `expr` the code does not export, with why. Histograms are only readable
    through their _bucket/_sum/_count series; counters and gauges only by their name."""
    problems = []
    for name in sorted(metric_names(expr)):
        if name in BUILTIN_METRICS:
            continue
        kind = metrics.get(name)
        if kind == "HISTOGRAM":
            problems.append(f"{name}: a histogram, select {name}_bucket/_sum/_count")
            continue
        if kind is not None:
            continue
        base = next((name[: -len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)), None)
        if base is not None and metrics.get(base) == "HISTOGRAM":
            continue
        problems.append(f"{name}: not registered by any metrics_register call")
    return problems


def label_uses(expr):
    """(label, operator, value) for every matcher, and (label, 'by', None) for grouping."""
    uses = []
    for body in re.findall(r"\{([^}]*)\}", expr):
        for name, op, value in re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"', body):
            uses.append((name, op, value))
    for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        uses += [(n.strip(), "by", None) for n in group.split(",") if n.strip()]
    return uses


def unknown_labels(expr, code):
    """Label names the code never renders, and equality values it never produces."""
    problems = []
    for name, op, value in label_uses(expr):
        if name in BUILTIN_LABELS:
            if name == "job" and op in ("=", "=~"):
                bad = [v for v in value.split("|") if v not in JOBS]
                problems += [f'job="{v}": not a job of prometheus.yml' for v in bad]
            continue
        if name not in code["labels"]:
            problems.append(f"label {name}: the code never renders it")
            continue
        if op in ("=", "=~", "!=", "!~") and value:
            for alt in value.split("|"):
                if not re.fullmatch(r"[A-Za-z0-9_ /{}.-]+", alt) or "." in alt:
                    continue  # a real regex such as 2.. : nothing to look up
                if alt.isdigit() and len(alt) == 3:
                    continue  # an HTTP status, rendered from a number
                if f'"{alt}"' not in code["source"] and f'\\"{alt}\\"' not in code["source"]:
                    problems.append(f'{name}="{alt}": the code never produces this value')
    return problems


def check_expr(expr, code):
    return unknown_metrics(expr, code["metrics"]) + unknown_labels(expr, code)


def test_checker_catches_drift(code):
    """The checks above can fail: a renamed metric, a histogram read bare, an unknown label
    or label value, an unknown job are all reported; correct expressions are not."""
    assert check_expr('sum(rate(calllog_worker_dead_letter_total[5m]))', code)
    assert check_expr("calllog_worker_hangup_to_note_seconds > 1", code)
    assert check_expr('sum by (flavour) (rate(calllog_worker_processed_total[5m]))', code)
    assert check_expr('rate(calllog_worker_processed_total{outcome="exploded"}[5m])', code)
    assert check_expr('up{job="calllog-scheduler"} == 0', code)
    assert check_expr('rate(calllog_crm_requests_total{endpoint="GET /nowhere"}[5m])', code)
    assert check_expr('rate(calllog_worker_processed_total{outcome="retr"}[5m])', code)
    assert not check_expr('sum by (outcome) (rate(calllog_worker_processed_total{outcome="deferred"}[5m]))',
                          code)
    assert not check_expr("histogram_quantile(0.95, sum by (le) "
                          "(rate(calllog_worker_hangup_to_note_seconds_bucket[5m])))", code)
    assert not check_expr('up{job=~"calllog-ingest|calllog-worker"} == 0', code)


# ---- the assets ---------------------------------------------------------------------


def load_alerts():
    with ALERTS.open(encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    rules = [r for g in doc["groups"] for r in g["rules"]]
    return doc, rules


def load_dashboard():
    with DASHBOARD.open(encoding="utf-8") as f:
        return json.load(f)


def dashboard_panels(dash):
    """Every panel, rows' nested panels included."""
    out = []
    for p in dash["panels"]:
        out.append(p)
        out += p.get("panels", [])
    return out


def dashboard_exprs(dash):
    return [t["expr"] for p in dashboard_panels(dash) for t in p.get("targets", [])]


def github_anchor(heading):
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[`*_]", lambda m: "_" if m.group(0) == "_" else "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def runbook_anchors():
    text = RUNBOOK.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return {github_anchor(h) for h in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, flags=re.M)}


def test_github_anchor():
    assert github_anchor("CalllogDeadLetters") == "calllogdeadletters"
    assert github_anchor("Redis down: the ingest spools") == "redis-down-the-ingest-spools"
    assert github_anchor("`calllog-admin` commands") == "calllog-admin-commands"


def test_alerts_parse_and_are_complete():
    doc, rules = load_alerts()
    assert doc["groups"], "no rule groups"
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names)), f"duplicate alert names: {names}"
    anchors = runbook_anchors()
    for r in rules:
        assert r.get("expr", "").strip(), f"{r['alert']}: no expr"
        assert r.get("labels", {}).get("severity") in SEVERITIES, f"{r['alert']}: severity"
        ann = r.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            assert ann.get(key, "").strip(), f"{r['alert']}: annotation {key} missing"
        m = re.fullmatch(r"docs/operations\.md#([a-z0-9_-]+)", ann["runbook_url"])
        assert m, f"{r['alert']}: runbook_url {ann['runbook_url']!r} is not docs/operations.md#anchor"
        assert m.group(1) in anchors, f"{r['alert']}: docs/operations.md has no section #{m.group(1)}"
        assert ann["runbook_url"] in ann["description"], f"{r['alert']}: description lacks the runbook"
        if "for" in r:
            assert re.fullmatch(r"\d+[smh]", r["for"]), f"{r['alert']}: for {r['for']!r}"


def test_alert_metrics_and_labels_exist_in_code(code):
    _, rules = load_alerts()
    problems = [f"{r['alert']}: {p}" for r in rules for p in check_expr(r["expr"], code)]
    assert not problems, "\n".join(problems)


def test_alerts_cover_the_design(code):
    """The alerts the design and the runbook promise are there, on the right metrics."""
    _, rules = load_alerts()
    used = set().union(*(metric_names(r["expr"]) for r in rules))
    required = {
        "calllog_worker_dead_letters_total", "calllog_worker_retries_total",
        "calllog_worker_processed_total", "calllog_stream_depth", "calllog_stream_pending",
        "calllog_retry_depth", "calllog_ingest_spool_depth",
        "calllog_ingest_signature_failures_total", "calllog_ingest_requests_total",
        "calllog_crm_requests_total", "calllog_worker_hangup_to_note_seconds_bucket", "up",
    }
    assert required <= used, f"no alert on: {sorted(required - used)}"
    exprs = {r["alert"]: r["expr"] for r in rules}
    assert any('code="503"' in e for e in exprs.values()), "no alert on ingest 503s"
    assert any('status="429"' in e for e in exprs.values()), "no alert on RD Station 429s"
    assert any("histogram_quantile(0.95" in e and "> 60" in e for e in exprs.values()), \
        "no alert on p95 hangup-to-note > 60 s"


DEPTH_GAUGES = ("calllog_stream_depth", "calllog_stream_pending", "calllog_retry_depth", "calllog_dead_depth")


def test_depth_gauges_are_never_summed():
    """Every worker reports the same Redis-wide depths: sum() would multiply them."""
    _, rules = load_alerts()
    exprs = [r["expr"] for r in rules] + dashboard_exprs(load_dashboard())
    pattern = (r"\b(sum|avg|count)\s*(?:(?:by|without)\s*\([^()]*\)\s*)?\([^()]*\b("
               + "|".join(DEPTH_GAUGES) + r")\b")
    summed = [e for e in exprs if re.search(pattern, e)]
    assert not summed, summed
    assert re.search(pattern, "sum by (job) (calllog_retry_depth)")
    assert not re.search(pattern, "max(calllog_retry_depth) > 50")


def test_dashboard_model():
    dash = load_dashboard()
    assert dash["schemaVersion"] >= 36
    inputs = {i["name"]: i for i in dash["__inputs"]}
    assert inputs["DS_PROMETHEUS"]["pluginId"] == "prometheus"
    panels = dashboard_panels(dash)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for p in panels:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, f"{p['title']}: outside the grid"
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${DS_PROMETHEUS}", f"{p['title']}: datasource"
        assert p["targets"], f"{p['title']}: no queries"
        for t in p["targets"]:
            assert t["expr"].strip(), f"{p['title']}: empty query"
            assert t["datasource"]["uid"] == "${DS_PROMETHEUS}", f"{p['title']}: target datasource"
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), f"{p['title']}: refIds repeat"


def test_dashboard_metrics_and_labels_exist_in_code(code):
    dash = load_dashboard()
    problems = [f"{e}: {p}" for e in dashboard_exprs(dash) for p in check_expr(e, code)]
    assert not problems, "\n".join(problems)


def test_dashboard_shows_every_metric(code):
    """A metric added to the code without a panel fails here, so the dashboard keeps up."""
    used = set().union(*(metric_names(e) for e in dashboard_exprs(load_dashboard())))
    bases = {next((n[: -len(s)] for s in HISTOGRAM_SUFFIXES
                   if n.endswith(s) and code["metrics"].get(n[: -len(s)]) == "HISTOGRAM"), n)
             for n in used}
    missing = sorted(set(code["metrics"]) - bases)
    assert not missing, f"metrics with no dashboard panel: {missing}"


def test_prometheus_config_matches_compose_and_code(code):
    with PROM_CONFIG.open(encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    assert "alerts.yml" in cfg["rule_files"]
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert set(jobs) >= JOBS
    ingest_targets = [t for sc in jobs["calllog-ingest"]["static_configs"] for t in sc["targets"]]
    worker_sd = jobs["calllog-worker"]["dns_sd_configs"]

    with COMPOSE.open(encoding="utf-8") as f:
        services = yaml.safe_load(f)["services"]
    # The hosts and ports scraped are the compose services and their METRICS_LISTEN.
    ingest_port = services["ingest"]["environment"]["METRICS_LISTEN"].rsplit(":", 1)[1]
    worker_port = services["worker"]["environment"]["METRICS_LISTEN"].rsplit(":", 1)[1]
    assert ingest_targets == [f"ingest:{ingest_port}"]
    assert any("worker" in sd["names"] and str(sd["port"]) == worker_port and sd.get("type", "SRV") == "A"
               for sd in worker_sd), worker_sd
    # ...and the programs' documented defaults (design §2).
    assert ingest_port == "9101" and worker_port == "9102"
    assert '"127.0.0.1:9101"' in (ROOT / "ingest" / "settings.c").read_text(encoding="utf-8")
    assert '"127.0.0.1:9102"' in (ROOT / "worker" / "settings.c").read_text(encoding="utf-8")


# ---- promtool (optional) -------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool():
    tool = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not tool:
        pytest.skip("promtool not installed (apt-get install prometheus, or set PROMTOOL)")
    return tool


def run(cmd, cwd=None):
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{p.stdout}\n{p.stderr}"
    return p.stdout


def test_promtool_check_rules_and_config(promtool):
    out = run([promtool, "check", "rules", str(ALERTS)])
    assert "SUCCESS" in out
    run([promtool, "check", "config", str(PROM_CONFIG)])


def test_promtool_dashboard_queries_parse(promtool, tmp_path):
    """Every dashboard query is valid PromQL (Grafana's $__rate_interval as 5m)."""
    exprs = dashboard_exprs(load_dashboard())
    rules = [{"record": f"calllog_dashboard:q{i}", "expr": e.replace("$__rate_interval", "5m")}
             for i, e in enumerate(exprs)]
    f = tmp_path / "dashboard_rules.yml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    run([promtool, "check", "rules", str(f)])


def firing(alert, t, expected):
    """A promql_expr_test: `alert` fires (expected=True) or not at eval time t."""
    return {"expr": f'count(ALERTS{{alertname="{alert}",alertstate="firing"}})', "eval_time": t,
            "exp_samples": [{"labels": "{}", "value": 1}] if expected else []}


def case(series, *checks):
    return {"interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series],
            "promql_expr_test": list(checks)}


W = 'job="calllog-worker",instance="10.0.0.3:9102"'
W2 = 'job="calllog-worker",instance="10.0.0.4:9102"'
I = 'job="calllog-ingest",instance="ingest:9101"'
BUCKETS = ["0.25", "0.5", "1", "2", "5", "10", "30", "60", "300", "900", "3600", "+Inf"]


def hangup_series(slow):
    """calllog_worker_hangup_to_note_seconds buckets: 10 calls/min, all within 1 s, or
    all between 60 s and 300 s when `slow`."""
    first = "300" if slow else "1"
    out = []
    for le in BUCKETS:
        grows = BUCKETS.index(le) >= BUCKETS.index(first)
        out.append((f'calllog_worker_hangup_to_note_seconds_bucket{{{W},le="{le}"}}',
                    "0+10x40" if grows else "0x40"))
    return out


def test_promtool_alerts_fire_when_they_should(promtool, tmp_path):
    tests = [
        case([(f'calllog_worker_dead_letters_total{{{W},reason="permanent_error"}}', "0 0 0 1x20")],
             firing("CalllogDeadLetters", "2m", False), firing("CalllogDeadLetters", "5m", True),
             firing("CalllogDeadLetters", "20m", False)),
        # Retries only, and no dead-letter series at all: the sum must still be defined.
        case([(f'calllog_worker_retries_total{{{W}}}', "0+2x40"),
              (f'calllog_worker_processed_total{{{W},outcome="retry"}}', "0+2x40"),
              (f'calllog_worker_processed_total{{{W},outcome="delivered"}}', "0+0x40")],
             firing("CalllogFailureRateHigh", "5m", False), firing("CalllogFailureRateHigh", "30m", True)),
        case([(f'calllog_worker_retries_total{{{W}}}', "0+1x40"),
              (f'calllog_worker_processed_total{{{W},outcome="retry"}}', "0+1x40"),
              (f'calllog_worker_processed_total{{{W},outcome="delivered"}}', "0+10x40")],
             firing("CalllogFailureRateHigh", "30m", False)),
        case([(f'calllog_worker_processed_total{{{W},outcome="deferred"}}', "0+3x40")],
             firing("CalllogDeliveriesDeferred", "5m", False),
             firing("CalllogDeliveriesDeferred", "20m", True)),
        case(hangup_series(slow=True),
             firing("CalllogHangupToNoteSlow", "10m", False), firing("CalllogHangupToNoteSlow", "30m", True)),
        case(hangup_series(slow=False), firing("CalllogHangupToNoteSlow", "30m", False)),
        case([(f"calllog_stream_depth{{{W}}}", "0+20x40"), (f"calllog_stream_depth{{{W2}}}", "0+20x40")],
             firing("CalllogStreamBacklogGrowing", "10m", False),
             firing("CalllogStreamBacklogGrowing", "30m", True)),
        case([(f"calllog_stream_depth{{{W}}}", "500x40")], firing("CalllogStreamBacklogGrowing", "30m", False)),
        case([(f"calllog_stream_pending{{{W}}}", "80x40")],
             firing("CalllogPendingHigh", "10m", False), firing("CalllogPendingHigh", "20m", True)),
        # Two workers report the same Redis-wide number: 30 pending, not 60.
        case([(f"calllog_stream_pending{{{W}}}", "30x40"), (f"calllog_stream_pending{{{W2}}}", "30x40")],
             firing("CalllogPendingHigh", "30m", False)),
        case([(f"calllog_retry_depth{{{W}}}", "80x40")],
             firing("CalllogRetryBacklogHigh", "10m", False), firing("CalllogRetryBacklogHigh", "20m", True)),
        case([(f"calllog_retry_depth{{{W}}}", "20x40")], firing("CalllogRetryBacklogHigh", "30m", False)),
        case([(f"calllog_dead_depth{{{W}}}", "2x90")],
             firing("CalllogDeadStreamNotEmpty", "30m", False), firing("CalllogDeadStreamNotEmpty", "80m", True)),
        case([(f"calllog_ingest_spool_depth{{{I}}}", "0 0 5x20")],
             firing("CalllogIngestSpoolNotEmpty", "4m", False), firing("CalllogIngestSpoolNotEmpty", "10m", True)),
        case([(f"calllog_ingest_spool_depth{{{I}}}", "0x20")], firing("CalllogIngestSpoolNotEmpty", "15m", False)),
        case([(f'calllog_ingest_requests_total{{{I},code="503"}}', "0 0 1x10"),
              (f'calllog_ingest_requests_total{{{I},code="204"}}', "0+10x12")],
             firing("CalllogIngest503", "1m", False), firing("CalllogIngest503", "3m", True)),
        case([(f'calllog_ingest_signature_failures_total{{{I},reason="mismatch"}}', "0+5x10")],
             firing("CalllogSignatureFailures", "1m", False), firing("CalllogSignatureFailures", "5m", True)),
        case([(f'calllog_crm_requests_total{{{W},endpoint="POST /activities",status="429"}}', "0 0 3 6 9 12"),
              (f'calllog_crm_requests_total{{{W},endpoint="POST /activities",status="200"}}', "0+50x5")],
             firing("CalllogCrmRateLimited", "1m", False), firing("CalllogCrmRateLimited", "5m", True)),
        case([(f'calllog_crm_requests_total{{{W},endpoint="POST /oauth2/token",status="400"}}', "0 0 1x5")],
             firing("CalllogOAuthRefreshRejected", "3m", True)),
        case([(f'calllog_crm_requests_total{{{W},endpoint="POST /oauth2/token",status="200"}}', "0 0 1x5")],
             firing("CalllogOAuthRefreshRejected", "3m", False)),
        case([(f'calllog_twilio_requests_total{{{W},status="error"}}', "0+3x40"),
              (f'calllog_twilio_requests_total{{{W},status="200"}}', "0+1x40")],
             firing("CalllogTwilioEnrichmentFailing", "35m", True)),
        case([(f'calllog_worker_alerts_total{{{W},kind="dead_letter",result="failed"}}', "0 0 1x5")],
             firing("CalllogAlertWebhookFailing", "3m", True)),
        case([(f"up{{{W}}}", "1 1 0x10"), (f"up{{{I}}}", "1x12")],
             firing("CalllogTargetDown", "3m", False), firing("CalllogTargetDown", "6m", True)),
        case([(f"up{{{I}}}", "1x12")],
             firing("CalllogNoWorkers", "3m", False), firing("CalllogNoWorkers", "8m", True)),
        case([(f"up{{{I}}}", "1x12"), (f"up{{{W}}}", "1x12")],
             firing("CalllogNoWorkers", "8m", False), firing("CalllogTargetDown", "8m", False)),
    ]
    f = tmp_path / "alerts_test.yml"
    f.write_text(yaml.safe_dump({"rule_files": [str(ALERTS)], "evaluation_interval": "1m",
                                 "tests": tests}), encoding="utf-8")
    run([promtool, "test", "rules", str(f)])
    # Every alert is exercised by at least one scenario that makes it fire.
    _, rules = load_alerts()
    fired = {re.search(r'alertname="([^"]+)"', c["expr"]).group(1)
             for t in tests for c in t["promql_expr_test"] if c["exp_samples"]}
    assert {r["alert"] for r in rules} <= fired, sorted({r["alert"] for r in rules} - fired)


def test_operator_docs_links_resolve():
    """Links with anchors in the runbook and the RD Station guide lead somewhere."""
    docs = ROOT / "docs"
    problems = []
    for name in ("operations.md", "rdstation-setup.md"):
        text = re.sub(r"```.*?```", "", (docs / name).read_text(encoding="utf-8"), flags=re.S)
        for target, anchor in re.findall(r"\]\(([A-Za-z0-9_.-]*\.md|)(?:#([^)]+))?\)", text):
            path = docs / (target or name)
            if not path.exists():
                problems.append(f"{name}: link to missing {target}")
                continue
            if anchor:
                body = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
                heads = {github_anchor(h) for h in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", body, flags=re.M)}
                if anchor not in heads:
                    problems.append(f"{name}: #{anchor} not a heading of {path.name}")
    assert not problems, "\n".join(problems)


def test_runbook_names_real_metrics_and_keys(code):
    """Every calllog_* metric the runbook mentions is exported, and every Redis key it
    shows is one the code builds (keys.c) or a documented pattern."""
    text = RUNBOOK.read_text(encoding="utf-8")
    # Prose names a histogram by its family name; queries need the _bucket series.
    bad = [p for n in sorted(set(re.findall(r"\bcalllog_[a-z0-9_]+\b", text)))
           if n not in code["metrics"] for p in unknown_metrics(n, code["metrics"])]
    assert not bad, bad
    keys_c = (ROOT / "common" / "keys.c").read_text(encoding="utf-8")
    suffixes = set(re.findall(r'"%s:([a-z:]+)"', keys_c))
    for key in sorted(set(re.findall(r"\bcalllog:([a-z][a-z:]*[a-z])\b", text))):
        assert any(key == s or key.startswith(s) for s in suffixes), f"calllog:{key} is not a key of keys.c"


# ---- docker-compose.yml ---------------------------------------------------------------


def load_compose():
    """docker-compose.yml's services."""
    with COMPOSE.open(encoding="utf-8") as f:
        return yaml.safe_load(f)["services"]


def settings_read_by(program_dirs, skip=()):
    """Names of the settings read with config_*("NAME" in the C files of `program_dirs`
    and common/ (files named in `skip` left out)."""
    names = set()
    for d in ("common",) + tuple(program_dirs):
        for p in sorted((ROOT / d).glob("*.c")):
            if p.name in skip:
                continue
            text = p.read_text(encoding="utf-8", errors="replace")
            names |= set(re.findall(r'\bconfig_[a-z_]+\(\s*"([A-Z][A-Z0-9_]*)"', text))
    return names


def test_compose_needs_no_env_file_and_passes_every_setting():
    services = load_compose()
    for name, svc in services.items():
        assert "env_file" not in svc, f"{name}: env_file makes `docker compose up` need a .env"
    wanted = {"ingest": settings_read_by(["ingest"]),
              "worker": settings_read_by(["worker"], skip={"admin.c", "demo.c"})}
    assert {"PUBLIC_BASE_URL", "TWILIO_AUTH_TOKEN", "LOG_FORMAT"} <= wanted["ingest"]
    assert {"DATABASE_URL", "RDSTATION_TOKEN", "TWILIO_RECONCILE_INTERVAL_MS"} <= wanted["worker"]
    for name, names in wanted.items():
        env = services[name]["environment"]
        missing = sorted(names - COMPOSE_OMITS - set(env))
        assert not missing, f"{name} does not pass: {missing}"
        for key, value in env.items():
            value = str(value)
            if "${" in value:
                # Compose fills ${VAR:-default} from the shell or .env; a plain ${VAR} would
                # warn and ${VAR:?} would fail when it is unset.
                assert re.fullmatch(r"\$\{[A-Z][A-Z0-9_]*:-[^}]*\}", value), f"{name}.{key}: {value}"
                assert value.startswith("${" + key + ":-") or key == "PGPASSWORD", \
                    f"{name}.{key} reads another variable: {value}"
        assert not COMPOSE_OMITS & set(env), f"{name} sets {COMPOSE_OMITS & set(env)}"


def test_compose_demo_profile_talks_only_to_the_sandbox():
    services = load_compose()
    assert DEMO_SERVICES <= set(services)
    for name, svc in services.items():
        text = yaml.safe_dump(svc)
        if name in DEMO_SERVICES:
            assert svc.get("profiles") == ["demo"], f"{name}: not in profile demo only"
            for key, value in (svc.get("environment") or {}).items():
                assert "${" not in str(value) or key == "PGPASSWORD", \
                    f"{name}.{key} comes from the shell or .env: {value}"
        elif name in TLS_SERVICES:
            assert svc.get("profiles") == ["tls"], f"{name}: not in profile tls only"
        else:
            assert "profiles" not in svc, f"{name}: production services run without a profile"
            assert "sandbox" not in text and "mock-" not in text and "calllog-demo" not in text, \
                f"{name} mentions the demo or the sandbox"
    ingest, worker, call = (services[n]["environment"] for n in ("demo-ingest", "demo-worker", "demo-call"))
    sandbox = services["sandbox"]
    cmd = sandbox["command"]
    callback = cmd[cmd.index("--status-callback") + 1]
    assert callback == ingest["PUBLIC_BASE_URL"] + "/twilio/log-call"
    assert sandbox["environment"]["TWILIO_AUTH_TOKEN"] == ingest["TWILIO_AUTH_TOKEN"]
    rd_port, tw_port = cmd[cmd.index("--rd-port") + 1], cmd[cmd.index("--twilio-port") + 1]
    assert worker["RDSTATION_API_BASE_URL"] == f"http://sandbox:{rd_port}/api/v1"
    assert worker["TWILIO_API_BASE_URL"] == call["CALLLOG_SANDBOX_URL"] == f"http://sandbox:{tw_port}"
    assert ingest["CALLLOG_KEY_PREFIX"] == worker["CALLLOG_KEY_PREFIX"] == call["CALLLOG_KEY_PREFIX"] \
        == "calllog-demo"
    assert services["demo-worker"]["deploy"]["replicas"] == 2
    call_svc = services["demo-call"]
    assert call_svc["command"][:3] == ["calllog-admin", "demo", "call"]
    assert call_svc["restart"] == "no"
    assert set(call_svc["depends_on"]) >= {"sandbox", "demo-ingest", "demo-worker"}
    assert "ports" not in services["demo-ingest"] and "ports" not in sandbox, \
        "the demo publishes no port, so it cannot clash with the production ingest"
    dockerfile = ROOT / sandbox["build"]["dockerfile"]
    copied = re.findall(r"^COPY\s+(.+?)\s+\S+$", dockerfile.read_text(encoding="utf-8"), flags=re.M)
    for path in " ".join(copied).split():
        assert (ROOT / path).exists(), f"{dockerfile.name} copies missing {path}"


def test_run_local_start_never_uses_the_sandbox():
    """`start` (production) has no path to the demo's settings or the sandbox."""
    text = RUN_LOCAL.read_text(encoding="utf-8")
    body = re.search(r"^cmd_start\(\) \{\n(.*?)^\}", text, flags=re.M | re.S).group(1)
    called = set(re.findall(r"^\s*([a-z_]+)\b", body, flags=re.M))
    for func in called:
        found = re.search(rf"^{func}\(\) \{{\n(.*?)^\}}", text, flags=re.M | re.S)
        if found:
            body += found.group(1)
    assert "sandbox" not in body.lower() and "DEMO" not in body and "mock-" not in body


@pytest.fixture(scope="module")
def compose_cli():
    """The compose command line: `docker compose` (v2) when it works, else docker-compose."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True,
                                 timeout=30).returncode == 0:
        return [docker, "compose"], 2
    v1 = shutil.which("docker-compose")
    if v1:
        return [v1], 1
    pytest.skip("neither `docker compose` nor docker-compose is installed "
                "(deploy/install-deps.sh installs Debian's docker-compose)")


def compose_dir(tmp_path, dotenv=None):
    """A directory like a fresh clone for compose: docker-compose.yml, the build contexts'
    folders (links), and a .env only when `dotenv` is given."""
    (tmp_path / "docker-compose.yml").write_text(COMPOSE.read_text(encoding="utf-8"), encoding="utf-8")
    for d in ("deploy", "tests", "common", "ingest", "worker"):
        (tmp_path / d).symlink_to(ROOT / d)
    if dotenv is not None:
        (tmp_path / ".env").write_text(dotenv, encoding="utf-8")
    return tmp_path


def compose(cli, cwd, *args):
    """Runs compose in `cwd` with a bare environment; returns the CompletedProcess."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd)}
    return subprocess.run([*cli[0], *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_compose_config_works_without_env_file(compose_cli, tmp_path):
    d = compose_dir(tmp_path)
    res = compose(compose_cli, d, "config")
    assert res.returncode == 0, res.stdout + res.stderr
    services = yaml.safe_load(res.stdout)["services"]
    assert services["ingest"]["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert services["ingest"]["environment"]["PUBLIC_BASE_URL"] in ("", None)
    assert services["worker"]["environment"]["DATABASE_URL"] == "postgresql://calllog@postgres:5432/calllog"
    assert "env_file" not in services["ingest"] and "env_file" not in services["worker"]


def test_compose_reads_env_file_for_production_only(compose_cli, tmp_path):
    d = compose_dir(tmp_path, "PUBLIC_BASE_URL=https://calllog.example.com\n"
                              "TWILIO_AUTH_TOKEN=live-token\nRDSTATION_TOKEN=live-rd\n"
                              "CALLLOG_KEY_PREFIX=calllog\n")
    res = compose(compose_cli, d, "--profile", "demo", "config")
    assert res.returncode == 0, res.stdout + res.stderr
    services = yaml.safe_load(res.stdout)["services"]
    assert services["ingest"]["environment"]["PUBLIC_BASE_URL"] == "https://calllog.example.com"
    assert services["worker"]["environment"]["RDSTATION_TOKEN"] == "live-rd"
    demo_env = services["demo-worker"]["environment"]
    assert demo_env["RDSTATION_TOKEN"] == "mock-v1-token" and demo_env["CALLLOG_KEY_PREFIX"] == "calllog-demo"
    assert services["demo-ingest"]["environment"]["PUBLIC_BASE_URL"] == "http://demo-ingest:8080"


def test_compose_demo_profile_lists_the_sandbox_services(compose_cli, tmp_path):
    d = compose_dir(tmp_path)
    res = compose(compose_cli, d, "--profile", "demo", "config", "--services")
    assert res.returncode == 0, res.stdout + res.stderr
    listed = set(res.stdout.split())
    assert DEMO_SERVICES | {"redis", "postgres", "ingest", "worker"} <= listed, listed
    res = compose(compose_cli, d, "config", "--profiles")
    assert res.returncode == 0 and sorted(res.stdout.split()) == ["demo", "tls"], res.stdout + res.stderr
    if compose_cli[1] == 2:  # v1's `config --services` lists every service, profile or not
        res = compose(compose_cli, d, "config", "--services")
        assert res.returncode == 0 and not DEMO_SERVICES & set(res.stdout.split()), res.stdout
