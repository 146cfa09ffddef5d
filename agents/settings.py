"""The engine's one settings object, read from the environment.

`KAFKA_BOOTSTRAP_SERVERS` and `REDIS_URL` keep their conventional names (every Kafka/Redis
tool knows them); every other variable is `REBATE_<FIELD>`. Nothing else in `agents/` reads
the environment: build a `Settings()` once and pass it down.

The helpers turn the security fields into client arguments, so the consumer, producer, admin
client and Redis pool all connect with the same TLS/SASL/ACL configuration:

- `Settings.aiokafka_security_kwargs()` for `AIOKafkaConsumer/Producer/AdminClient(...)`
- `Settings.redis_client_kwargs()` for `redis.asyncio.Redis.from_url(url, **kwargs)`
- `settings_markdown()` renders the README's configuration reference.
"""

from __future__ import annotations

import ssl
import types
import typing
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings

__all__ = ["ENV_PREFIX", "Settings", "env_var_name", "settings_markdown"]

ENV_PREFIX = "REBATE_"

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

_TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
_SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})


# Config as class keywords, so `frozen=True` sits where readers look for it. Without the
# pydantic mypy plugin, mypy reads BaseSettings as a non-frozen dataclass_transform base and
# rejects the frozen subclass; `unused-ignore` keeps this line clean once the plugin is on.
class Settings(  # type: ignore[misc, unused-ignore]
    BaseSettings,
    frozen=True,
    env_prefix=ENV_PREFIX,
    # Tests and the embedded runtime build settings by field name; the environment uses the
    # alias (the two unprefixed names) or the prefixed name.
    validate_by_name=True,
    validate_by_alias=True,
    # `KAFKA_BOOTSTRAP_SERVERS=` (as compose files write it) means unset, not "".
    env_ignore_empty=True,
    extra="ignore",
):
    """Engine configuration; every field is documented for the generated README table."""

    # --- where the services are -------------------------------------------------------------
    kafka_bootstrap_servers: str | None = Field(
        default=None,
        validation_alias="KAFKA_BOOTSTRAP_SERVERS",
        description="Comma-separated `host:port` list of Kafka brokers. Unset: the engine "
        "starts its embedded broker (Tansu, in memory) on a free loopback port.",
    )
    redis_url: str | None = Field(
        default=None,
        validation_alias="REDIS_URL",
        description="Redis URL (`redis://` or `rediss://` for TLS, `/db` selects the "
        "database). Unset: the engine starts a private `redis-server` on a free loopback port.",
    )

    # --- topics -----------------------------------------------------------------------------
    topic_fills: str = Field(default="fills.v1", description="Input topic of fill.v1 events.")
    topic_credits: str = Field(
        default="credits.v1", description="Output topic of credit.v1 events."
    )
    topic_fills_dlq: str = Field(
        default="fills.v1.dlq", description="Dead-letter topic for fills that cannot be processed."
    )
    topic_wallet_commands: str = Field(
        default="wallet-commands.v1", description="Input topic of wallet commands."
    )
    topic_wallet_events: str = Field(
        default="wallet-events.v1",
        description="Output topic of wallet events (accepted/rejected, ...).",
    )
    topic_settlements: str = Field(
        default="settlements", description="Output topic of IB settlement events."
    )
    topic_crm_events: str = Field(
        default="crm-events.v1",
        description="Input topic of crm-event.v1 back-office events (one partition: one total "
        "order).",
    )
    topic_crm_events_dlq: str = Field(
        default="crm-events.v1.dlq",
        description="Dead-letter topic for back-office events that are malformed or contradict "
        "the rules.",
    )
    topic_partitions: int = Field(
        default=8,
        ge=1,
        description="Partitions of the topics the engine creates. Fixed for a topic's life: "
        "it decides which partition owns an account.",
    )
    topic_replication_factor: int = Field(
        default=1,
        ge=1,
        description="Replication factor of created topics (use 3 on a real cluster).",
    )
    consumer_group: str = Field(
        default="rebate-engine", description="Kafka consumer group id shared by all engine workers."
    )

    # --- Kafka security ---------------------------------------------------------------------
    kafka_security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT", description="Kafka security protocol."
    )
    kafka_sasl_mechanism: SaslMechanism = Field(
        default="SCRAM-SHA-512", description="SASL mechanism when the protocol is SASL_*."
    )
    kafka_sasl_username: str | None = Field(default=None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(default=None, description="SASL password.")
    kafka_ssl_cafile: Path | None = Field(
        default=None,
        description="CA bundle to verify the brokers (SSL/SASL_SSL); unset: system CAs.",
    )
    kafka_ssl_certfile: Path | None = Field(
        default=None, description="Client certificate (PEM) for mutual TLS."
    )
    kafka_ssl_keyfile: Path | None = Field(
        default=None, description="Private key (PEM) of the client certificate."
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        default=None, description="Password of the client private key, if it is encrypted."
    )

    # --- Redis security and timeouts --------------------------------------------------------
    redis_username: str | None = Field(default=None, description="Redis ACL user name.")
    redis_password: SecretStr | None = Field(
        default=None, description="Redis password (ACL user's, or `requirepass`)."
    )
    redis_ssl_cafile: Path | None = Field(
        default=None, description="CA bundle to verify Redis (needs a `rediss://` URL)."
    )
    redis_ssl_certfile: Path | None = Field(
        default=None, description="Client certificate (PEM) for Redis mutual TLS."
    )
    redis_ssl_keyfile: Path | None = Field(
        default=None, description="Private key (PEM) of the Redis client certificate."
    )
    redis_socket_timeout_s: float = Field(
        default=2.0,
        gt=0,
        description="Seconds a Redis command may take before it is treated as failed "
        "(then consumption pauses and retries with backoff).",
    )

    # --- consumer tuning --------------------------------------------------------------------
    session_timeout_s: float = Field(
        default=6.0,
        gt=0,
        description="Kafka consumer group session timeout, seconds. 6 is Kafka's minimum by "
        "default; Tansu holds a new member's first join for about half of it.",
    )
    heartbeat_interval_s: float = Field(
        default=1.0, gt=0, description="Kafka consumer heartbeat interval, seconds."
    )
    rebalance_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a member may take to rejoin during a rebalance (finishing "
        "in-flight fills first, which a slow Redis can stretch).",
    )
    fetch_max_wait_ms: int = Field(
        default=10,
        ge=0,
        description="Longest the broker holds a fetch that has no data, milliseconds (Faust "
        "hard-codes 1500). Tansu holds an empty fetch for about half of it even when data "
        "arrives, so it bounds latency there; Kafka answers as soon as data arrives, so on a "
        "real cluster 100-500 costs no latency and fewer idle requests.",
    )
    batch_max: int = Field(default=500, ge=1, description="Most fills an agent takes in one batch.")
    batch_timeout_s: float = Field(
        default=0.005, gt=0, description="Longest an agent waits to fill a batch, seconds."
    )

    # --- operations -------------------------------------------------------------------------
    web_host: str = Field(
        # All interfaces: Prometheus scrapes workers from other containers/hosts.
        default="0.0.0.0",
        description="Bind address of the HTTP server (/metrics, /healthz, /readyz).",
    )
    web_port: int = Field(
        default=6066,
        ge=1,
        le=65535,
        description="Port of the HTTP server (/metrics, /healthz, /readyz).",
    )
    log_level: LogLevel = Field(default="INFO", description="Log level of the engine.")
    attribution_depth_limit: int = Field(
        default=10, ge=1, description="Most IB levels walked up the attribution tree."
    )
    settlement_grace_s: float = Field(
        default=60.0,
        ge=0,
        description="Seconds after an IB payout period ends and its hold is over before its "
        "settlement (and tier bonus) is emitted; later credits go into an adjustment.",
    )
    settlement_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="Seconds between checks for IB payout periods to settle.",
    )

    correction_window_hours: int = Field(
        default=168,
        ge=1,
        description="Back-office changes effective longer ago than this are dead-lettered "
        "`too_late` (a person decides).",
    )
    park_hours: float = Field(
        default=72,
        gt=0,
        description="Hours a fill whose login is not attributed yet waits for its account; "
        "then it is dead-lettered `unattributed`.",
    )
    park_check_s: float = Field(
        default=1.0,
        gt=0,
        description="Seconds between checks for parked fills whose account has arrived or "
        "whose park_hours have run out.",
    )

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        # Fail at startup rather than connect with a weaker configuration than intended.
        if self.heartbeat_interval_s >= self.session_timeout_s:
            raise ValueError("heartbeat_interval_s must be below session_timeout_s")
        if self.kafka_security_protocol in _SASL_PROTOCOLS and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                f"{self.kafka_security_protocol} needs kafka_sasl_username and kafka_sasl_password"
            )
        kafka_tls_files = (self.kafka_ssl_cafile, self.kafka_ssl_certfile, self.kafka_ssl_keyfile)
        if any(kafka_tls_files) and self.kafka_security_protocol not in _TLS_PROTOCOLS:
            raise ValueError(
                "kafka_ssl_* files are set but kafka_security_protocol is "
                f"{self.kafka_security_protocol}; use SSL or SASL_SSL"
            )
        if bool(self.kafka_ssl_certfile) != bool(self.kafka_ssl_keyfile):
            raise ValueError("kafka_ssl_certfile and kafka_ssl_keyfile go together")
        redis_tls_files = (self.redis_ssl_cafile, self.redis_ssl_certfile, self.redis_ssl_keyfile)
        if any(redis_tls_files) and not self.redis_tls:
            raise ValueError("redis_ssl_* files need a rediss:// REDIS_URL")
        if bool(self.redis_ssl_certfile) != bool(self.redis_ssl_keyfile):
            raise ValueError("redis_ssl_certfile and redis_ssl_keyfile go together")
        return self

    # --- derived values and client arguments ------------------------------------------------
    @property
    def redis_tls(self) -> bool:
        """Whether Redis is reached over TLS (a `rediss://` URL)."""
        return self.redis_url is not None and urlsplit(self.redis_url).scheme == "rediss"

    @property
    def topics(self) -> dict[str, str]:
        """Logical name -> topic name of every topic the engine uses."""
        return {
            "fills": self.topic_fills,
            "credits": self.topic_credits,
            "fills_dlq": self.topic_fills_dlq,
            "wallet_commands": self.topic_wallet_commands,
            "wallet_events": self.topic_wallet_events,
            "settlements": self.topic_settlements,
            "crm_events": self.topic_crm_events,
            "crm_events_dlq": self.topic_crm_events_dlq,
        }

    def with_services(self, *, bootstrap_servers: str, redis_url: str) -> Settings:
        """A copy pointing at concrete services (e.g. the embedded runtime's ports)."""
        return self.model_copy(
            update={"kafka_bootstrap_servers": bootstrap_servers, "redis_url": redis_url}
        )

    def kafka_ssl_context(self) -> ssl.SSLContext | None:
        """TLS context for SSL/SASL_SSL (system CAs unless a CA file is set); else None."""
        if self.kafka_security_protocol not in _TLS_PROTOCOLS:
            return None
        context = ssl.create_default_context(
            cafile=str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile else None
        )
        if self.kafka_ssl_certfile and self.kafka_ssl_keyfile:
            context.load_cert_chain(
                certfile=str(self.kafka_ssl_certfile),
                keyfile=str(self.kafka_ssl_keyfile),
                password=_reveal(self.kafka_ssl_key_password),
            )
        return context

    def aiokafka_security_kwargs(self) -> dict[str, Any]:
        """Security arguments for any aiokafka client (consumer, producer, admin)."""
        kwargs: dict[str, Any] = {"security_protocol": self.kafka_security_protocol}
        context = self.kafka_ssl_context()
        if context is not None:
            kwargs["ssl_context"] = context
        if self.kafka_security_protocol in _SASL_PROTOCOLS:
            kwargs["sasl_mechanism"] = self.kafka_sasl_mechanism
            kwargs["sasl_plain_username"] = self.kafka_sasl_username
            kwargs["sasl_plain_password"] = _reveal(self.kafka_sasl_password)
        return kwargs

    def redis_client_kwargs(self) -> dict[str, Any]:
        """Arguments for `redis.asyncio.Redis.from_url(settings.redis_url, **kwargs)`."""
        kwargs: dict[str, Any] = {
            "socket_timeout": self.redis_socket_timeout_s,
            "socket_connect_timeout": self.redis_socket_timeout_s,
        }
        if self.redis_username is not None:
            kwargs["username"] = self.redis_username
        if self.redis_password is not None:
            kwargs["password"] = self.redis_password.get_secret_value()
        # TLS options are only valid on the SSL connection class that rediss:// selects.
        if self.redis_tls:
            kwargs["ssl_cert_reqs"] = "required"
            if self.redis_ssl_cafile:
                kwargs["ssl_ca_certs"] = str(self.redis_ssl_cafile)
            if self.redis_ssl_certfile and self.redis_ssl_keyfile:
                kwargs["ssl_certfile"] = str(self.redis_ssl_certfile)
                kwargs["ssl_keyfile"] = str(self.redis_ssl_keyfile)
        return kwargs


def _reveal(secret: SecretStr | None) -> str | None:
    return None if secret is None else secret.get_secret_value()


def env_var_name(field: str) -> str:
    """The environment variable that sets `Settings.<field>`."""
    alias = Settings.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else f"{ENV_PREFIX}{field.upper()}"


_TYPE_NAMES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    Path: "path",
    SecretStr: "secret",
}


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        optional = type(None) in args
        return " \\| ".join(names) + (", optional" if optional else "")
    return _TYPE_NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _default_text(value: Any) -> str:
    if value is None:
        return "unset"
    return f"`{value}`"


def settings_markdown() -> str:
    """Markdown table of every setting: environment variable, type, default, description."""
    rows = ["| variable | type | default | description |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        description = (field.description or "").replace("|", "\\|")
        rows.append(
            f"| `{env_var_name(name)}` | {_type_name(field.annotation)} "
            f"| {_default_text(field.default)} | {description} |"
        )
    return "\n".join(rows) + "\n"
