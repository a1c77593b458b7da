"""deploy/prometheus/: the alert rules read series the gateway exports, and fire when they should.

The expected series are derived from the gateway's instruments
(`tests.deploy.exported_series`): renaming an instrument, changing its unit or
kind, or dropping an attribute an alert matches on fails here. promtool checks
the rules and the scrape configuration as Prometheus would load them, and runs
the rules' unit tests (alerts_test.yaml).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML ships no stubs; only tests read YAML

from gateway.observability.metrics import RefreshOutcome
from tests.deploy.conftest import run_promtool
from tests.deploy.exported_series import Family, unknown_reads
from tests.deploy.promql import reads

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PROMETHEUS = REPO / "deploy" / "prometheus"
RULES = PROMETHEUS / "alerts.yaml"
SCRAPE = PROMETHEUS / "prometheus.yaml"
UNIT_TESTS = HERE / "alerts_test.yaml"
SEVERITIES = {"critical", "warning"}


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _scrape_jobs() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load(SCRAPE.read_text())
    return {job["job_name"]: job for job in config["scrape_configs"]}


@pytest.fixture
def checked_rules(promtool: str) -> str:
    return run_promtool(promtool, "check", "rules", RULES)


def test_promtool_loads_every_rule(checked_rules: str) -> None:
    """promtool check rules: every expression and annotation template parses."""
    assert f"SUCCESS: {len(_rules())} rules found" in checked_rules


def test_promtool_accepts_the_scrape_configuration_and_its_rule_file(promtool: str) -> None:
    """prometheus.yaml is a valid configuration that loads alerts.yaml beside it."""
    output = run_promtool(promtool, "check", "config", SCRAPE)
    assert "SUCCESS: 1 rule files found" in output


def test_the_scrape_keeps_each_replicas_job_and_instance() -> None:
    """honor_labels: without it every series is job="otel-collector" and the rules match nothing."""
    collector_exporter = yaml.safe_load((REPO / "deploy" / "otel-collector.yaml").read_text())
    port = collector_exporter["exporters"]["prometheus"]["endpoint"].rsplit(":", 1)[1]
    [job] = _scrape_jobs().values()
    assert job["honor_labels"] is True
    assert [config["targets"] for config in job["static_configs"]] == [[f"otel-collector:{port}"]]


def test_every_rule_is_an_alert_with_a_severity_a_summary_and_a_runbook() -> None:
    """An operator paged at night reads what fired, how bad it is, and where to look."""
    for rule in _rules():
        assert re.fullmatch(r"Linkgate[A-Za-z0-9]+", rule.get("alert", "")), rule
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        for annotation in ("summary", "description", "runbook"):
            assert rule["annotations"].get(annotation, "").strip(), (rule["alert"], annotation)
    assert len({rule["alert"] for rule in _rules()}) == len(_rules()), "alert names repeat"


def test_every_series_an_alert_reads_is_one_the_gateway_exports(
    families: dict[str, Family],
) -> None:
    """Names, labels and label values in each expression exist, translated from the instruments."""
    up = {"up": {"job", "instance"}}
    problems = {
        rule["alert"]: found
        for rule in _rules()
        if (found := unknown_reads(rule["expr"], families, own_series=up))
    }
    assert problems == {}


def test_up_is_read_for_the_scrape_job_that_exists() -> None:
    """The collector alerts watch the job prometheus.yaml scrapes, by its name."""
    jobs = set(_scrape_jobs())
    watched = {
        matcher.value
        for rule in _rules()
        for selector in reads(rule["expr"]).selectors
        if selector.name == "up"
        for matcher in selector.matchers
        if matcher.label == "job"
    }
    assert watched == jobs


def test_an_alert_watches_each_thing_the_readme_says_to_alert_on(
    families: dict[str, Family],
) -> None:
    """5xx, latency, lost grants, failed refreshes, audit failures and backlog, pool, absence."""
    read_by_alert = {
        rule["alert"]: {selector.name for selector in reads(rule["expr"]).selectors}
        for rule in _rules()
    }
    every_read = set().union(*read_by_alert.values())
    wanted = [
        families["http.server.request.duration"].base + "_count",
        families["http.server.request.duration"].base + "_bucket",
        families["http.client.request.duration"].base + "_count",
        families["http.client.request.duration"].base + "_bucket",
        families["linkgate.token.refreshes"].base + "_total",
        families["linkgate.audit.append.failures"].base + "_total",
        families["linkgate.audit.pending"].base,
        families["db.client.connection.count"].base,
        families["db.client.connection.max"].base,
        "up",
    ]
    assert [name for name in wanted if name not in every_read] == []
    outcomes = {
        matcher.value
        for rule in _rules()
        for selector in reads(rule["expr"]).selectors
        for matcher in selector.matchers
        if matcher.label == "linkgate_outcome"
    }
    assert outcomes == {RefreshOutcome.NEEDS_REAUTH.value, RefreshOutcome.FAILED.value}


def test_the_alerts_fire_as_their_unit_tests_say(promtool: str, tmp_path: Path) -> None:
    """promtool test rules over alerts_test.yaml: when each alert fires, and with which labels.

    The rules are copied without their annotations, so the cases state behaviour, not prose.
    """
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations")
    (tmp_path / "alerts.yaml").write_text(yaml.safe_dump(rules))
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    output = run_promtool(promtool, "test", "rules", UNIT_TESTS.name, cwd=tmp_path)
    assert "SUCCESS" in output


def test_the_unit_tests_feed_the_rules_series_the_gateway_exports(
    families: dict[str, Family],
) -> None:
    """Every input series of alerts_test.yaml is named and labelled as the collector serves it."""
    up = {"up": {"job", "instance"}}
    cases = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    problems = [
        f"{series['series']}: {problem}"
        for case in cases
        for series in case["input_series"]
        for problem in unknown_reads(series["series"], families, own_series=up)
    ]
    tested = {test["alertname"] for case in cases for test in case.get("alert_rule_test", [])}
    assert problems == []
    assert {rule["alert"] for rule in _rules()} - tested == set(), "alerts without a unit test"


def test_the_readme_queries_read_exported_series(families: dict[str, Family]) -> None:
    """The PromQL the README's Metrics section quotes names series that exist."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Metrics", 1)[1].split("\n## ", 1)[0]
    queries = [code for code in re.findall(r"`([^`]+)`", section) if "(" in code]
    assert queries, "the Metrics section quotes no query"
    problems = {query: found for query in queries if (found := unknown_reads(query, families))}
    assert problems == {}
