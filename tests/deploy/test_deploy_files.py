"""What can be checked of deploy/ without a Docker engine or a cluster: every file parses and
refers only to things that are defined; the image installs what the tests run; the alert rules
pass promtool and link runbooks that exist."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.markers import Marker

from freshet.contracts import TOPICS
from tests.deploy.settings_fields import every_setting_env_name

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
SERVICES = ("gateway", "collector", "previewer", "refresher", "scheduler")
WORKERS = ("collector", "previewer", "refresher", "scheduler")
# Prometheus needs nothing installed by the tests beyond its Debian package (`make tools`).
PROMTOOL = shutil.which("promtool")
# What `make install` passes to `uv sync`, and what the image may add for production.
IMAGE_ONLY_FLAGS = {"--no-dev", "--no-editable"}
QUIET_FLAGS = {"--quiet", "-q"}


def load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


# The image.


def dockerfile_sync_flags() -> set[str]:
    runs = re.findall(r"^RUN (.+)$", (DEPLOY / "Dockerfile").read_text(), re.M)
    syncs = [shlex.split(r) for r in runs if r.startswith("uv sync")]
    assert len(syncs) == 1, "the image installs with exactly one `uv sync`"
    return set(syncs[0][2:])


def makefile_sync_flags() -> set[str]:
    line = next(
        line
        for line in (ROOT / "Makefile").read_text().splitlines()
        if "$(UV) sync" in line and line.startswith("\t")
    )
    return set(shlex.split(line.split("$(UV) sync", 1)[1])) - QUIET_FLAGS


def test_the_image_runs_the_same_locked_sync_as_the_tests() -> None:
    image = dockerfile_sync_flags()
    assert "--frozen" in image or "--locked" in image
    assert image - IMAGE_ONLY_FLAGS == makefile_sync_flags()


def test_the_image_copies_every_workspace_member_and_the_lock() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    copied = {p for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M) for p in line.split()}
    assert {"pyproject.toml", "uv.lock"} <= copied
    members = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"][
        "members"
    ]
    for pattern in members:
        for member in ROOT.glob(pattern):
            top = member.relative_to(ROOT).parts[0]
            assert top in copied, f"{member.relative_to(ROOT)} is not copied into the image"


def test_the_image_uses_the_python_the_tests_run_on() -> None:
    base = re.findall(r"^FROM python:(\d+\.\d+)", (DEPLOY / "Dockerfile").read_text(), re.M)
    assert base
    assert set(base) == {f"{sys.version_info.major}.{sys.version_info.minor}"}


def test_the_image_installs_the_versions_the_tests_ran_with() -> None:
    """`uv export` with the image's flags is exactly the set of pinned packages the image gets;
    every one of them must be installed here at the same version."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH")
    flags = sorted(dockerfile_sync_flags() - {"--no-editable"})
    exported = subprocess.run(
        [
            uv,
            "export",
            *flags,
            "--no-hashes",
            "--no-emit-workspace",
            "--format",
            "requirements-txt",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pins = {
        name: version
        for name, version, marker in re.findall(
            r"^([A-Za-z0-9_.\-]+)==([^\s;]+)(?:\s*;\s*(.+))?$", exported, re.M
        )
        if not marker or Marker(marker).evaluate()
    }
    assert len(pins) > 20
    for name, version in pins.items():
        assert metadata.version(name) == version, name


def entrypoint_commands() -> dict[str, str]:
    """Command word -> what it runs, from the entrypoint's case statement."""
    text = (DEPLOY / "docker-entrypoint.sh").read_text()
    out: dict[str, str] = {}
    for words, body in re.findall(r"^\s+([a-z|\-]+)\)\n\s+exec (.+?) ;;", text, re.M):
        for word in words.split("|"):
            out[word] = body.replace('"$command"', word).replace("$command", word)
    return out


def test_every_entrypoint_command_runs_a_module_that_exists() -> None:
    import importlib.util

    commands = entrypoint_commands()
    assert set(SERVICES) | {"migrate", "create-topics"} <= set(commands)
    for word, body in commands.items():
        module = re.search(r"python -m ([\w.]+)", body)
        if module:
            name = module.group(1).replace(f"freshet.{word}", f"freshet.{word}")
            assert importlib.util.find_spec(name) is not None, f"{word}: {name}"


# Compose.


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def test_compose_refers_only_to_defined_services_volumes_and_files(
    compose: dict[str, Any],
) -> None:
    services: dict[str, Any] = compose["services"]
    volumes = set(compose.get("volumes", {}))
    for name, service in services.items():
        deps = service.get("depends_on", {})
        for dep in deps if isinstance(deps, list) else deps.keys():
            assert dep in services, f"{name} depends on unknown {dep}"
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in volumes, f"{name} mounts undeclared volume {source}"
        command = service.get("command")
        if service.get("image", "").startswith("freshet"):
            assert command[0] in entrypoint_commands(), f"{name}: {command}"
        for key in service.get("environment", {}):
            if key.startswith("FRESHET_"):
                assert key in every_setting_env_name(), f"{name}: unknown setting {key}"
    used = {m.split(":")[0] for s in services.values() for m in s.get("volumes", [])}
    assert volumes <= used, "declared volumes nobody mounts"


def test_compose_runs_two_replicas_of_each_worker_and_every_service(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name in SERVICES:
        assert services[name]["command"] == [name]
    for name in WORKERS:
        assert services[name]["deploy"]["replicas"] == 2
    assert {"kafka", "postgres", "prometheus", "grafana", "migrate", "topics"} <= set(services)


def test_compose_kafka_is_kraft_with_three_partitions(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]["environment"]
    assert "controller" in kafka["KAFKA_PROCESS_ROLES"]
    assert "KAFKA_ZOOKEEPER_CONNECT" not in kafka
    assert int(kafka["KAFKA_NUM_PARTITIONS"]) >= 3
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert all(t.partitions >= 3 for t in TOPICS)


def test_prometheus_scrapes_every_service_of_compose(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    scraped = {
        name: job["job_name"]
        for job in config["scrape_configs"]
        for sd in job["dns_sd_configs"]
        for name in sd["names"]
    }
    assert set(scraped) == set(SERVICES)
    assert all(scraped[s] == f"freshet-{s}" for s in SERVICES)
    assert set(scraped) <= set(compose["services"])


def test_grafana_is_provisioned_with_the_dashboard(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    mounts = {m.split(":")[0]: m.split(":")[1] for m in grafana["volumes"]}
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "freshet.yml").read_text()
    )
    path = provider["providers"][0]["options"]["path"]
    host = next(src for src, dst in mounts.items() if dst == path)
    assert list((DEPLOY / host).glob("*.json"))
    datasource = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "freshet.json").read_text())
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p.get("targets", [])}
    assert uids == {datasource["uid"]}


# Kubernetes.


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += load_all(path)
    return docs


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for d in docs:
        if d["kind"] in ("Deployment", "Job"):
            yield d["metadata"]["name"], d["spec"]["template"]


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_manifests_refer_only_to_defined_config_secrets_and_ports(
    manifests: list[dict[str, Any]],
) -> None:
    config_maps = {d["metadata"]["name"]: d["data"] for d in of_kind(manifests, "ConfigMap")}
    secrets = {d["metadata"]["name"]: d["stringData"] for d in of_kind(manifests, "Secret")}
    known = every_setting_env_name()
    for data in [*config_maps.values(), secrets["freshet-secrets"]]:
        assert set(data) <= known, set(data) - known
    for name, template in pod_specs(manifests):
        spec = template["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for v in volumes.values():
            if "secret" in v:
                assert v["secret"]["secretName"] in secrets, name
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps, name
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets, name
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{name}: {mount['name']}"
            ports = {p["name"] for p in container.get("ports", [])}
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                if probe in container:
                    assert container[probe]["httpGet"]["port"] in ports, f"{name} {probe}"
            assert container["args"][0] in entrypoint_commands(), name
            requests = container["resources"]["requests"]
            assert {"cpu", "memory"} <= set(requests), name
    # Files the settings point at are mounted from the Secrets that hold them.
    for key in ("FRESHET_KAFKA_SSL_CAFILE",):
        path = config_maps["freshet-config"][key]
        for name, template in pod_specs(manifests):
            for container in template["spec"]["containers"]:
                if container["args"][0] in (*SERVICES, "create-topics"):
                    mounts = [m["mountPath"] for m in container["volumeMounts"]]
                    assert any(path.startswith(m + "/") for m in mounts), name


def test_every_service_is_deployed_with_probes_replicas_and_a_budget(
    manifests: list[dict[str, Any]],
) -> None:
    deployments = of_kind(manifests, "Deployment")
    budgets = of_kind(manifests, "PodDisruptionBudget")
    assert sorted(
        d["spec"]["template"]["spec"]["containers"][0]["args"][0] for d in deployments
    ) == (sorted(SERVICES))
    for d in deployments:
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert matches(d["spec"]["selector"]["matchLabels"], labels)
        container = d["spec"]["template"]["spec"]["containers"][0]
        assert container["livenessProbe"]["httpGet"]["path"] == "/health"
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert d["spec"]["replicas"] >= 2
        covering = [b for b in budgets if matches(b["spec"]["selector"]["matchLabels"], labels)]
        assert len(covering) == 1, d["metadata"]["name"]
        assert covering[0]["spec"]["minAvailable"] < d["spec"]["replicas"]
    for b in budgets:
        selected = [
            d
            for d in deployments
            if matches(
                b["spec"]["selector"]["matchLabels"], d["spec"]["template"]["metadata"]["labels"]
            )
        ]
        assert len(selected) == 1, b["metadata"]["name"]


def test_services_select_pods_that_have_their_target_ports(
    manifests: list[dict[str, Any]],
) -> None:
    services = of_kind(manifests, "Service")
    assert services
    for service in services:
        pods = [
            t
            for _, t in pod_specs(manifests)
            if matches(service["spec"]["selector"], t["metadata"]["labels"])
        ]
        assert pods, service["metadata"]["name"]
        for port in service["spec"]["ports"]:
            for pod in pods:
                names = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
                assert port["targetPort"] in names


def test_kubectl_kustomize_builds_the_manifests() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; the YAML checks above still ran")
    built = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, check=True
    ).stdout
    kinds = [d["kind"] for d in yaml.safe_load_all(built) if d]
    assert kinds.count("Deployment") == len(SERVICES)


# Prometheus rules.


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((DEPLOY / "prometheus" / "rules" / "freshet.rules.yml").read_text())
    return [rule for group in groups["groups"] for rule in group["rules"]]


def test_promtool_accepts_the_rules_and_the_config() -> None:
    if PROMTOOL is None:
        pytest.skip("promtool is not installed (make tools installs Debian's prometheus)")
    subprocess.run(
        [PROMTOOL, "check", "rules", str(DEPLOY / "prometheus" / "rules" / "freshet.rules.yml")],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [PROMTOOL, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
        check=True,
        capture_output=True,
    )


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    out = set()
    for heading in re.findall(r"^#+ (.+)$", markdown, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


def test_every_alert_links_a_runbook_that_exists(rules: list[dict[str, Any]]) -> None:
    alerts = [r for r in rules if "alert" in r]
    names = {r["alert"] for r in alerts}
    assert {
        "FreshetCollectionFailureRate",
        "FreshetRunStuckRunning",
        "FreshetConsumerLagGrowing",
        "FreshetOutboxBacklog",
        "FreshetDeadLetters",
        "FreshetPreviewsStale",
        "FreshetRefreshFailures",
        "FreshetSchedulerMissedTicks",
        "FreshetServiceDown",
    } <= names
    for alert in alerts:
        url = alert["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        doc = ROOT / path
        assert doc.is_file(), f"{alert['alert']}: {path}"
        if anchor:
            assert anchor in anchors(doc.read_text()), f"{alert['alert']}: #{anchor}"


def test_the_dashboard_has_the_panels_the_issue_lists() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "freshet.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    for metric in (
        "freshet_collection_runs_total",
        "freshet_collection_run_duration_seconds_bucket",
        "freshet_endpoint_runs_recent",
        "freshet_consumer_lag_messages",
        "freshet_outbox_backlog",
        "freshet_dead_letters_total",
        "freshet_preview_oldest_age_seconds",
        "freshet_refresh_tables_total",
        "freshet_cache_age_seconds",
        "freshet_cache_bytes",
        "freshet_scheduler_fire_lateness_seconds_bucket",
        "freshet_scheduler_missed_ticks_total",
        "freshet_http_requests_total",
        "freshet_http_request_duration_seconds_bucket",
    ):
        assert metric in exprs, metric
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
