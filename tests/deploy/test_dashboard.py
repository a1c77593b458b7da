"""deploy/grafana/linkgate-dashboard.json: valid, and every panel shows series the gateway exports.

Each query is read statically (names, labels, values, as for the alerts) and
then evaluated by promtool against twenty minutes of the series a real
collection of the gateway's instruments becomes in Prometheus: a panel whose
query returns nothing there would be empty on a real deployment too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # PyYAML ships no stubs; only tests read YAML

from gateway.app import SERVICE_NAME
from tests.deploy.conftest import run_promtool
from tests.deploy.exported_series import Family, unknown_reads
from tests.deploy.promql import reads

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "linkgate-dashboard.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# What Grafana puts in place of its variables when it sends a query.
_GRAFANA_VARIABLES = {"$__rate_interval": "2m", "$__range": "20m", "$instance": ".*"}
_LABEL_VALUES = re.compile(r"^label_values\((.+),\s*([A-Za-z_][A-Za-z0-9_]*)\)$")


def _dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def _panels() -> list[dict[str, Any]]:
    return [panel for panel in _dashboard()["panels"] if panel["type"] != "row"]


def _queries() -> list[tuple[str, str]]:
    """(panel title, expr) for every target of every panel."""
    return [(panel["title"], target["expr"]) for panel in _panels() for target in panel["targets"]]


def _variables() -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in _dashboard()["templating"]["list"]}


def _as_sent(expr: str) -> str:
    for variable, value in _GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a variable this test does not know: {expr}"
    return expr


def test_the_dashboard_is_grafana_json_on_a_prometheus_datasource_variable() -> None:
    """Recent schema, a datasource picker that every panel uses, unique ids, a place on the grid."""
    dashboard = _dashboard()
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["uid"] == "linkgate"
    datasource = _variables()["datasource"]
    assert (datasource["type"], datasource["query"]) == ("datasource", "prometheus")
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in _panels():
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        assert panel["description"].strip(), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]
        assert len({target["refId"] for target in panel["targets"]}) == len(panel["targets"])


def test_every_series_a_panel_reads_is_one_the_gateway_exports(
    families: dict[str, Family],
) -> None:
    """Names, labels and label values of every query exist, translated from the instruments."""
    problems = {
        f"{title}: {expr}": found
        for title, expr in _queries()
        if (found := unknown_reads(_as_sent(expr), families))
    }
    assert problems == {}


def test_the_replica_picker_lists_instances_and_every_query_follows_it(
    families: dict[str, Family],
) -> None:
    """$instance offers each replica's service.instance.id; every selector is filtered by it."""
    replica = _variables()["instance"]
    found = _LABEL_VALUES.match(replica["query"]["query"])
    assert found is not None
    assert unknown_reads(found[1], families) == []
    assert found[2] == "instance"
    assert replica["multi"] is True
    assert replica["includeAll"] is True
    for title, expr in _queries():
        for selector in reads(expr).selectors:
            matchers = {(m.label, m.op, m.value) for m in selector.matchers}
            assert ("job", "=", SERVICE_NAME) in matchers, (title, selector.name)
            assert ("instance", "=~", "$instance") in matchers, (title, selector.name)


def test_every_instrument_has_a_panel(families: dict[str, Family]) -> None:
    """An instrument added to the gateway shows up here as missing until a panel reads it."""
    read = {selector.name for _title, expr in _queries() for selector in reads(expr).selectors}
    unread = [instrument for instrument, family in families.items() if not set(family.names) & read]
    assert unread == []


def test_every_panel_query_returns_data_from_the_exported_series(
    promtool: str, families: dict[str, Family], tmp_path: Path
) -> None:
    """promtool evaluates each query over twenty minutes of the exported series: none is empty."""
    input_series = [
        {
            "series": name
            + "{"
            + ", ".join(f"{k}={json.dumps(v)}" for k, v in labels.items())
            + "}",
            "values": values,
        }
        for family in families.values()
        for name, labels, values in family.input_series
    ]
    # count(...) > bool 0 is 1 whenever the query returns a series, and nothing otherwise.
    expressions = [
        {
            "expr": f"count({_as_sent(expr)}) > bool 0",
            "eval_time": "20m",
            "exp_samples": [{"labels": "{}", "value": 1}],
        }
        for _title, expr in _queries()
    ]
    test = {
        "rule_files": [],
        "evaluation_interval": "30s",
        "tests": [
            {"interval": "30s", "input_series": input_series, "promql_expr_test": expressions}
        ],
    }
    (tmp_path / "dashboard_test.yaml").write_text(yaml.safe_dump(test))
    output = run_promtool(promtool, "test", "rules", "dashboard_test.yaml", cwd=tmp_path)
    assert "SUCCESS" in output
