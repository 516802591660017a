"""Settings, read once from the environment and a ``.env`` file; secrets are masked in every repr.

Only the composition root (``app.py``) and the CLI call ``load_settings``; nothing else reads the
environment.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from autorunner.errors import ConfigError
from autorunner.logs import LogFormat
from autorunner.signatures import Secrets, standard_key

LOCAL_SCHEMES = ("sqlite://", "memory://")
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
NATS_SCHEMES = ("nats://", "tls://")
_SQS_PATH = re.compile(r"^/\d{12}/[A-Za-z0-9_-]{1,80}(\.fifo)?$")
QueueKind = Literal["sqlite", "memory", "redis", "nats", "sqs"]


def queue_kind(url: str) -> QueueKind | None:
    """Which queue ``QUEUE_URL`` names; None if none. SQS is ``sqs://NAME`` or a queue URL
    (``https://sqs.REGION.amazonaws.com/ACCOUNT/NAME``, or the same path on another endpoint)."""
    schemes: list[tuple[tuple[str, ...], QueueKind]] = [
        (("sqlite://",), "sqlite"),
        (("memory://",), "memory"),
        (REDIS_SCHEMES, "redis"),
        (NATS_SCHEMES, "nats"),
    ]
    for prefixes, kind in schemes:
        if url.startswith(prefixes):
            return kind
    if url.startswith("sqs://") and len(url) > len("sqs://"):
        return "sqs"
    if url.startswith(("https://", "http://")) and _SQS_PATH.match(urlsplit(url).path):
        return "sqs"
    return None


class Settings(BaseSettings):
    """Every knob of the runner; the environment variable is the field name in upper case."""

    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", frozen=True, allow_inf_nan=False
    )

    runner_mode: Literal["local", "cloud"] = "local"
    runner_policy: str | None = Field(
        default=None, description="policy file (TOML); built-in default if unset"
    )
    queue_url: str = "sqlite:///autorunner.db"
    queue_name: str = Field(
        default="autorunner",
        min_length=1,
        description="Redis key prefix, or JetStream stream name, of the queue (cloud)",
    )
    aws_region: str | None = Field(
        default=None, description="the SQS queue's region, for QUEUE_URL=sqs://NAME"
    )
    database_url: str | None = Field(
        default=None, description="defaults to QUEUE_URL in local mode"
    )
    host: str = "127.0.0.1"
    port: int = Field(default=3000, ge=0, le=65535)

    auto_secret: SecretStr | None = Field(default=None, description="comma-separated for rotation")
    standard_webhooks_secret: SecretStr | None = Field(
        default=None,
        description="whsec_ secrets for Standard Webhooks deliveries (refused without one)",
    )
    auto_allow_unsigned: bool = False
    auto_signature_tolerance: float = Field(default=300.0, gt=0)
    max_body_bytes: int = Field(default=64 * 1024, gt=0)
    http_header_timeout: float = Field(
        default=10.0, gt=0, description="seconds a client may take to send its headers"
    )
    http_body_idle_timeout: float = Field(
        default=10.0, gt=0, description="longest pause between a body's bytes"
    )
    http_body_timeout: float = Field(
        default=30.0, gt=0, description="seconds a client may take to send a whole body"
    )
    http_max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    http_max_headers: int = Field(default=100, ge=10)
    http_max_connections: int = Field(
        default=1000, ge=1, description="open at once; lowered to fit the descriptor limit"
    )
    store_timeout: float = Field(default=5.0, gt=0)
    startup_wait: float = Field(
        default=60.0, ge=0, description="how long to wait for the store and queue at start"
    )

    worker_concurrency: int = Field(default=32, ge=1)
    workers_enabled: bool = True
    job_timeout: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=5, ge=1)
    retry_base_delay: float = Field(default=1.0, ge=0)
    retry_max_delay: float = Field(default=300.0, ge=0)
    lease_seconds: float = Field(default=30.0, gt=0)
    shutdown_grace: float = Field(default=10.0, ge=0)
    sweep_interval: float = Field(default=10.0, gt=0)
    sweep_after: float = Field(default=30.0, ge=0)
    tally_interval: float = Field(
        default=10.0, gt=0, description="how often a process adds its counts to the overview's"
    )
    lag_threshold: float = Field(default=60.0, gt=0)
    pause_check_seconds: float = Field(
        default=1.0, ge=0, description="how stale a read of the kill switch may be"
    )

    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    sqlite_busy_timeout_ms: int = Field(default=5000, ge=0)

    elfa_base_url: str = "https://api.elfa.ai/v2/auto"
    elfa_api_key: SecretStr | None = None
    elfa_agent_secret: SecretStr | None = Field(
        default=None, description="x402 mode when no API key"
    )
    elfa_hmac_secret: SecretStr | None = None
    elfa_payment_header: SecretStr | None = None
    elfa_requests_per_minute: float = Field(default=60.0, gt=0)
    stream_queries: str = Field(
        default="",
        description="query ids to subscribe to, comma-separated; * for the account stream",
    )
    sse_keepalive_seconds: float = Field(default=15.0, gt=0)
    sse_silence_factor: float = Field(default=3.0, ge=1)
    context_cache_seconds: float = Field(default=5.0, ge=0)
    reconcile_interval: float = Field(default=300.0, gt=0)

    http_endpoints: str = Field(default="", description="name=url, comma-separated")
    http_notional: str = Field(
        default="",
        description="name=path of each endpoint's USD amount in the body (- for none), comma-separated",
    )
    http_adapter_secret: SecretStr | None = None
    http_adapter_timeout: float = Field(default=10.0, gt=0)
    relay_targets: str = Field(default="", description="name=url, comma-separated")
    relay_secret: SecretStr | None = None
    exchange_enabled: bool = Field(
        default=False, description="offer the exchange adapter (paper unless live)"
    )
    exchange_id: str = "binance"
    exchange_live: bool = False
    exchange_api_key: SecretStr | None = None
    exchange_secret: SecretStr | None = None
    exchange_max_notional_usd: float = Field(default=1000.0, ge=0)
    telegram_bot_token: SecretStr | None = None
    telegram_chats: str = Field(default="", description="name=chat_id, comma-separated")
    telegram_api_url: str = "https://api.telegram.org"
    telegram_parse_mode: Literal["plain", "HTML", "MarkdownV2"] = "plain"
    telegram_delivery: Literal["at_most_once", "at_least_once"] = "at_most_once"
    telegram_chat_interval: float = Field(
        default=1.0, ge=0, description="seconds between sends to one chat"
    )
    telegram_webhook_secret: SecretStr | None = Field(
        default=None,
        description="take approvals' answers at POST /telegram/updates (Telegram's secret token)"
        " instead of getUpdates polling",
    )
    approvals_poll_seconds: float = Field(default=25.0, gt=0, le=50)

    llm_model: str | None = Field(default=None, description="model name; enables the llm decider")
    llm_base_url: str | None = Field(
        default=None, description="OpenAI-compatible endpoint (default: OpenAI)"
    )
    llm_api_key: SecretStr | None = None
    llm_temperature: float = Field(default=0.0, ge=0, le=2)
    llm_max_tokens: int = Field(default=800, ge=1)
    llm_request_limit: int = Field(default=3, ge=1)
    llm_total_tokens_limit: int = Field(default=20_000, ge=1)
    llm_output_retries: int = Field(
        default=1, ge=0, le=10, description="invalid structured outputs retried before a denial"
    )
    llm_prices: str = Field(
        default="", description="model=input/output USD per million tokens, comma-separated"
    )
    llm_budget_day_usd: float | None = Field(default=None, gt=0)
    llm_budget_day_tokens: int | None = Field(default=None, gt=0)

    alert_telegram_chat: str | None = Field(
        default=None, description="chat id the notifier's alerts go to (with TELEGRAM_BOT_TOKEN)"
    )
    alert_webhook_url: str | None = Field(
        default=None,
        description="URL the notifier POSTs alerts to, signed with ALERT_WEBHOOK_SECRET",
    )
    alert_webhook_secret: SecretStr | None = Field(
        default=None, description="whsec_ secret signing alert webhooks (Standard Webhooks)"
    )
    alert_interval: float = Field(default=15.0, gt=0, description="seconds between checks")
    alert_for: float = Field(
        default=60.0, ge=0, description="how long a stream or backend outage lasts before it fires"
    )
    alert_window: float = Field(
        default=600.0, gt=0, description="look-back for dead-letter growth and failing adapters"
    )

    console: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="the operator console at /console: auto = on a loopback bind or with a token",
    )
    console_token: SecretStr | None = Field(default=None, description="the operators' login")
    console_readonly_token: SecretStr | None = Field(
        default=None, description="a login that can look but change nothing"
    )
    console_secure_cookie: bool = Field(
        default=False, description="mark the session cookie Secure (set it behind TLS)"
    )

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: LogFormat = "auto"

    @field_validator("queue_url")
    @classmethod
    def _known_queue(cls, value: str) -> str:
        if queue_kind(value) is None:
            raise ValueError(
                "use sqlite:///PATH or memory:// (local), or redis://HOST:PORT/DB,"
                " nats://HOST:PORT, sqs://NAME or an SQS queue's https URL (cloud)"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(LOCAL_SCHEMES + POSTGRES_SCHEMES):
            raise ValueError(
                "use sqlite:///PATH or memory:// (local), or postgresql://USER@HOST:PORT/DB (cloud)"
            )
        return value

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _strong_webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        # Telegram allows 1-256 of [A-Za-z0-9_-]; fewer than 16 could be guessed, and an
        # empty one would let any request through.
        if value is not None and not re.fullmatch(
            r"[A-Za-z0-9_-]{16,256}", value.get_secret_value()
        ):
            raise ValueError("16 to 256 characters of A-Z, a-z, 0-9, _ and - (Telegram's alphabet)")
        return value

    @field_validator("console_token", "console_readonly_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("a console token needs 16 characters at least")
        return value

    @field_validator("relay_secret", "alert_webhook_secret")
    @classmethod
    def _whsec_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            standard_key(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _secrets_bound_to_one_scheme(self) -> Settings:
        try:
            self.webhook_secrets  # noqa: B018 - parsing is the check
        except ValueError as exc:
            raise ValueError(f"STANDARD_WEBHOOKS_SECRET: {exc}") from exc
        return self

    @model_validator(mode="after")
    def _alert_targets_complete(self) -> Settings:
        if self.alert_telegram_chat and self.telegram_bot_token is None:
            raise ValueError("ALERT_TELEGRAM_CHAT: alerts to Telegram need TELEGRAM_BOT_TOKEN")
        if self.alert_webhook_url and not self.alert_webhook_url.startswith(
            ("http://", "https://")
        ):
            raise ValueError("ALERT_WEBHOOK_URL: an http:// or https:// URL")
        if self.alert_webhook_url and self.alert_webhook_secret is None:
            raise ValueError(
                "ALERT_WEBHOOK_URL: alert webhooks are signed: set ALERT_WEBHOOK_SECRET"
            )
        return self

    @model_validator(mode="after")
    def _mode_matches_urls(self) -> Settings:
        if self.runner_mode == "cloud":
            if queue_kind(self.queue_url) not in ("redis", "nats", "sqs"):
                raise ValueError(
                    "QUEUE_URL: cloud mode needs redis://HOST:PORT/DB, nats://HOST:PORT,"
                    " or an SQS queue (sqs://NAME or its https URL)"
                )
            if self.database_url is None or not self.database_url.startswith(POSTGRES_SCHEMES):
                raise ValueError("DATABASE_URL: cloud mode needs postgresql://USER@HOST:PORT/DB")
        elif queue_kind(self.queue_url) in ("redis", "nats", "sqs") or (
            self.database_url or ""
        ).startswith(POSTGRES_SCHEMES):
            raise ValueError(
                "RUNNER_MODE: Redis, NATS, SQS and PostgreSQL URLs need RUNNER_MODE=cloud"
                " (local mode is SQLite)"
            )
        return self

    @property
    def webhook_secrets(self) -> Secrets:
        """Every configured webhook secret, each bound to its scheme."""
        return Secrets.parse(
            self.auto_secret.get_secret_value() if self.auto_secret else None,
            self.standard_webhooks_secret.get_secret_value()
            if self.standard_webhooks_secret
            else None,
        )

    @property
    def store_url(self) -> str:
        return self.database_url or self.queue_url

    @property
    def endpoints(self) -> dict[str, str]:
        return _pairs(self.http_endpoints, "HTTP_ENDPOINTS")

    @property
    def notional_paths(self) -> dict[str, str | None]:
        """Where each ``http`` endpoint's amount lives in its body; ``None``: it moves no money."""
        paths = _pairs(self.http_notional, "HTTP_NOTIONAL")
        unknown = sorted(set(paths) - set(self.endpoints))
        if unknown:
            raise ConfigError(
                f"invalid HTTP_NOTIONAL: {', '.join(map(repr, unknown))} is not an endpoint of HTTP_ENDPOINTS"
            )
        return {name: None if path == "-" else path for name, path in paths.items()}

    @property
    def relays(self) -> dict[str, str]:
        return _pairs(self.relay_targets, "RELAY_TARGETS")

    @property
    def chats(self) -> dict[str, str]:
        return _pairs(self.telegram_chats, "TELEGRAM_CHATS")

    @property
    def streams(self) -> list[str | None]:
        """Configured subscriptions; ``None`` stands for the account stream."""
        ids = [part.strip() for part in self.stream_queries.split(",") if part.strip()]
        return [None if part == "*" else part for part in ids]


def load_settings(**overrides: object) -> Settings:
    """Read settings; a bad value becomes one ``ConfigError`` line naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        if not first["loc"]:  # a check across variables names its variable in the message
            raise ConfigError(f"invalid {message}") from exc
        raise ConfigError(f"invalid {str(first['loc'][0]).upper()}: {message}") from exc


def sqlite_path(url: str) -> str:
    """``sqlite:///relative.db``, ``sqlite:////abs/path.db`` → a filesystem path."""
    path = url.removeprefix("sqlite://")
    if (path.startswith("/") and not path.startswith("//")) or path.startswith("//"):
        path = path[1:]
    if not path:
        raise ConfigError(f"invalid QUEUE_URL/DATABASE_URL {url!r}: no file path")
    return path


def _pairs(text: str, variable: str) -> dict[str, str]:
    """``name=value,name=value`` as a mapping; a malformed entry is a ``ConfigError``."""
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConfigError(f"invalid {variable}: {item!r} is not name=value")
        pairs[name.strip()] = value.strip()
    return pairs


def console_enabled(settings: Settings, *, host: str) -> bool:
    """``CONSOLE=auto``: on for a loopback bind, or anywhere once a token is set. ``on`` on a
    bind beyond loopback without ``CONSOLE_TOKEN`` is a ``ConfigError``: the only way in would
    be a token made at start and written to the logs. (Here, not in ``autorunner.console``: a
    process that serves no console never imports it.)"""
    loopback = host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")
    if settings.console == "off":
        return False
    if settings.console == "on" and not loopback and settings.console_token is None:
        raise ConfigError(f"CONSOLE=on on {host} (not loopback) needs CONSOLE_TOKEN")
    return settings.console == "on" or loopback or settings.console_token is not None
