"""Settings: environment and .env, masked secrets, one-line errors, SQLite URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from autorunner.config import Settings, load_settings, queue_kind, sqlite_path
from autorunner.errors import ConfigError


def test_secrets_never_appear_in_repr_or_str() -> None:
    settings = Settings(auto_secret="top-secret-value", elfa_api_key="tok-123")
    for text in (repr(settings), str(settings), repr(settings.auto_secret)):
        assert "top-secret-value" not in text
        assert "tok-123" not in text


def test_env_file_in_the_working_directory_is_honoured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("AUTO_SECRET=from-dotenv\nPORT=4001\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AUTO_SECRET", raising=False)
    monkeypatch.delenv("PORT", raising=False)
    settings = load_settings()
    assert settings.port == 4001
    assert settings.auto_secret is not None
    assert settings.auto_secret.get_secret_value() == "from-dotenv"


def test_environment_wins_over_the_env_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("PORT=4001\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PORT", "4002")
    assert load_settings().port == 4002


def test_invalid_value_is_one_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_ATTEMPTS", "0")
    with pytest.raises(
        ConfigError, match=r"^invalid MAX_ATTEMPTS: Input should be greater than or equal to 1$"
    ):
        load_settings()


@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
def test_a_time_that_is_not_a_finite_number_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    # An infinite lease would never lapse, and a batched lease would store it as NULL.
    monkeypatch.setenv("LEASE_SECONDS", value)
    with pytest.raises(
        ConfigError, match=r"^invalid LEASE_SECONDS: Input should be a finite number$"
    ):
        load_settings()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"QUEUE_URL": "amqp://localhost"},
            "invalid QUEUE_URL: use sqlite:///PATH or memory:// (local), or redis://HOST:PORT/DB,"
            " nats://HOST:PORT, sqs://NAME or an SQS queue's https URL (cloud)",
        ),
        (
            {"QUEUE_URL": "https://example.com/not/a/queue"},
            "invalid QUEUE_URL: use sqlite:///PATH or memory:// (local), or redis://HOST:PORT/DB,"
            " nats://HOST:PORT, sqs://NAME or an SQS queue's https URL (cloud)",
        ),
        (
            {"QUEUE_URL": "redis://localhost"},
            "invalid RUNNER_MODE: Redis, NATS, SQS and PostgreSQL URLs need RUNNER_MODE=cloud"
            " (local mode is SQLite)",
        ),
        (
            {"QUEUE_URL": "sqs://jobs"},
            "invalid RUNNER_MODE: Redis, NATS, SQS and PostgreSQL URLs need RUNNER_MODE=cloud"
            " (local mode is SQLite)",
        ),
        (
            {"RUNNER_MODE": "cloud"},
            "invalid QUEUE_URL: cloud mode needs redis://HOST:PORT/DB, nats://HOST:PORT,"
            " or an SQS queue (sqs://NAME or its https URL)",
        ),
        (
            {"RUNNER_MODE": "cloud", "QUEUE_URL": "redis://r:6379/0"},
            "invalid DATABASE_URL: cloud mode needs postgresql://USER@HOST:PORT/DB",
        ),
    ],
)
def test_urls_that_do_not_fit_the_mode_are_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value) == message


def test_cloud_mode_takes_redis_and_postgresql_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNNER_MODE", "cloud")
    monkeypatch.setenv("QUEUE_URL", "redis://r:6379/0")
    monkeypatch.setenv("DATABASE_URL", "postgresql://runner@pg:5432/autorunner")
    settings = load_settings()
    assert settings.store_url == "postgresql://runner@pg:5432/autorunner"


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("redis://r:6379/0", "redis"),
        ("nats://n:4222", "nats"),
        ("tls://n:4222", "nats"),
        ("sqs://jobs", "sqs"),
        ("https://sqs.eu-west-1.amazonaws.com/123456789012/jobs", "sqs"),
        ("https://sqs.eu-west-1.amazonaws.com/123456789012/jobs.fifo", "sqs"),
        ("http://127.0.0.1:4566/000000000000/jobs", "sqs"),
        ("https://sqs.eu-west-1.amazonaws.com/jobs", None),
        ("sqs://", None),
    ],
)
def test_queue_urls_name_their_backend(url: str, kind: str | None) -> None:
    assert queue_kind(url) == kind


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///autorunner.db", "autorunner.db"),
        ("sqlite:////var/lib/a.db", "/var/lib/a.db"),
        ("sqlite:///data/x.db", "data/x.db"),
    ],
)
def test_sqlite_urls_map_to_paths(url: str, path: str) -> None:
    assert sqlite_path(url) == path


def test_sqlite_url_without_a_path_is_refused() -> None:
    with pytest.raises(ConfigError, match="no file path"):
        sqlite_path("sqlite:///")


def test_database_url_defaults_to_the_queue_url() -> None:
    assert Settings(queue_url="sqlite:///q.db").store_url == "sqlite:///q.db"
    assert (
        Settings(queue_url="sqlite:///q.db", database_url="sqlite:///s.db").store_url
        == "sqlite:///s.db"
    )


def test_http_notional_names_each_endpoints_amount_path_or_none() -> None:
    settings = Settings(
        http_endpoints="orders=http://a/o,tickets=http://a/t,plain=http://a/p",
        http_notional="orders=order.usd,tickets=-",
    )
    assert settings.notional_paths == {"orders": "order.usd", "tickets": None}


def test_http_notional_for_an_endpoint_that_does_not_exist_is_one_line() -> None:
    settings = Settings(http_endpoints="orders=http://a/o", http_notional="ordres=usd")
    with pytest.raises(ConfigError, match=r"^invalid HTTP_NOTIONAL: 'ordres' is not an endpoint"):
        _ = settings.notional_paths


def test_the_readme_documents_every_setting_in_its_configuration_table() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    rows = "\n".join(line for line in readme.splitlines() if line.startswith("|"))
    missing = [name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in rows]
    assert missing == []


@pytest.mark.parametrize("secret", ["", "short", "has spaces in it!!", "x" * 257])
def test_a_telegram_webhook_secret_anyone_could_guess_is_refused(
    monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", secret)
    with pytest.raises(ConfigError, match=r"^invalid TELEGRAM_WEBHOOK_SECRET: .*16 to 256"):
        load_settings()
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", "a-good_secret-0123")
    assert load_settings().telegram_webhook_secret is not None
