"""Everything provisioning says to Twilio: the Elastic SIP trunk, its origination URL (LiveKit),
the SIP credential list it authenticates outbound calls with, and our phone number on it."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from requests import RequestException
from twilio.base.exceptions import TwilioException, TwilioRestException

from backend.calls.numbers import redact_number
from backend.provision.config import SetupConfig
from backend.provision.plan import Plan, SetupError, only_one

TRANSFER_MODE = "enable-all"  # call transfer (SIP REFER) to SIP and to the PSTN
TRANSFER_CALLER_ID = "from-transferee"  # the specialist sees the caller's number
ORIGINATION_NAME = "LiveKit SIP"


@contextlib.contextmanager
def twilio_step(name: str) -> Iterator[None]:
    """Turn the errors of one step's Twilio calls into a SetupError naming the step."""
    try:
        yield
    except TwilioRestException as err:
        detail = f" ({err.details})" if err.details else ""
        raise SetupError(name, f"Twilio answered HTTP {err.status} (code {err.code}): {err.msg}{detail}") from err
    except TwilioException as err:
        raise SetupError(name, _twilio_reason(err)) from err
    except (RequestException, TimeoutError) as err:
        raise SetupError(name, f"could not talk to Twilio: {err}") from err


def _twilio_reason(err: TwilioException) -> str:
    """A list call fails with TwilioException("Unable to fetch page", response): read the response."""
    response = err.args[1] if len(err.args) > 1 else None
    status = getattr(response, "status_code", None)
    if status is None:
        return f"could not talk to Twilio: {err}"
    try:
        body = json.loads(response.text)
    except (TypeError, ValueError):
        body = {}
    message = body.get("message") or (response.text or "")[:200]
    return f"Twilio answered HTTP {status} (code {body.get('code')}): {err.args[0]}: {message}"


def provision_twilio(client: Any, cfg: SetupConfig, plan: Plan) -> str:
    """Create or find the Twilio side; returns the trunk's termination domain."""
    trunk, domain = _ensure_trunk(client, cfg, plan)
    trunk_sid = trunk.sid if trunk else None
    _ensure_origination(client, cfg, plan, trunk_sid)
    cl_sid = _ensure_credentials(client, cfg, plan)
    _ensure_trunk_credential_list(client, plan, trunk_sid, cl_sid)
    _ensure_phone_number(client, cfg, plan, trunk_sid)
    return domain


def _ensure_trunk(client: Any, cfg: SetupConfig, plan: Plan) -> tuple[Any | None, str]:
    name = "twilio.trunk"
    with twilio_step(name):
        found = [t for t in client.trunking.v1.trunks.list() if t.friendly_name == cfg.trunk_name]
        trunk = only_one(found, f"trunks named {cfg.trunk_name!r}", name)
        if trunk is None:
            domain = cfg.termination_domain or cfg.default_domain
            if not plan.dry_run:
                trunk = client.trunking.v1.trunks.create(
                    friendly_name=cfg.trunk_name,
                    domain_name=domain,
                    transfer_mode=TRANSFER_MODE,
                    transfer_caller_id=TRANSFER_CALLER_ID,
                )
            plan.record(name, "created", f"{cfg.trunk_name!r} on {domain}, transfer {TRANSFER_MODE}", _sid(trunk))
            return trunk, domain
        wanted = {"transfer_mode": TRANSFER_MODE, "transfer_caller_id": TRANSFER_CALLER_ID}
        wanted["domain_name"] = cfg.termination_domain or trunk.domain_name or cfg.default_domain
        changes = {k: v for k, v in wanted.items() if getattr(trunk, k) != v}
        if changes:
            if not plan.dry_run:
                trunk = client.trunking.v1.trunks(trunk.sid).update(**changes)
            plan.record(name, "updated", f"{cfg.trunk_name!r}: set {_fmt(changes)}", trunk.sid)
        else:
            plan.record(name, "unchanged", f"{cfg.trunk_name!r} on {wanted['domain_name']}", trunk.sid)
        return trunk, wanted["domain_name"]


def _ensure_origination(client: Any, cfg: SetupConfig, plan: Plan, trunk_sid: str | None) -> None:
    name = "twilio.origination_url"
    with twilio_step(name):
        urls = client.trunking.v1.trunks(trunk_sid).origination_urls.list() if trunk_sid else []
        url = only_one([u for u in urls if u.sip_url.lower() == cfg.livekit_sip_uri.lower()], "origination URLs", name)
        if url is None:
            if not plan.dry_run:
                url = client.trunking.v1.trunks(trunk_sid).origination_urls.create(
                    weight=1, priority=1, enabled=True, friendly_name=ORIGINATION_NAME, sip_url=cfg.livekit_sip_uri
                )
            plan.record(name, "created", cfg.livekit_sip_uri, _sid(url))
        elif not url.enabled:
            if not plan.dry_run:
                client.trunking.v1.trunks(trunk_sid).origination_urls(url.sid).update(enabled=True)
            plan.record(name, "updated", f"{cfg.livekit_sip_uri}: enabled", url.sid)
        else:
            plan.record(name, "unchanged", cfg.livekit_sip_uri, url.sid)


def _ensure_credentials(client: Any, cfg: SetupConfig, plan: Plan) -> str | None:
    sip = client.api.v2010.accounts(cfg.twilio_account_sid).sip
    name = "twilio.credential_list"
    with twilio_step(name):
        lists = [c for c in sip.credential_lists.list() if c.friendly_name == cfg.trunk_name]
        cred_list = only_one(lists, f"credential lists named {cfg.trunk_name!r}", name)
        if cred_list is None:
            if not plan.dry_run:
                cred_list = sip.credential_lists.create(friendly_name=cfg.trunk_name)
            plan.record(name, "created", repr(cfg.trunk_name), _sid(cred_list))
        else:
            plan.record(name, "unchanged", repr(cfg.trunk_name), cred_list.sid)
    cl_sid = _sid(cred_list)
    name = "twilio.credential"
    with twilio_step(name):
        creds = sip.credential_lists(cl_sid).credentials.list() if cl_sid else []
        if any(c.username == cfg.sip_username for c in creds):
            plan.record(name, "unchanged", f"user {cfg.sip_username!r} (password not readable, not compared)")
        else:
            if not plan.dry_run:
                sip.credential_lists(cl_sid).credentials.create(username=cfg.sip_username, password=cfg.sip_password)
            plan.record(name, "created", f"user {cfg.sip_username!r}")
    return cl_sid


def _ensure_trunk_credential_list(client: Any, plan: Plan, trunk_sid: str | None, cl_sid: str | None) -> None:
    name = "twilio.trunk_credential_list"
    with twilio_step(name):
        attached = client.trunking.v1.trunks(trunk_sid).credentials_lists.list() if trunk_sid and cl_sid else []
        if cl_sid and any(c.sid == cl_sid for c in attached):
            plan.record(name, "unchanged", "credential list attached for termination", cl_sid)
            return
        if not plan.dry_run:
            client.trunking.v1.trunks(trunk_sid).credentials_lists.create(credential_list_sid=cl_sid)
        plan.record(name, "created", "attach the credential list for termination", cl_sid)


def _ensure_phone_number(client: Any, cfg: SetupConfig, plan: Plan, trunk_sid: str | None) -> None:
    name = "twilio.phone_number"
    shown = redact_number(cfg.phone_number)
    with twilio_step(name):
        account = client.api.v2010.accounts(cfg.twilio_account_sid)
        owned = [n for n in account.incoming_phone_numbers.list(phone_number=cfg.phone_number)]
        number = only_one([n for n in owned if n.phone_number == cfg.phone_number], "phone numbers", name)
        if number is None:
            raise SetupError(
                name, f"{shown} is not a number of this Twilio account (buy it, or fix TWILIO_PHONE_NUMBER)"
            )
        on_trunk = client.trunking.v1.trunks(trunk_sid).phone_numbers.list() if trunk_sid else []
        if any(n.sid == number.sid for n in on_trunk):
            plan.record(name, "unchanged", f"{shown} on the trunk", number.sid)
            return
        if not plan.dry_run:
            client.trunking.v1.trunks(trunk_sid).phone_numbers.create(phone_number_sid=number.sid)
        plan.record(name, "created", f"attach {shown} to the trunk", number.sid)


def _sid(resource: Any) -> str | None:
    return getattr(resource, "sid", None)


def _fmt(changes: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in changes.items())


def make_twilio_client(cfg: SetupConfig) -> Any:
    from twilio.rest import Client

    # The twilio client logs query parameters (our phone number among them) at INFO.
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)
    return Client(cfg.twilio_account_sid, cfg.twilio_auth_token)
