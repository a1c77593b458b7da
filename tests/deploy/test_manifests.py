"""The deployment files in deploy/: parseable, consistent with the settings, no secrets.

Docker and Kubernetes are not needed: these tests read the files the way an
operator's tools would and check them against what ``gateway/config.py`` reads.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML ships no stubs; only tests read YAML

from gateway.config import load_settings
from gateway.vault import generate_key_entry

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CONFIG_SOURCE = (DEPLOY.parent / "gateway" / "config.py").read_text()
YAML_FILES = sorted(
    [*DEPLOY.glob("*.yaml"), *DEPLOY.glob("k8s/*.yaml"), *DEPLOY.glob("prometheus/*.yaml")]
)
SECRET_SETTINGS = ("LINKGATE_DATABASE_URL", "LINKGATE_VAULT_KEYS", "LINKGATE_SECRET_KEY")
# Whole names only, not the `LINKGATE_PROVIDER_<NAME>_…` pattern in comments.
_ENV_NAME = re.compile(r"\bLINKGATE_[A-Z0-9_]*[A-Z0-9]\b")
_INTERPOLATION = re.compile(r"^\$\{[A-Z0-9_]+(:\?[^}]*|:-)?\}$")


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _k8s(kind: str) -> dict[str, Any]:
    [found] = [
        doc for path in DEPLOY.glob("k8s/*.yaml") for doc in _documents(path) if doc["kind"] == kind
    ]
    return found


def _final_stage(dockerfile: str) -> str:
    return re.split(r"^FROM ", dockerfile, flags=re.MULTILINE)[-1]


def _provider_sections() -> set[str]:
    toml = tomllib.loads((DEPLOY / "linkgate.toml").read_text())
    configmap = tomllib.loads(_k8s("ConfigMap")["data"]["linkgate.toml"])
    return {*toml.get("providers", {}), *configmap.get("providers", {})}


def _names_config_reads() -> set[str]:
    names = set(re.findall(r'"(LINKGATE_[A-Z0-9_]+)"', CONFIG_SOURCE))
    assert 'f"LINKGATE_PROVIDER_{' in CONFIG_SOURCE  # provider credentials, by section name
    for provider in _provider_sections():
        prefix = f"LINKGATE_PROVIDER_{provider.upper().replace('-', '_')}_"
        names |= {prefix + "CLIENT_ID", prefix + "CLIENT_SECRET"}
    return names


def _container_env(kind: str) -> Iterator[Mapping[str, Any]]:
    spec = _k8s(kind)["spec"]["template"]["spec"]
    for container in spec["containers"]:
        yield from container.get("env", [])


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses(path: Path) -> None:
    """Each compose, collector and Kubernetes file is valid YAML with at least one document."""
    assert _documents(path)


def test_deploy_files_name_only_settings_the_gateway_reads() -> None:
    """Every LINKGATE_* variable in deploy/ is one gateway/config.py reads (no typos)."""
    used = {
        name
        for path in DEPLOY.rglob("*")
        if path.is_file()
        for name in _ENV_NAME.findall(path.read_text())
    }
    assert sorted(used - _names_config_reads()) == []


def test_configmap_settings_and_secret_references_make_valid_settings(tmp_path: Path) -> None:
    """The ConfigMap plus the referenced secrets pass the gateway's own start-up validation."""
    data = _k8s("ConfigMap")["data"]
    (tmp_path / "linkgate.toml").write_text(data["linkgate.toml"])
    environ = {k: v for k, v in data.items() if k.startswith("LINKGATE_")}
    environ["LINKGATE_CONFIG"] = str(tmp_path / "linkgate.toml")
    placeholders = {
        "LINKGATE_DATABASE_URL": "postgresql+asyncpg://linkgate@db:5432/linkgate",
        "LINKGATE_VAULT_KEYS": generate_key_entry("k1"),
        "LINKGATE_SECRET_KEY": "x" * 48,
    }
    for entry in _container_env("Deployment"):
        if "valueFrom" in entry:
            environ[entry["name"]] = placeholders.get(entry["name"], "from-a-secret")
    settings = load_settings(environ)
    assert sorted(settings.providers) == sorted(_provider_sections())


def test_secrets_are_secret_references_not_values() -> None:
    """Database URL, vault keys, secret key and provider secrets come from Secrets only."""
    for kind in ("Deployment", "Job"):
        by_name = {entry["name"]: entry for entry in _container_env(kind)}
        for name in (*SECRET_SETTINGS, "LINKGATE_PROVIDER_SANDBOX_CLIENT_SECRET"):
            assert "secretKeyRef" in by_name[name]["valueFrom"], (kind, name)
    configmap = _k8s("ConfigMap")["data"]
    assert [name for name in SECRET_SETTINGS if name in configmap] == []


def test_compose_takes_every_secret_from_the_environment() -> None:
    """compose.yaml interpolates secrets from .env; .env.example leaves them empty."""
    compose = _documents(DEPLOY / "compose.yaml")[0]
    for service in ("migrate", "gateway-1", "gateway-2"):
        env = compose["services"][service]["environment"]
        for name in ("LINKGATE_VAULT_KEYS", "LINKGATE_SECRET_KEY"):
            assert _INTERPOLATION.match(env[name]), (service, name)
        assert "${POSTGRES_PASSWORD" in env["LINKGATE_DATABASE_URL"]
    example = dict(
        line.split("=", 1)
        for line in (DEPLOY / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    secrets = [name for name in example if re.search("PASSWORD|KEYS?$|SECRET", name)]
    assert {name: example[name] for name in secrets} == dict.fromkeys(secrets, "")


def test_compose_runs_two_replicas_after_the_migration() -> None:
    """Both replicas wait for the one-shot migrate service; nginx balances over both."""
    services = _documents(DEPLOY / "compose.yaml")[0]["services"]
    assert services["migrate"]["command"] == ["migrate"]
    for replica in ("gateway-1", "gateway-2"):
        assert services[replica]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
        assert f"server {replica}:8080" in (DEPLOY / "nginx.conf").read_text()
    assert {"postgres", "lb", "otel-collector"} <= set(services)


def test_final_image_stage_has_no_build_tools() -> None:
    """The runtime stage is slim, installs wheels only and carries no compiler."""
    final = _final_stage((DEPLOY / "Dockerfile").read_text())
    assert final.startswith("python:")
    assert "-slim" in final.splitlines()[0]
    assert re.findall(r"gcc|g\+\+|build-essential|apt-get install|-dev\b", final) == []
    assert "--no-index --find-links /wheels" in final


def test_final_image_runs_as_non_root_with_a_health_check() -> None:
    """USER is a numeric non-root id; HEALTHCHECK probes /healthz; serve binds 0.0.0.0."""
    final = _final_stage((DEPLOY / "Dockerfile").read_text())
    [user] = re.findall(r"^USER (\S+)", final, flags=re.MULTILINE)
    assert int(user.split(":")[0]) >= 1000
    assert "HEALTHCHECK" in final
    assert "/healthz" in final
    assert 'CMD ["serve", "--host", "0.0.0.0"]' in final


def test_deployment_probes_and_security_context() -> None:
    """Readiness is /readyz, liveness /healthz; non-root with a read-only root filesystem."""
    spec = _k8s("Deployment")["spec"]["template"]["spec"]
    [container] = spec["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["requests"]


def test_migration_job_runs_linkgate_migrate() -> None:
    """The Job runs `linkgate migrate` with the image's entrypoint."""
    [container] = _k8s("Job")["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["migrate"]


def test_kustomization_lists_every_manifest() -> None:
    """kubectl apply -k deploy/k8s applies every manifest in the folder."""
    listed = set(_documents(DEPLOY / "k8s" / "kustomization.yaml")[0]["resources"])
    present = {p.name for p in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


def test_benchmark_measures_the_deployed_trace_export_ratio() -> None:
    """make bench's figures are those of the gateway as deploy/ runs it."""
    bench = (DEPLOY.parent / "tests" / "benchmarks" / "bench_gateway.py").read_text()
    measured = re.search(r'^DEPLOYED_TRACE_EXPORT_RATIO = "([0-9.]+)"$', bench, re.MULTILINE)
    assert measured is not None
    compose = _documents(DEPLOY / "compose.yaml")[0]
    configmap = _documents(DEPLOY / "k8s" / "configmap.yaml")[0]
    deployed = {
        str(service["environment"]["LINKGATE_TRACE_EXPORT_RATIO"])
        for name, service in compose["services"].items()
        if name.startswith("gateway")
    }
    assert deployed == {configmap["data"]["LINKGATE_TRACE_EXPORT_RATIO"]} == {measured[1]}


def test_the_collector_serves_the_replicas_metrics_for_prometheus() -> None:
    """OTLP metrics in, the prometheus exporter out on :8889; traces keep their own pipeline."""
    collector = _documents(DEPLOY / "otel-collector.yaml")[0]
    pipelines = collector["service"]["pipelines"]
    assert pipelines["metrics"]["receivers"] == ["otlp"]
    assert pipelines["metrics"]["exporters"] == ["prometheus"]
    assert collector["exporters"]["prometheus"]["endpoint"] == "0.0.0.0:8889"
    assert pipelines["traces"]["receivers"] == ["otlp"]
    assert "prometheus" not in pipelines["traces"]["exporters"]
    # The gateway posts both signals to the one OTLP/HTTP receiver (LINKGATE_OTLP_ENDPOINT).
    assert collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")


def test_compose_runs_the_contrib_collector_and_publishes_its_metrics_port() -> None:
    """The prometheus exporter is in the contrib image only; :8889 is reachable from the host."""
    services = _documents(DEPLOY / "compose.yaml")[0]["services"]
    collector = services["otel-collector"]
    assert collector["image"].startswith("otel/opentelemetry-collector-contrib:")
    assert "127.0.0.1:8889:8889" in collector["ports"]
    for replica in ("gateway-1", "gateway-2"):
        env = services[replica]["environment"]
        assert env["LINKGATE_OTLP_ENDPOINT"] == "http://otel-collector:4318"
        assert float(env["LINKGATE_METRICS_EXPORT_INTERVAL"]) > 0


def test_each_pod_names_itself_in_its_metrics() -> None:
    """service.instance.id is the pod's name, so replicas' series stay apart in Prometheus."""
    by_name = {entry["name"]: entry for entry in _container_env("Deployment")}
    assert by_name["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    attributes = dict(
        pair.split("=", 1) for pair in by_name["OTEL_RESOURCE_ATTRIBUTES"]["value"].split(",")
    )
    assert attributes["service.instance.id"] == "$(POD_NAME)"
    names = list(by_name)
    assert names.index("POD_NAME") < names.index("OTEL_RESOURCE_ATTRIBUTES"), (
        "Kubernetes expands $(POD_NAME) only from variables defined before it"
    )


def test_the_replicas_see_the_real_client_behind_nginx() -> None:
    """The console's sign-in throttle counts by client address: in compose the replicas
    trust X-Forwarded-For (only nginx reaches them), so nginx must replace the header
    with the peer it saw, never append to what the client sent (uvicorn, trusting every
    proxy, believes the leftmost entry)."""
    nginx = (DEPLOY / "nginx.conf").read_text()
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())

    assert "proxy_set_header X-Forwarded-For $remote_addr;" in nginx
    assert "$proxy_add_x_forwarded_for" not in nginx
    for replica in ("gateway-1", "gateway-2"):
        service = compose["services"][replica]
        assert service["environment"]["FORWARDED_ALLOW_IPS"] == "*"
        assert "ports" not in service
