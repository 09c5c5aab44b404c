"""The Grafana dashboard and the Prometheus alert rules under deploy/: promtool accepts the
rules and their unit tests, the dashboard is an importable model whose queries parse, and
every metric either names exists in what a real ``archiver run --metrics-file`` and a
real ``archiver serve``'s ``/metrics`` put out."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from markdown.extensions.toc import slugify

from archiver.models import RETENTION_SECONDS
from archiver.testing.standin import AkoolStandIn

from .conftest import API_KEY, CLI_ENV, config_dict, run_cli, write_yaml
from .test_serve_process import SECRET_ENV, ServeProcess

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "archiver-alerts.yaml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "archiver-alerts.test.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "archiver-dashboard.json"
TROUBLESHOOTING = ROOT / "docs" / "troubleshooting.md"
#: Series Prometheus makes itself, not archiver: `up` of a scrape job.
PROMETHEUS_OWN = {"up"}
#: Grafana's variables and what stands in for them when promtool checks a query.
GRAFANA_VARS = {"$__rate_interval": "5m", "$instance": ".*", "$serve_instance": ".*"}
DAY_MS = 24 * 3600 * 1000


def promtool() -> str:
    """promtool's path; skipped without it, unless CI must run it (then a clear failure)."""
    path = shutil.which("promtool")
    if path is None:
        message = ("promtool is not on PATH: install it (Debian: apt-get install -y "
                   "--no-install-recommends prometheus) to check deploy/prometheus/")
        if os.environ.get("CI") or os.environ.get("ARCHIVER_REQUIRE_PROMTOOL"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def run_promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def alert_rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_queries(model: dict[str, Any]) -> list[str]:
    """Every PromQL the dashboard runs: its panels' targets and its variables' queries."""
    queries = [t["expr"] for p in model["panels"] for t in p.get("targets", [])]
    for variable in model["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            queries.append(query["query"] if isinstance(query, dict) else query)
    return queries


# ----------------------------------------------------------- names out of PromQL

_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
             "group_right", "bool", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (or a Grafana ``label_values(sel, label)``)
    reads: identifiers that are not functions, keywords, labels, strings or durations."""
    variable = re.fullmatch(r"\s*label_values\((.*)\)\s*", expr, re.S)
    if variable is not None:
        selector, _, _ = variable.group(1).rpartition(",")
        expr = selector
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)        # label values
    expr = re.sub(r"\{[^}]*\}", " ", expr)                  # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)                 # ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ",
                  expr)                                     # label lists
    expr = re.sub(r"\$\{?\w+\}?", " ", expr)                # Grafana variables
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", expr):
        word = match.group(0)
        if expr[match.end():].lstrip().startswith("(") or word.lower() in _KEYWORDS:
            continue  # a function or an aggregation, or a keyword
        names.add(word)
    return names


def unknown_metrics(exprs: list[str], known: set[str]) -> dict[str, set[str]]:
    """{expression: the names it reads that *known* lacks}, for those that read any."""
    missing = {e: metric_names(e) - known - PROMETHEUS_OWN for e in exprs}
    return {e: names for e, names in missing.items() if names}


def test_metric_names_reads_promql():
    """The name parser finds metrics, not functions, labels, strings, durations or vars."""
    expr = ('sum without (outcome) (increase(archiver_a{outcome="x y",b=~"$instance"}[1h]))'
            ' > 0.5 * rate(archiver_b[$__rate_interval]) and on(job) up offset 5m'
            ' or time() - archiver_c > 2 * 86400 or vector(1e3)')
    assert metric_names(expr) == {"archiver_a", "archiver_b", "up", "archiver_c"}
    assert metric_names("label_values(archiver_d{job=\"x\"}, instance)") == {"archiver_d"}
    assert metric_names("sum(archiver_e) by (shard)") == {"archiver_e"}


# ------------------------------------------------------------------ promtool

def test_alert_rules_pass_promtool_check():
    """promtool check rules: the file is valid (PromQL, templates, durations)."""
    result = run_promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_alert_unit_tests_pass():
    """promtool test rules: series in, the expected alerts (labels, annotations) out."""
    result = run_promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert tested == {rule["alert"] for rule in alert_rules()}, "every alert has a test"


def test_dashboard_queries_parse(tmp_path):
    """Each dashboard query, Grafana's variables filled in, is PromQL promtool accepts."""
    rules = []
    for n, expr in enumerate(dashboard_queries(dashboard())):
        if expr.startswith("label_values("):
            expr = expr.removeprefix("label_values(").rpartition(",")[0]
        for variable, value in GRAFANA_VARS.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"dashboard:query_{n}", "expr": expr})
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run_promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------ the models

def test_dashboard_is_an_importable_model():
    """Current schema, the data source an input and a variable, panels that fit the grid."""
    model = dashboard()
    assert model["schemaVersion"] >= 39 and model["uid"] and model["id"] is None
    assert [i["name"] for i in model["__inputs"]] == ["DS_PROMETHEUS"]
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    ids = [p["id"] for p in model["panels"]]
    assert len(ids) == len(set(ids))
    for panel in model["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
        assert panel["targets"] and panel["description"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
    titles = " ".join(p["title"] for p in model["panels"])
    for topic in ("exit status", "Bytes", "Duration", "last success", "Pending / failed",
                  "Shards", "Queue depth", "accepted and rejected", "Archive rate",
                  "Oldest pending"):
        assert topic in titles


def test_every_alert_is_annotated_with_a_runbook_that_exists():
    """summary, description, severity; runbook_url names a heading of troubleshooting.md."""
    headings = {slugify(line.lstrip("#").strip(), "-")
                for line in TROUBLESHOOTING.read_text().splitlines() if line.startswith("#")}
    for rule in alert_rules():
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        page, _, anchor = annotations["runbook_url"].partition("#")
        assert page == "docs/troubleshooting.md", rule["alert"]
        assert anchor in headings, f"{rule['alert']}: no heading for #{anchor}"


# -------------------------------------------------- names against real output

@pytest.fixture(scope="module")
def real_output(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The metrics text of real processes: ``archiver run --metrics-file`` (a success, then
    a run with an archived, a failed and two pending ids) and ``archiver serve``'s
    ``/metrics``; plus ``created_ms``, the older pending job's create_time."""
    cwd = tmp_path_factory.mktemp("metrics")
    standin = AkoolStandIn(api_key=API_KEY)
    now_ms = int(time.time() * 1000)
    created_ms = now_ms - 5 * DAY_MS
    standin.add_job("dash-ok", video_size=2048)
    standin.add_job("dash-new", video_size=4096)
    standin.add_job("dash-failed", outcome="failed")
    standin.add_job("dash-old-pending", outcome="never", create_time=created_ms)
    standin.add_job("dash-pending", outcome="never", create_time=now_ms - DAY_MS)
    with standin.run_in_thread() as url:
        data = config_dict(url, cwd / "archive", polling={"deadline": 1.5})
        data["api"]["api_key"] = "${TEST_AKOOL_KEY}"
        data["webhook"] = {"client_id": "standin-clientid",
                           "client_secret": "${TEST_WEBHOOK_SECRET}"}
        write_yaml(cwd / "archiver.yaml", data)
        write_yaml(cwd / "ok.yaml", ["dash-ok"])
        write_yaml(cwd / "mixed.yaml", ["dash-ok", "dash-new", "dash-failed",
                                        "dash-old-pending", "dash-pending"])
        env = {**CLI_ENV, **SECRET_ENV}
        first = run_cli("run", "ok.yaml", "--metrics-file", "archiver.prom", cwd=cwd, env=env)
        assert first.returncode == 0, first.stderr
        second = run_cli("run", "mixed.yaml", "--metrics-file", "archiver.prom", cwd=cwd,
                         env=env)
        assert second.returncode == 1, second.stderr
        server = ServeProcess(cwd)
        try:
            parts = urlsplit(server.url)
            with urllib.request.urlopen(f"{parts.scheme}://{parts.netloc}/metrics",
                                        timeout=30) as answer:
                serve_text = answer.read().decode()
        finally:
            status, err = server.finish()
        assert status == 0, err
    yield {"run": (cwd / "archiver.prom").read_text(), "serve": serve_text,
           "created_ms": str(created_ms)}


def exposed_names(text: str) -> set[str]:
    """Metric names of Prometheus text: every sample line's name."""
    return {re.split(r"[{\s]", line, maxsplit=1)[0]
            for line in text.splitlines() if line and not line.startswith("#")}


def test_every_metric_the_rules_and_dashboard_name_is_exposed(real_output):
    """A rule or panel reading a metric no real run or serve puts out would never fire or
    draw: each name in the rules and the dashboard is in the real output."""
    known = exposed_names(real_output["run"]) | exposed_names(real_output["serve"])
    rule_exprs = [rule["expr"] for rule in alert_rules()]
    missing = unknown_metrics(rule_exprs, known)
    assert not missing, f"the alert rules name metrics no real process exposes: {missing}"
    missing = unknown_metrics(dashboard_queries(dashboard()), known)
    assert not missing, f"the dashboard names metrics no real process exposes: {missing}"
    named = set().union(*map(metric_names, rule_exprs + dashboard_queries(dashboard())))
    assert {"archiver_lease_lost", "archiver_pending_expiry_timestamp_seconds",
            "archiver_webhook_oldest_pending_age_seconds"} <= named


def test_a_rule_naming_a_missing_metric_is_caught(real_output):
    """The check above is no formality: a typo'd or node_exporter-only name is reported."""
    known = exposed_names(real_output["run"]) | exposed_names(real_output["serve"])
    broken = RULES.read_text().replace("archiver_lease_lost ==", "archiver_leases_lost ==")
    broken = broken.replace("archiver_last_run_timestamp_seconds >",
                            "node_textfile_mtime_seconds >")
    exprs = [r["expr"] for g in yaml.safe_load(broken)["groups"] for r in g["rules"]]
    missing = set().union(*unknown_metrics(exprs, known).values())
    assert missing == {"archiver_leases_lost", "node_textfile_mtime_seconds"}


def test_run_metrics_say_when_the_first_pending_job_expires(real_output):
    """The soonest expiry of the run's pending ids is create_time + 7 days; no lease lost;
    the last success carried over from the earlier run."""
    samples = dict(line.rsplit(" ", 1) for line in real_output["run"].splitlines()
                   if line and not line.startswith("#"))
    expected = int(real_output["created_ms"]) / 1000 + RETENTION_SECONDS
    assert float(samples["archiver_pending_expiry_timestamp_seconds"]) == \
        pytest.approx(expected, abs=0.001)
    assert samples["archiver_lease_lost"] == "0"
    # One series per result family (zeros included): the run's ids were all videos.
    def items(outcome: str) -> float:
        return sum(float(v) for k, v in samples.items()
                   if k.startswith(f'archiver_items{{outcome="{outcome}",family='))
    assert samples['archiver_items{outcome="pending",family="video"}'] == "2"
    assert (items("pending"), items("failed")) == (2, 1)
    assert "archiver_last_success_timestamp_seconds" in samples
