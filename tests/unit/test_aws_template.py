"""The serverless deployment (``deploy/aws``) names handlers and settings that exist, and keeps
the promises the handlers rely on: per-record failure reports, and a visibility timeout that
outlasts the worker function."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import yaml

from autorunner.config import Settings

AWS = Path(__file__).parents[2] / "deploy" / "aws"
RESERVED = {"AWS_REGION"}  # set by Lambda itself


class _Tagged(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (``!Ref``, ``!GetAtt``…) read as plain mappings."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {suffix: value}


_Tagged.add_multi_constructor("!", _tag)


def template() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load((AWS / "template.yaml").read_text(), Loader=_Tagged)  # noqa: S506 - SafeLoader with tags read as data
    return loaded


def functions() -> dict[str, dict[str, Any]]:
    return {
        name: resource["Properties"]
        for name, resource in template()["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def test_every_function_runs_a_handler_of_autorunner_serverless() -> None:
    commands = {name: props["ImageConfig"]["Command"] for name, props in functions().items()}
    assert commands == {
        "Ingress": ["autorunner.serverless.ingress"],
        "Worker": ["autorunner.serverless.worker"],
        "Sweeper": ["autorunner.serverless.sweeper"],
    }
    for [handler] in commands.values():
        module, name = handler.rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), name))
    dockerfile = (AWS / "Dockerfile.lambda").read_text()
    [default] = re.findall(r'^CMD \["([\w.]+)"\]', dockerfile, flags=re.MULTILINE)
    assert [default] in commands.values()


def test_the_worker_reports_failures_per_record_and_outlives_no_visibility_timeout() -> None:
    worker = functions()["Worker"]
    [event] = worker["Events"].values()
    assert event["Type"] == "SQS"
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert event["Properties"]["Queue"] == {"GetAtt": "Jobs.Arn"}
    queue = template()["Resources"]["Jobs"]["Properties"]
    assert queue["VisibilityTimeout"] >= 6 * worker["Timeout"]
    # A heartbeat renews the lease well inside one job's timeout, within the function's.
    settings = Settings(**{k.lower(): v for k, v in worker["Environment"]["Variables"].items()})
    assert settings.job_timeout < worker["Timeout"]


def test_every_environment_variable_is_a_setting() -> None:
    known = {name.upper() for name in Settings.model_fields} | RESERVED
    variables = dict(template()["Globals"]["Function"]["Environment"]["Variables"])
    for props in functions().values():
        variables.update(props.get("Environment", {}).get("Variables", {}))
    assert set(variables) <= known
    assert variables["RUNNER_MODE"] == "cloud"
    assert variables["QUEUE_URL"] == {"Ref": "Jobs"}  # the queue's URL


SAM_POLICIES = {  # what AWS SAM's policy templates grant (its policy_templates.json)
    "SQSSendMessagePolicy": {"sqs:SendMessage*"},
    "SQSPollerPolicy": {
        "sqs:ChangeMessageVisibility",
        "sqs:ChangeMessageVisibilityBatch",
        "sqs:DeleteMessage",
        "sqs:DeleteMessageBatch",
        "sqs:GetQueueAttributes",
        "sqs:ReceiveMessage",
    },
}
NEEDS = {  # the SQS calls each handler's code makes (queue.sqs)
    "Ingress": {"sqs:SendMessage", "sqs:GetQueueAttributes"},
    "Worker": {
        "sqs:GetQueueAttributes",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:ChangeMessageVisibilityBatch",
    },
    "Sweeper": {"sqs:SendMessage", "sqs:GetQueueAttributes"},
}


def granted(policies: list[dict[str, Any]]) -> set[str]:
    actions: set[str] = set()
    for policy in policies:
        for name, body in policy.items():
            if name == "Statement":
                for statement in body:
                    assert statement["Effect"] == "Allow"
                    actions |= set(statement["Action"])
            else:
                actions |= SAM_POLICIES[name]
    return actions


def allows(actions: set[str], needed: str) -> bool:
    return any(
        needed == action or (action.endswith("*") and needed.startswith(action[:-1]))
        for action in actions
    )


def test_every_function_may_make_the_sqs_calls_its_handler_makes() -> None:
    for name, props in functions().items():
        actions = granted(props["Policies"])
        missing = {call for call in NEEDS[name] if not allows(actions, call)}
        assert not missing, f"{name} may not call {sorted(missing)}"
