"""One settings object for the API, the worker, the run command and the CLI.

Every value comes from the environment (or `.env`); see the configuration table in README.md.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationInfo, field_serializer, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from domain.models import BankHolidaysRule, CalendarRules, Rung
from domain.policy import (
    BASELINE,
    CHOICE_FIELDS,
    BoardToBoardTiming,
    BuddyPackageAgreedBy,
    CapabilityReview,
    EntryRule,
    Policy,
    SecretaryOfStateLetter,
)

LOCAL_SECRET = "local-development-secret-do-not-use-in-production"
MIN_SECRET_BYTES = 32  # HS256 keys at least as long as the hash (RFC 7518 3.2)
LOOPBACK = ("127.0.0.1", "localhost", "::1")
# The audit chain's key when developing: public, so a chain keyed with it proves nothing (docs/security.md).
LOCAL_AUDIT_KEY = "local-development-audit-key-do-not-use-in-production"

DEFAULT_LADDER = [
    {"name": "reminder", "offset_days": -7, "notify": ["responsible"]},
    {"name": "breach", "offset_days": 0, "notify": ["responsible", "improvement_director"]},
    {"name": "dd_escalation", "offset_days": 7, "notify": ["regulator_dd"]},
    {"name": "executive_escalation", "offset_days": 21, "notify": ["regulator_executive"]},
]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    environment: str = Field("local", description="local or production")
    data_dir: Path = Field(Path(".data"), description="where embedded Temporal and PostgreSQL keep data")

    temporal_address: str | None = Field(None, description="host:port of Temporal; unset = embedded dev server")
    temporal_namespace: str = "default"
    temporal_task_queue: str = "special-measures"
    temporal_port: int = 7233
    temporal_ui_port: int = 8233
    temporal_ui_url: str | None = Field(None, description="public URL of the Temporal Web UI")

    # The URLs may carry a password: left out of repr, and masked in a dump (`_mask_password`).
    database_url: str | None = Field(None, repr=False, description="PostgreSQL URL; unset = embedded pgserver")
    database_schema: str = Field("public", description="schema holding the service's tables")
    database_migration_url: str | None = Field(None, repr=False, description="PostgreSQL URL of the owner login that runs "
                                               "the migrations; unset = DATABASE_URL")
    database_service_role: str = Field("special_measures_service", pattern=r"^[a-z_][a-z0-9_]{0,62}$",
                                       description="role the API, worker and tools act as: may only read and "
                                       "append the audit log (created by the migrations)")

    audit_hmac_key: SecretStr = Field(LOCAL_AUDIT_KEY, validate_default=True, description="key of the audit "
                                      "chain's HMAC-SHA256 and of its checkpoints; never stored in the database")
    audit_checkpoint_dir: Path | None = Field(None, description="where signed checkpoints of each audit chain's "
                                              "head are written; unset = DATA_DIR/audit-checkpoints")
    audit_checkpoint_every_seconds: float = Field(86400, ge=0, description="how often the worker writes "
                                                  "checkpoints; 0 = never (use `regime audit-checkpoint`)")
    rate_limit: str = Field("30000/minute", description="requests per user (limits notation, e.g. '100/second;"
                            "5000/hour'); over it: 429 with Retry-After")

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    public_url: str | None = None

    auth_jwt_secret: SecretStr = Field(LOCAL_SECRET, validate_default=True, description="HS256 key of local "
                                       "tokens; read with .get_secret_value() only where a token is signed "
                                       "or verified")
    auth_jwks_url: str | None = None
    auth_issuer: str = "special-measures-local"
    auth_audience: str = "special-measures"
    auth_jwks_cache_seconds: float = Field(300, gt=0, description="how long the identity provider's keys are "
                                           "trusted before they are fetched again")
    auth_jwks_refresh_cooldown_seconds: float = Field(30, ge=0, description="at most one refetch of the keys "
                                                      "for an unknown key id in this many seconds")
    auth_max_token_lifetime_seconds: int = Field(12 * 3600, gt=0, description="longest exp - iat accepted")
    auth_clock_leeway_seconds: int = Field(30, ge=0, le=300, description="clock skew allowed on exp and iat")
    auth_person_claim: str | None = Field(None, description="token claim naming the person behind an account; "
                                                            "separation of duties then compares people")

    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1024, description="largest request body accepted, in "
                                "bytes; larger ones are refused with 413 before they are read")
    temporal_max_message_bytes: int = Field(2_000_000, ge=1024, le=4 * 1024 * 1024, description="largest "
                                            "encoded message the API sends to Temporal (an update, signal or "
                                            "workflow input); Temporal refuses payloads over 2 MiB")
    temporal_update_timeout_seconds: float = Field(30, gt=0, le=600, description="how long a request waits "
                                                   "for the workflow to take and answer an update")

    # NoDecode: the JSON is parsed by `_ladder_from_json` below, the same way from the environment, `.env` or
    # a keyword argument, so bad input gets one clear message naming the variable.
    escalation_ladder: Annotated[list[Rung], NoDecode] = Field(
        default_factory=lambda: [Rung.model_validate(r) for r in DEFAULT_LADDER],
        description="JSON list of rungs {name, offset_days, notify}")
    due_soon_days: int = 7
    idempotency_key_ttl_hours: float = Field(24, gt=0, le=24 * 30, description="how long an Idempotency-Key "
                                             "is remembered after its first use; then it and its answer are "
                                             "deleted and the key may be used again")

    worker_metrics_address: str | None = Field(None, description="host:port where the worker serves the Temporal "
                                                                 "SDK's Prometheus metrics (also its liveness probe)")
    worker_graceful_shutdown_seconds: int = Field(30, ge=0, le=3600, description="on SIGTERM or SIGINT, how long "
                                                  "running activities may take to finish")
    worker_max_cached_workflows: int = Field(1000, ge=0, description="workflows the worker keeps in memory between "
                                             "tasks (the SDK's default); 0 replays every task from history")
    log_format: Literal["json", "console"] = Field("json", description="json: one JSON object per log line; "
                                                  "console: aligned lines for people (logs.py)")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="the least severe level logged (any case)")
    # The regime's policy where its sources disagree (domain/policy.py, docs/regime.md): recorded in each regime
    # when it is placed, so a change here applies to regimes placed afterwards, never to running ones.
    policy_version: str = Field(BASELINE.version, min_length=1, max_length=40, description="name of the set of "
                                "POLICY_* choices below; give a new one whenever a choice changes")
    policy_secretary_of_state_letter: SecretaryOfStateLetter = BASELINE.secretary_of_state_letter
    policy_extension_guidance_months: int = Field(BASELINE.extension_guidance_months, ge=1, le=24)
    policy_capability_review: CapabilityReview = BASELINE.capability_review
    policy_buddy_package_agreed_by: BuddyPackageAgreedBy = BASELINE.buddy_package_agreed_by
    policy_board_to_board_timing: BoardToBoardTiming = BASELINE.board_to_board_timing
    policy_entry_rule: EntryRule = BASELINE.entry_rule

    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "special-measures@localhost"

    # Service defaults of the regime's calendar where the seeds give no rule (domain.models.CalendarRules,
    # docs/regime.md): recorded in each regime when it is placed, like the policy.
    # The cost of the interventions (issue 16 item 2): the improvement director's time is costed at this day rate
    # when recorded (each record keeps the rate it was costed at).
    director_day_rate_pence: int = Field(
        90_000, ge=0, le=10_000_000,
        description="the improvement director's day rate in pence, for the cost of the interventions (service "
                    "default: no seed gives one)")
    funding_usual_max_pence: int = Field(
        50_000_000, ge=1, le=10_000_000_000,
        description="the usual maximum ceiling of a funding agreement in pence (previous trusts got up to about "
                    "£500,000, seed 004); a higher ceiling needs a reason; recorded in each regime when placed")
    first_return_lead_days: int = Field(
        CalendarRules().first_return_lead_days, ge=1, le=28,
        description="the first monthly return is due on the first 3rd Monday at least this many days after "
                    "entry or go-live")
    bank_holidays: BankHolidaysRule = Field(
        CalendarRules().bank_holidays,
        description="next_working_day: a deadline on an England and Wales bank holiday moves to the next working "
                    "day; stay: it stays")

    @field_validator("escalation_ladder", mode="before")
    @classmethod
    def _ladder_from_json(cls, v: Any) -> Any:
        if isinstance(v, bytes | bytearray):
            v = v.decode()
        if isinstance(v, str):
            try:
                v = json.loads(v)
            except json.JSONDecodeError as e:
                raise ValueError(f"ESCALATION_LADDER is not JSON ({e}); give a JSON list of rungs such as "
                                 f"{json.dumps(DEFAULT_LADDER[:1])}") from None
        if not isinstance(v, list) or not v:
            raise ValueError("ESCALATION_LADDER must be a non-empty JSON list of rungs, each "
                             '{"name": str, "offset_days": int, "notify": [str, ...]}')
        return v

    @field_serializer("database_url", "database_migration_url")
    def _mask_password(self, url: str | None) -> str | None:
        return mask_password(url)

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _any_case(cls, v: object, info: ValidationInfo) -> object:
        if not isinstance(v, str):
            return v
        return v.strip().upper() if info.field_name == "log_level" else v.strip().lower()

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit_parses(cls, v: str) -> str:
        from limits import parse_many

        try:
            parse_many(v)
        except ValueError as e:
            raise ValueError(f"RATE_LIMIT {v!r} is not a rate such as '100/second;5000/hour'") from e
        return v

    @model_validator(mode="after")
    def _audit_key_in_production(self) -> Settings:
        if self.environment == "local":
            return self
        key = self.audit_hmac_key.get_secret_value()
        if key == LOCAL_AUDIT_KEY or len(key.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"AUDIT_HMAC_KEY must be set to a secret of at least {MIN_SECRET_BYTES} bytes outside "
                             "local use (and kept out of the database: it is what makes the audit chain "
                             "unforgeable)")
        return self

    @model_validator(mode="after")
    def _no_weak_secret_in_production(self) -> Settings:
        secret = self.auth_jwt_secret.get_secret_value()
        if self.environment == "local":
            # The default secret is public: a local service that listens beyond this machine is a deployment.
            if secret == LOCAL_SECRET and not self.auth_jwks_url and self.api_host not in LOOPBACK:
                raise ValueError(f"API_HOST={self.api_host} with the default AUTH_JWT_SECRET lets anyone on the "
                                 "network mint tokens: set ENVIRONMENT=production and a secret of your own, "
                                 "or listen on 127.0.0.1")
            return self
        if self.auth_jwks_url:
            return self  # tokens are verified against the identity provider's keys; the secret is unused
        if secret == LOCAL_SECRET:
            raise ValueError("AUTH_JWT_SECRET or AUTH_JWKS_URL must be set outside local use")
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"AUTH_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes outside local use "
                             "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)")
        return self

    @property
    def ladder(self) -> list[dict[str, Any]]:
        """The ladder as plain dicts, for readers not yet on the typed `escalation_ladder` (list[Rung])."""
        return [r.model_dump() for r in self.escalation_ladder]

    @property
    def policy(self) -> Policy:
        """The policy a regime placed now records (Placement.policy)."""
        return Policy.model_validate({f: getattr(self, f"policy_{f}") for f in ("version", *CHOICE_FIELDS)})

    @property
    def calendar_rules(self) -> CalendarRules:
        """The calendar rules a regime placed now records (Placement.calendar)."""
        return CalendarRules(first_return_lead_days=self.first_return_lead_days, bank_holidays=self.bank_holidays)

    @property
    def audit_key(self) -> bytes:
        return self.audit_hmac_key.get_secret_value().encode()

    @property
    def checkpoint_dir(self) -> Path:
        return self.audit_checkpoint_dir or self.data_dir / "audit-checkpoints"

    @property
    def temporal_target(self) -> str:
        return self.temporal_address or f"127.0.0.1:{self.temporal_port}"

    @property
    def temporal_ui(self) -> str:
        return self.temporal_ui_url or f"http://127.0.0.1:{self.temporal_ui_port}"


def mask_password(url: str | None) -> str | None:
    """`url` with its password replaced by asterisks (for a dump or a log line); other text unchanged."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{parts.username or ''}:**********@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "**********"  # not a URL we can take apart: hide all of it rather than guess


@lru_cache
def get_settings() -> Settings:
    return Settings()
