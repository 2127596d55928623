"""The settings provisioning needs, read from the environment and checked before any request."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from backend.calls.numbers import InvalidPhoneNumber, normalize_e164
from backend.provision.plan import SetupError

REQUIRED_ENV = (
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_PHONE_NUMBER",
    "LIVEKIT_URL",
    "LIVEKIT_API_KEY",
    "LIVEKIT_API_SECRET",
    "LIVEKIT_SIP_URI",
    "SIP_USERNAME",
    "SIP_PASSWORD",
)


@dataclass(frozen=True)
class SetupConfig:
    twilio_account_sid: str
    twilio_auth_token: str = field(repr=False)
    phone_number: str
    livekit_url: str
    livekit_api_key: str
    livekit_api_secret: str = field(repr=False)
    livekit_sip_uri: str
    trunk_name: str
    termination_domain: str | None  # None: keep the trunk's own, or derive one from the name
    sip_username: str
    sip_password: str = field(repr=False)
    agent_name: str

    @property
    def default_domain(self) -> str:
        slug = re.sub(r"[^a-z0-9-]+", "-", self.trunk_name.lower()).strip("-") or "livekit"
        return f"{slug}.pstn.twilio.com"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SetupConfig:
        """Read and check the settings; raises SetupError(step="config") naming every problem."""
        env = os.environ if env is None else env
        get = lambda name, default=None: (env.get(name) or "").strip() or default  # noqa: E731
        problems = [f"{name} is not set" for name in REQUIRED_ENV if not get(name)]
        phone = get("TWILIO_PHONE_NUMBER")
        if phone:
            try:
                phone = normalize_e164(phone)
            except InvalidPhoneNumber as err:
                problems.append(f"TWILIO_PHONE_NUMBER: {err}")
        sip_uri = get("LIVEKIT_SIP_URI")
        if sip_uri and not sip_uri.startswith(("sip:", "sips:")):
            sip_uri = f"sip:{sip_uri}"
        domain = get("SIP_TERMINATION_DOMAIN")
        if domain and not re.fullmatch(r"[a-z0-9-]+\.pstn\.twilio\.com", domain.lower()):
            problems.append("SIP_TERMINATION_DOMAIN must be letters, digits and - ending in .pstn.twilio.com")
        problems += _password_problems(get("SIP_PASSWORD"))
        if problems:
            raise SetupError("config", "; ".join(problems))
        return cls(
            twilio_account_sid=get("TWILIO_ACCOUNT_SID"),
            twilio_auth_token=get("TWILIO_AUTH_TOKEN"),
            phone_number=phone,
            livekit_url=get("LIVEKIT_URL"),
            livekit_api_key=get("LIVEKIT_API_KEY"),
            livekit_api_secret=get("LIVEKIT_API_SECRET"),
            livekit_sip_uri=sip_uri,
            trunk_name=get("SIP_TRUNK_NAME", "debt-relief-agent"),
            termination_domain=domain.lower() if domain else None,
            sip_username=get("SIP_USERNAME"),
            sip_password=get("SIP_PASSWORD"),
            agent_name=get("AGENT_NAME", "debt-relief-agent"),
        )


def _password_problems(password: str | None) -> list[str]:
    """Twilio's rule for SIP credential passwords: 12+ characters, upper, lower and a digit."""
    if not password:
        return []
    if len(password) < 12 or not all(re.search(p, password) for p in (r"[A-Z]", r"[a-z]", r"[0-9]")):
        return [
            "SIP_PASSWORD must be at least 12 characters with an upper-case letter, a lower-case letter and a digit"
        ]
    return []
