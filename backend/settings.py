"""One frozen settings object, read from the environment (and a `.env` file when present).

The table below is the single source of truth: `Settings.from_env()` reads it, `.env.example`
lists it, and `python -m backend settings` prints it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

# (name, default, help). None means "not set".
SETTINGS_TABLE: tuple[tuple[str, str | None, str], ...] = (
    ("DATA_DIR", "./data", "Where the JSON store lives (when STORE_URL is not set)."),
    (
        "STORE_URL",
        None,
        "postgresql://user:password@host:5432/db: the PostgreSQL store (default: the JSON store in DATA_DIR).",
    ),
    ("STORE_POOL_SIZE", "10", "Database connections each process may hold (PostgreSQL store)."),
    ("API_TOKENS", None, "Comma-separated bearer tokens for the API and dashboard."),
    ("HOST", "127.0.0.1", "Address the API and dashboard listen on."),
    ("PORT", "5000", "Port the API and dashboard listen on."),
    ("WEB_CONCURRENCY", "2", "gunicorn worker processes for the API and dashboard."),
    ("SECRET_KEY", None, "Signs dashboard session cookies (default: a random key kept in DATA_DIR/secret_key)."),
    ("GOOGLE_API_KEY", None, "Gemini API key for the Live model."),
    ("GEMINI_MODEL", None, "Gemini Live model name (plugin default when unset)."),
    ("GEMINI_VOICE", "Puck", "Gemini Live voice."),
    ("LIVEKIT_URL", None, "LiveKit server URL (wss://...)."),
    ("LIVEKIT_API_KEY", None, "LiveKit API key."),
    ("LIVEKIT_API_SECRET", None, "LiveKit API secret."),
    ("AGENT_NAME", "debt-relief-agent", "Agent name used for explicit dispatch."),
    ("BUSINESS_NAME", None, "Business name said in the opening disclosure."),
    ("CALLBACK_NUMBER", None, "Callback number said in the opening disclosure."),
    ("BUSINESS_TIMEZONE", "America/New_York", "IANA time zone of the business."),
    ("CALLING_HOURS", "08:00-21:00", "Calling window, local time of the called party."),
    ("TRANSFER_NUMBER", None, "Where qualified callers are transferred."),
    ("RECORDING", "off", "Record each call's audio with LiveKit Egress (on) or not (off)."),
    ("RECORDING_FILE_DIR", None, "Folder the egress writes recordings to, as the egress and this server see it."),
    ("RECORDING_S3_BUCKET", None, "S3 bucket for recordings (instead of RECORDING_FILE_DIR when set)."),
    ("RECORDING_S3_REGION", None, "Region of RECORDING_S3_BUCKET."),
    ("RECORDING_S3_ENDPOINT", None, "S3-compatible endpoint URL (default: AWS)."),
    ("RECORDING_S3_ACCESS_KEY", None, "Access key for RECORDING_S3_BUCKET."),
    ("RECORDING_S3_SECRET", None, "Secret key for RECORDING_S3_BUCKET (never logged)."),
    ("SIP_OUTBOUND_TRUNK_ID", None, "LiveKit outbound trunk for outbound calls."),
    ("TWILIO_ACCOUNT_SID", None, "Twilio account SID (SIP provisioning)."),
    ("TWILIO_AUTH_TOKEN", None, "Twilio auth token (provisioning, callback signatures)."),
    ("PUBLIC_BASE_URL", None, "URL Twilio calls us at, for checking signatures behind a proxy."),
    ("TWILIO_PHONE_NUMBER", None, "Our Twilio number (E.164), attached to the SIP trunk by provisioning."),
    ("LIVEKIT_SIP_URI", None, "LiveKit SIP URI (sip:....sip.livekit.cloud), the trunk's origination URL."),
    ("SIP_TRUNK_NAME", "debt-relief-agent", "Name of the trunks and dispatch rule provisioning creates or finds."),
    ("SIP_TERMINATION_DOMAIN", None, "Twilio termination domain (default: <SIP_TRUNK_NAME>.pstn.twilio.com)."),
    ("SIP_USERNAME", None, "SIP credential user for outbound calls through the trunk."),
    ("SIP_PASSWORD", None, "SIP credential password (12+ characters, upper, lower, digit)."),
    ("STORE_FSYNC", "1", "fsync every store write (1) or leave it to the OS (0)."),
    ("QUALIFY_MIN_UNSECURED_DEBT_USD", "10000", "Unsecured debt at or above which a caller qualifies."),
    ("MAX_CONCURRENT_OUTBOUND", "5", "Outbound calls allowed at once."),
    ("TRUST_PROXY", "0", "Trust one reverse proxy's X-Forwarded-* headers (1) or not (0)."),
    ("SUMMARY_MODEL", "gemini-2.5-flash", "Gemini text model that writes each call's summary and lead."),
    (
        "MODEL_PRICES",
        None,
        "JSON: USD per million tokens per model (input_audio, input_text, output_audio, output_text).",
    ),
    ("TELEPHONY_USD_PER_MINUTE", "0", "Telephony rate per call minute, for the cost of a call."),
    ("LOG_LEVEL", "INFO", "Logging level."),
    ("WEBHOOK_URL", None, "Where each ended call and summary is POSTed as a signed event (http:// or https://)."),
    ("WEBHOOK_SECRET", None, "Standard Webhooks signing secret (whsec_ + base64); never logged."),
    ("WEBHOOK_TIMEOUT_SECONDS", "10", "How long one webhook delivery attempt may take."),
)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    api_tokens: tuple[str, ...]
    host: str
    port: int
    web_concurrency: int
    secret_key: str | None
    google_api_key: str | None
    gemini_model: str | None
    gemini_voice: str
    livekit_url: str | None
    livekit_api_key: str | None
    livekit_api_secret: str | None
    agent_name: str
    business_name: str | None
    callback_number: str | None
    business_timezone: str
    calling_hours: str
    transfer_number: str | None
    recording: bool
    recording_file_dir: str | None
    recording_s3_bucket: str | None
    recording_s3_region: str | None
    recording_s3_endpoint: str | None
    recording_s3_access_key: str | None = field(repr=False)
    recording_s3_secret: str | None = field(repr=False)
    sip_outbound_trunk_id: str | None
    twilio_account_sid: str | None
    twilio_auth_token: str | None
    public_base_url: str | None
    twilio_phone_number: str | None
    livekit_sip_uri: str | None
    sip_trunk_name: str
    sip_termination_domain: str | None
    sip_username: str | None
    sip_password: str | None
    store_fsync: bool
    qualify_min_unsecured_debt_usd: float
    max_concurrent_outbound: int
    trust_proxy: bool
    summary_model: str
    model_prices: str | None
    telephony_usd_per_minute: float
    log_level: str
    webhook_url: str | None = None
    store_url: str | None = field(default=None, repr=False)  # holds the database password
    store_pool_size: int = 10
    webhook_secret: str | None = None
    webhook_timeout_seconds: float = 10.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, *, dotenv: bool = True) -> Settings:
        """Build settings from `env` (default: `os.environ`, after loading `.env` if present)."""
        if env is None:
            if dotenv:
                load_dotenv_file()
            env = dict(os.environ)
        raw = {name: (env.get(name) or default) for name, default, _ in SETTINGS_TABLE}
        tokens = tuple(t.strip() for t in (raw["API_TOKENS"] or "").split(",") if t.strip())
        return cls(
            data_dir=Path(raw["DATA_DIR"]),
            api_tokens=tokens,
            host=raw["HOST"],
            port=int(raw["PORT"]),
            web_concurrency=int(raw["WEB_CONCURRENCY"]),
            secret_key=raw["SECRET_KEY"],
            google_api_key=raw["GOOGLE_API_KEY"],
            gemini_model=raw["GEMINI_MODEL"],
            gemini_voice=raw["GEMINI_VOICE"],
            livekit_url=raw["LIVEKIT_URL"],
            livekit_api_key=raw["LIVEKIT_API_KEY"],
            livekit_api_secret=raw["LIVEKIT_API_SECRET"],
            agent_name=raw["AGENT_NAME"],
            business_name=raw["BUSINESS_NAME"],
            callback_number=raw["CALLBACK_NUMBER"],
            business_timezone=raw["BUSINESS_TIMEZONE"],
            calling_hours=raw["CALLING_HOURS"],
            transfer_number=raw["TRANSFER_NUMBER"],
            recording=_truthy(raw["RECORDING"]),
            recording_file_dir=raw["RECORDING_FILE_DIR"],
            recording_s3_bucket=raw["RECORDING_S3_BUCKET"],
            recording_s3_region=raw["RECORDING_S3_REGION"],
            recording_s3_endpoint=raw["RECORDING_S3_ENDPOINT"],
            recording_s3_access_key=raw["RECORDING_S3_ACCESS_KEY"],
            recording_s3_secret=raw["RECORDING_S3_SECRET"],
            sip_outbound_trunk_id=raw["SIP_OUTBOUND_TRUNK_ID"],
            twilio_account_sid=raw["TWILIO_ACCOUNT_SID"],
            twilio_auth_token=raw["TWILIO_AUTH_TOKEN"],
            public_base_url=raw["PUBLIC_BASE_URL"],
            twilio_phone_number=raw["TWILIO_PHONE_NUMBER"],
            livekit_sip_uri=raw["LIVEKIT_SIP_URI"],
            sip_trunk_name=raw["SIP_TRUNK_NAME"],
            sip_termination_domain=raw["SIP_TERMINATION_DOMAIN"],
            sip_username=raw["SIP_USERNAME"],
            sip_password=raw["SIP_PASSWORD"],
            store_fsync=_truthy(raw["STORE_FSYNC"]),
            qualify_min_unsecured_debt_usd=float(raw["QUALIFY_MIN_UNSECURED_DEBT_USD"]),
            max_concurrent_outbound=int(raw["MAX_CONCURRENT_OUTBOUND"]),
            trust_proxy=_truthy(raw["TRUST_PROXY"]),
            summary_model=raw["SUMMARY_MODEL"],
            model_prices=raw["MODEL_PRICES"],
            telephony_usd_per_minute=float(raw["TELEPHONY_USD_PER_MINUTE"]),
            log_level=raw["LOG_LEVEL"].upper(),
            webhook_url=(raw["WEBHOOK_URL"] or "").strip() or None,
            store_url=(raw["STORE_URL"] or "").strip() or None,
            store_pool_size=int(raw["STORE_POOL_SIZE"]),
            webhook_secret=(raw["WEBHOOK_SECRET"] or "").strip() or None,
            webhook_timeout_seconds=float(raw["WEBHOOK_TIMEOUT_SECONDS"]),
        )


def load_dotenv_file(path: str | os.PathLike[str] = ".env") -> None:
    """Load `path` into the environment without overriding variables already set."""
    if Path(path).is_file():
        from dotenv import load_dotenv

        load_dotenv(path, override=False)


_current: Settings | None = None


def get_settings() -> Settings:
    """This process's settings: read from the environment (and `.env`) once, then the same
    frozen object on every call. Tests change them with `override_settings`."""
    global _current
    if _current is None:
        _current = Settings.from_env()
    return _current


@contextmanager
def override_settings(settings: Settings | None = None, **changes: Any) -> Iterator[Settings]:
    """Within the block, `get_settings()` answers `settings` (default: read the environment
    afresh) with `changes` applied (e.g. `data_dir=tmp`); the process's own settings after it."""
    global _current
    before = _current
    _current = replace(settings or Settings.from_env(), **changes)
    try:
        yield _current
    finally:
        _current = before


def reload_settings() -> Settings:
    """Forget the settings read so far and read the environment again (tests that set variables)."""
    global _current
    _current = None
    return get_settings()
