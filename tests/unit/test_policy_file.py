"""The policy file: validation that names file, route and field; rules with safe templates; caps."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from autorunner import policy_file
from autorunner.deciders.rules import first_rule
from autorunner.envelope import build_envelope
from autorunner.errors import ConfigError
from autorunner.policy_file import load_policy, parse_policy
from tests.helpers import make_event

GOOD = """
[default]
objective = "Announce"
allowed_actions = ["notify"]

[[routes]]
name = "btc"
match = { symbol = "BTC" }
objective = "Tell the desk about BTC"
allowed_actions = ["notify", "exchange"]
constraints = { max_execution_seconds = 20, max_attempts = 3, risk_mode = "balanced", max_notional_usd = 500 }

context = ["query"]

[[routes.rules]]
when = { status = "stopped" }
actions = []

[[routes.rules]]
actions = [
  { step = "tell", kind = "notify", params = { text = "BTC: ${title} (${query_id}) $$5" } },
  { step = "buy", kind = "exchange", params = { symbol = "BTC/USDT", notional_usd = 100, tags = ["${symbol}"] } },
]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_policy(write(tmp_path, text))
    return str(info.value)


def test_a_valid_file_becomes_routes_with_constraints_and_rules(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, GOOD))
    [btc] = policy.routes
    assert (btc.name, btc.match, btc.allowed_actions) == (
        "btc",
        {"symbol": "BTC"},
        ("notify", "exchange"),
    )
    assert (
        btc.constraints.max_attempts,
        btc.constraints.risk_mode,
        btc.constraints.max_notional_usd,
    ) == (3, "balanced", 500)
    assert policy.default.objective == "Announce"
    assert btc.context == ("query",)
    assert policy.default.context == ("llm_session", "query")  # unset: everything
    assert policy.route_for(make_event(symbol="BTC")) is btc
    assert policy.route_for(make_event(symbol="ETH")) is policy.default


def test_rules_render_templates_safely_and_the_first_match_decides(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, GOOD))
    route = policy.routes[0]
    envelope = build_envelope(
        make_event(symbol="BTC", title="BTC > 100k", status="triggered"), route
    )
    decision = first_rule(envelope, route)
    assert [(a.step_id, a.kind) for a in decision.actions] == [
        ("tell", "notify"),
        ("buy", "exchange"),
    ]
    assert decision.actions[0].params["text"] == "BTC: BTC > 100k (q-1) $5"
    assert decision.actions[1].params["tags"] == ["BTC"]
    assert decision.rationale == "rule 2 of route 'btc'"
    stopped = build_envelope(make_event(symbol="BTC", status="stopped"), route)
    assert first_rule(stopped, route).actions == ()


def test_templates_cannot_reach_attributes_or_evaluate(tmp_path: Path) -> None:
    text = GOOD.replace("BTC: ${title}", "${title.__class__} ${__import__('os')}")
    assert "is not a valid template (write $$ for a literal $)" in error_of(tmp_path, text)
    braces = GOOD.replace("BTC: ${title}", "{0.__class__} {title}")
    route = load_policy(write(tmp_path, braces)).routes[0]
    envelope = build_envelope(make_event(symbol="BTC", title="T"), route)
    assert first_rule(envelope, route).actions[0].params["text"].startswith("{0.__class__} {title}")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("${title}", "${titel}"),
            "route 'btc': rules.2: actions.1.params.text: unknown placeholder ${titel} (use one of"
            " event_id, query_id, execution_id, event_type, status, title, body, symbol,"
            " occurred_at, route, objective)",
        ),
        (
            ('match = { symbol = "BTC" }', 'match = { symbl = "BTC" }'),
            "route 'btc': match: 'symbl' is not an event field (use one of event_id, query_id,",
        ),
        (
            ('when = { status = "stopped" }', 'when = { stauts = "stopped" }'),
            "route 'btc': rules.1: when: 'stauts' is not an event field",
        ),
        (
            ('match = { symbol = "BTC" }', 'match = { channel = "sse" }'),
            "route 'btc': match: 'channel' says how an event arrived, not what it says",
        ),
        (
            ('{ step = "buy", kind = "exchange"', '{ step = "tell", kind = "exchange"'),
            "route 'btc': rules.2: actions.2.step: step 'tell' is used twice in the rule",
        ),
        (
            ('{ step = "tell", kind = "notify"', '{ step = "tell", kind = "notfy"'),
            "route 'btc': rules.2: actions.1.kind: unknown action kind 'notfy' (kinds: exchange,",
        ),
        (
            ('allowed_actions = ["notify"]', 'allowed_actions = ["notfy"]'),
            "default route: allowed_actions: unknown action kind 'notfy' (kinds: exchange, http,"
            " notify, relay, telegram)",
        ),
    ],
)
def test_a_name_that_would_never_match_or_fill_is_a_load_error(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    assert change[0] in GOOD
    assert expected in error_of(tmp_path, GOOD.replace(*change))


def test_the_old_camelcase_names_still_work_with_a_warning_naming_the_new_ones(
    tmp_path: Path,
) -> None:
    old = GOOD.replace("${query_id}", "${queryId}").replace(
        'when = { status = "stopped" }', 'when = { eventType = "query.stopped" }'
    )
    policy = load_policy(write(tmp_path, old))
    route = policy.routes[0]
    assert route.rules[0].when == {"event_type": "query.stopped"}
    assert route.rules[1].actions[0].params["text"] == "BTC: ${title} (${query_id}) $$5"
    assert [w.split(": ", 1)[1] for w in policy.warnings] == [
        "route 'btc': when.eventType is now event_type",
        "route 'btc': placeholder ${queryId} is now ${query_id}",
    ]
    assert (
        policy.hash
        == load_policy(
            write(
                tmp_path,
                GOOD.replace(
                    'when = { status = "stopped" }', 'when = { event_type = "query.stopped" }'
                ),
            )
        ).hash
    )


def test_policy_hash_changes_with_the_file(tmp_path: Path) -> None:
    first = load_policy(write(tmp_path, GOOD)).hash
    second = load_policy(write(tmp_path, GOOD.replace("max_attempts = 3", "max_attempts = 4"))).hash
    assert first != second


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("max_attempts = 3", "max_attempts = 0"),
            "route 'btc': constraints.max_attempts: Input should be greater than or equal to 1",
        ),
        (
            ('risk_mode = "balanced"', 'risk_mode = "yolo"'),
            "route 'btc': constraints.risk_mode: Input should be 'conservative', 'balanced' or 'aggressive'",
        ),
        (
            ('objective = "Tell', 'objektive = "Tell'),
            "route 'btc': objektive: Extra inputs are not permitted",
        ),
        (
            ('allowed_actions = ["notify", "exchange"]', 'allowed_actions = ["notify"]'),
            "route 'btc': rule 2 proposes 'exchange', which allowed_actions does not list",
        ),
        (
            ('step = "tell"', 'step = "has space"'),
            "route 'btc': rules.2.actions.1.step: String should match pattern",
        ),
        (
            ('context = ["query"]', 'context = ["query", "news"]'),
            "route 'btc': context.2: Input should be 'query' or 'llm_session'",
        ),
        (
            ("[default]", '[default]\ndecider = "oracle"'),
            "default route: decider 'oracle' is not one of ['llm', 'rules']",
        ),
    ],
)
def test_mistakes_are_one_line_naming_file_route_and_field(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    message = error_of(tmp_path, GOOD.replace(*change))
    assert message.startswith(f"{tmp_path / 'policy.toml'}: {expected}")
    assert "\n" not in message


def test_duplicate_route_names_and_bad_toml_and_missing_files_are_refused(tmp_path: Path) -> None:
    twice = GOOD + '\n[[routes]]\nname = "btc"\n'
    assert error_of(tmp_path, twice).endswith("route name 'btc' is used twice")
    assert ": not valid TOML: " in error_of(tmp_path, "[routes\n")
    with pytest.raises(ConfigError, match="cannot read the policy file"):
        load_policy(tmp_path / "missing.toml")


def test_every_policy_example_in_the_readme_and_the_module_loads_as_written() -> None:
    """A new user copies these first: each must be valid as it stands (TOML's inline tables
    cannot span lines, which a multi-line ``approval = { ... }`` did)."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    examples = re.findall(r"```toml\n(.*?)```", readme, re.DOTALL)
    doc = policy_file.__doc__ or ""
    examples.append(textwrap.dedent(doc[doc.index("    [default]") : doc.index("Templates use")]))
    assert len(examples) >= 4
    for n, example in enumerate(examples):
        parse_policy(example, source=f"example {n}")
