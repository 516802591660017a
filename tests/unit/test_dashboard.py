"""The Grafana dashboard and the compose "observability" profile agree with the runner and with
each other: every query reads a metric the runner exposes, the required subjects are all shown,
and Prometheus and Grafana are started only on request, from files that exist in the repo."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from autorunner.metrics import Metrics

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
PROFILE = "observability"
DATASOURCE_VARIABLE = {"type": "prometheus", "uid": "${datasource}"}

# What each kind of metric exposes, after its name in a "# TYPE" line (prometheus_client writes
# a counter's name there with "_total" already, older versions without it).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
}
# Words of PromQL that are not metric names (functions are told apart by their parenthesis).
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"}
KEYWORDS |= {"and", "or", "unless", "inf", "nan"}

# Each subject the dashboard must show: a metric, the labels some panel breaks it down by, and
# for a histogram the quantiles some panel computes from it.
REQUIRED: dict[str, tuple[set[str], set[str]]] = {
    "autorunner_events_received_total": ({"channel"}, set()),
    "autorunner_events_enqueued_total": ({"channel"}, set()),
    "autorunner_events_rejected_total": ({"reason"}, set()),
    "autorunner_http_refused_total": ({"reason"}, set()),
    "autorunner_store_unavailable_total": (set(), set()),
    "autorunner_events_duplicate_total": (set(), set()),
    "autorunner_ack_latency_seconds_bucket": ({"le"}, {"0.5", "0.99"}),
    "autorunner_queue_depth": (set(), set()),
    "autorunner_queue_oldest_pending_seconds": (set(), set()),
    "autorunner_queue_in_flight": (set(), set()),
    "autorunner_jobs_processed_total": ({"outcome"}, set()),
    "autorunner_jobs_retried_total": (set(), set()),
    "autorunner_effects_total": ({"kind", "status"}, set()),
    "autorunner_effects_unknown": (set(), set()),
    "autorunner_decision_seconds_bucket": ({"decider", "le"}, {"0.5", "0.99"}),
    "autorunner_decision_tokens_total": ({"type"}, set()),
    "autorunner_dead_letters": (set(), set()),
    "autorunner_jobs_dead_lettered_total": (set(), set()),
}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def dashboard() -> Any:
    return json.loads((DEPLOY / "grafana" / "dashboards" / "autorunner.json").read_text())


def panels(board: Any) -> Iterator[Any]:
    """Every panel that shows data: rows are only headings (a collapsed one holds its panels)."""
    for panel in board["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def variables(board: Any) -> dict[str, Any]:
    return {v["name"]: v for v in board["templating"]["list"]}


def exposed() -> set[str]:
    """The names of the series the runner's /metrics can hold, from its real exposition."""
    text = Metrics().render().decode()
    names: set[str] = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        base = name.removesuffix("_total") if kind == "counter" else name
        names |= {base + suffix for suffix in SUFFIXES.get(kind, ("",))}
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: what is left once strings, label matchers,
    ranges, grouping clauses, functions, numbers and keywords are taken out."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", bare)
    bare = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", bare)
    names = re.findall(r"\b([A-Za-z_:][\w:]*)\b(?!\s*\()", bare)
    return {name for name in names if name.lower() not in KEYWORDS}


def grouping(expr: str) -> set[str]:
    """The labels an expression keeps in its ``by (...)`` clauses."""
    return {
        label.strip()
        for clause in re.findall(r"\bby\s*\(([^)]*)\)", expr)
        for label in clause.split(",")
        if label.strip()
    }


def exprs(panel: Any) -> list[str]:
    return [target["expr"] for target in panel["targets"]]


def variable_query(variable: Any) -> str:
    query = variable["query"]
    return str(query["query"] if isinstance(query, dict) else query)


def compose() -> Any:
    return load_yaml(ROOT / "docker-compose.yml")


def bind_mounts(service: Any) -> dict[Path, str]:
    """A service's mounts of repo paths: the path on the host, and where the container sees it."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith((".", "/")):
            mounts[(ROOT / source).resolve()] = target
    return mounts


def in_container(service: Any, path: Path) -> str:
    """Where a service's container sees ``path`` of the repo, through one of its bind mounts."""
    for source, target in bind_mounts(service).items():
        if path.resolve().is_relative_to(source):
            return str(Path(target) / path.resolve().relative_to(source))
    raise AssertionError(f"{path} is not mounted")


def on_host(service: Any, container_path: str) -> Path:
    """The repo file a container path of a service is, through one of its bind mounts."""
    for source, target in bind_mounts(service).items():
        if Path(container_path).is_relative_to(target):
            return source / Path(container_path).relative_to(target)
    raise AssertionError(f"{container_path} is not mounted from the repo")


def with_default(value: str) -> str:
    """What a compose ``${VAR:-default}`` becomes when VAR is unset."""
    match = re.fullmatch(r"\$\{\w+:-(.*)\}", value)
    return match[1] if match else value


def runner_environment(service: Any) -> dict[str, str]:
    """A runner container's environment: the image's ENV, then what compose sets."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    env = dict(re.findall(r"\b(HOST|PORT)=(\S+)", dockerfile))
    env.update({k: str(v) for k, v in service.get("environment", {}).items()})
    return env


def test_every_panel_query_names_only_metrics_the_runner_exposes() -> None:
    board, names = dashboard(), exposed()
    queries = [(p["title"], e) for p in panels(board) for e in exprs(p)]
    queries += [
        (f"${v['name']}", variable_query(v))
        for v in variables(board).values()
        if v["type"] == "query"
    ]
    for where, expr in queries:
        selected = re.sub(r"^label_values\(\s*([^,]*),.*\)$", r"\1", expr)
        for name in metric_names(selected):
            assert name in names, f"{where!r} reads {name}, which the runner does not expose"


def test_every_panel_reads_at_least_one_runner_metric() -> None:
    for panel in panels(dashboard()):
        read = {name for expr in exprs(panel) for name in metric_names(expr)}
        assert any(name.startswith("autorunner_") for name in read), panel["title"]


def test_every_query_is_narrowed_by_the_job_and_instance_variables() -> None:
    board = dashboard()
    assert {"job", "instance"} <= set(variables(board))
    for panel in panels(board):
        for expr in exprs(panel):
            for name, matchers in re.findall(r"\b(autorunner_\w+)(\{[^}]*\})?", expr):
                assert 'job=~"$job"' in matchers, f"{panel['title']!r}: {name} ignores $job"
                assert 'instance=~"$instance"' in matchers, f"{panel['title']!r}: {name}"


def test_the_dashboard_shows_every_required_subject_with_its_breakdown() -> None:
    queries = [e for p in panels(dashboard()) for e in exprs(p)]
    for metric, (labels, quantiles) in REQUIRED.items():
        reading = [e for e in queries if metric in metric_names(e)]
        assert reading, f"no panel reads {metric}"
        assert any(labels <= grouping(e) for e in reading), f"{metric} is not by {labels}"
        computed = {q for e in reading for q in re.findall(r"histogram_quantile\(\s*([\d.]+)", e)}
        assert quantiles <= computed, f"{metric}: no {quantiles - computed} quantile"


def test_panel_ids_are_unique_and_panels_fit_the_grid() -> None:
    board = dashboard()
    every = [*(p for p in board["panels"] if p["type"] == "row"), *panels(board)]
    ids = [p["id"] for p in every]
    assert len(ids) == len(set(ids)), "two panels share an id"
    for panel in every:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


def test_the_panels_read_the_provisioned_prometheus_through_the_datasource_variable() -> None:
    [source] = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")[
        "datasources"
    ]
    assert source["type"] == "prometheus"
    board = dashboard()
    chooser = variables(board)["datasource"]
    assert (chooser["type"], chooser["query"]) == ("datasource", "prometheus")
    assert chooser["current"]["value"] == source["uid"], "the variable defaults to another source"
    queried = [v for v in variables(board).values() if v["type"] == "query"]
    for part in [*panels(board), *queried, *(t for p in panels(board) for t in p["targets"])]:
        datasource = part["datasource"]
        assert datasource == DATASOURCE_VARIABLE or datasource["uid"] == source["uid"], part


def test_observability_services_start_only_with_their_profile() -> None:
    services = compose()["services"]
    profiled = {name for name, s in services.items() if s.get("profiles")}
    assert profiled == {"prometheus", "grafana"}
    for name in profiled:
        assert services[name]["profiles"] == [PROFILE]
    for name, service in services.items():
        needs = set(service.get("depends_on", []))
        if name not in profiled:
            assert not needs & profiled, f"plain `up` would start {needs & profiled} for {name}"
    header = (ROOT / "docker-compose.yml").read_text().split("\n\n")[0]
    assert f"--profile {PROFILE}" in header


def test_observability_services_mount_files_that_exist_in_the_repo() -> None:
    services = compose()["services"]
    for name in ("prometheus", "grafana"):
        assert bind_mounts(services[name]), f"{name} mounts nothing from the repo"
        for source in bind_mounts(services[name]):
            assert source.exists(), f"{name} mounts {source}, which is not in the repo"
            assert source.is_relative_to(DEPLOY), f"{name} mounts {source} from outside deploy/"
    prometheus, grafana = services["prometheus"], services["grafana"]
    [config] = [a.split("=", 1)[1] for a in prometheus["command"] if a.startswith("--config.file")]
    assert on_host(prometheus, config) == DEPLOY / "prometheus" / "compose.yml"
    provisioning = DEPLOY / "grafana" / "provisioning"
    assert in_container(grafana, provisioning) == "/etc/grafana/provisioning"
    [provider] = load_yaml(provisioning / "dashboards" / "autorunner.yml")["providers"]
    assert provider["type"] == "file"
    dashboards = on_host(grafana, provider["options"]["path"])
    assert (dashboards / "autorunner.json").is_file()


def test_grafana_keeps_anonymous_access_off_and_takes_its_password_from_the_environment() -> None:
    grafana = compose()["services"]["grafana"]
    env = {k: str(v) for k, v in grafana["environment"].items()}
    assert with_default(env.get("GF_AUTH_ANONYMOUS_ENABLED", "false")).lower() == "false"
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == "${GRAFANA_ADMIN_PASSWORD:-admin}"
    assert "3001:3000" in grafana["ports"]


def test_compose_prometheus_scrapes_every_runner_as_the_job_the_alerts_watch() -> None:
    config = load_yaml(DEPLOY / "prometheus" / "compose.yml")
    [job] = config["scrape_configs"]
    [kubernetes] = load_yaml(DEPLOY / "prometheus" / "scrape.yml")["scrape_configs"]
    assert job["job_name"] == kubernetes["job_name"]
    rules = load_yaml(DEPLOY / "prometheus" / "alerts.yml")["groups"][0]["rules"]
    [down] = [r for r in rules if r["alert"] == "AutorunnerDown"]
    assert f'up{{job="{job["job_name"]}"}}' in down["expr"]
    for rule_file in config["rule_files"]:
        assert (DEPLOY / "prometheus" / rule_file).is_file()
    assert job.get("metrics_path", "/metrics") == "/metrics"

    services = compose()["services"]
    ingress, worker = (runner_environment(services[n]) for n in ("ingress", "worker"))
    every_interface = "0.0.0.0"  # noqa: S104 - Prometheus reaches the runners from its own container
    assert ingress["HOST"] == worker["HOST"] == every_interface, "a runner listens only to itself"
    [static] = job["static_configs"]
    assert static["targets"] == [f"ingress:{ingress['PORT']}"]
    [dns] = job["dns_sd_configs"]
    assert (dns["names"], dns["type"], str(dns["port"])) == (["worker"], "A", worker["PORT"])
