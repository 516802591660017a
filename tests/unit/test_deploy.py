"""The deployment files agree with each other: the alert rules match the scrape job the
manifests imply, and every metric an alert or the autoscaler reads is one the runner exports."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from autorunner.metrics import Metrics

DEPLOY = Path(__file__).parents[2] / "deploy"


def load(*parts: str, kind: str | None = None) -> Any:
    """A YAML file, or its document of ``kind`` (a manifest holds several)."""
    documents = list(yaml.safe_load_all(DEPLOY.joinpath(*parts).read_text()))
    if kind is None:
        [document] = documents
        return document
    return next(d for d in documents if d.get("kind") == kind)


def test_the_down_alert_matches_the_scrape_job_that_keeps_the_manifests_pods() -> None:
    [job] = load("prometheus", "scrape.yml")["scrape_configs"]
    rules = {r["alert"]: r for r in load("prometheus", "alerts.yml")["groups"][0]["rules"]}
    assert f'up{{job="{job["job_name"]}"}}' in rules["AutorunnerDown"]["expr"]
    [keep] = [
        r
        for r in job["relabel_configs"]
        if r["source_labels"] == ["__meta_kubernetes_pod_label_app"]
    ]
    for manifest in ("ingress.yaml", "worker.yaml"):
        pod = load("k8s", manifest, kind="Deployment")["spec"]["template"]["metadata"]
        assert re.fullmatch(keep["regex"], pod["labels"]["app"])
        assert pod["annotations"]["prometheus.io/scrape"] == "true"


def test_every_metric_the_alerts_read_is_exported() -> None:
    exported = {name for metric in Metrics().registry.collect() for name in _names(metric)}
    for rule in load("prometheus", "alerts.yml")["groups"][0]["rules"]:
        for name in re.findall(r"\b(autorunner_[a-z_]+)", rule["expr"]):
            assert name in exported, f"{rule['alert']} reads {name}, which nothing exports"


def _names(metric: Any) -> set[str]:
    base = metric.name
    return {base, f"{base}_total", f"{base}_bucket", f"{base}_count", f"{base}_sum"}
