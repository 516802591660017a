"""Settings: environment and .env, masked secrets, one-line errors, SQLite URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from autorunner.config import Settings, load_settings, sqlite_path
from autorunner.errors import ConfigError


def test_secrets_never_appear_in_repr_or_str() -> None:
    settings = Settings(auto_secret="top-secret-value", admin_token="tok-123")
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


def test_unsupported_queue_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUE_URL", "redis://localhost")
    with pytest.raises(ConfigError, match="QUEUE_URL"):
        load_settings()


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
