"""Provision the SIP lines: a Twilio Elastic SIP trunk and LiveKit's trunks and dispatch rule.

Run `python -m backend.provision` (or `--dry-run` to print the plan and change nothing). Every
resource is found by name first and created only when missing, and a found resource whose
settings differ from the wanted ones is updated, so a second run changes nothing. A failure
stops the run and names the step that failed and why. Secrets come only from the environment
(or a `.env` file); none is ever printed.

Steps, in order:
  twilio.trunk                  the Elastic SIP trunk (termination domain, call transfer with PSTN)
  twilio.origination_url        inbound calls go to the LiveKit SIP URI
  twilio.credential_list        the credential list LiveKit authenticates outbound calls with
  twilio.credential             SIP_USERNAME / SIP_PASSWORD in that list
  twilio.trunk_credential_list  the list attached to the trunk (termination auth)
  twilio.phone_number           TWILIO_PHONE_NUMBER attached to the trunk
  livekit.inbound_trunk         accepts calls to that number
  livekit.outbound_trunk        dials out through the trunk's termination domain
  livekit.dispatch_rule         each call in its own room, with the agent named AGENT_NAME
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

import aiohttp
from livekit.api.twirp_client import ServerError
from livekit.protocol import agent_dispatch as dispatch_proto
from livekit.protocol import room as room_proto
from livekit.protocol import sip as sip_proto
from requests import RequestException
from twilio.base.exceptions import TwilioException, TwilioRestException

from backend.sip import InvalidPhoneNumber, normalize_e164, redact_number

TRANSFER_MODE = "enable-all"  # call transfer (SIP REFER) to SIP and to the PSTN
TRANSFER_CALLER_ID = "from-transferee"  # the specialist sees the caller's number
ROOM_PREFIX = "call-"
ORIGINATION_NAME = "LiveKit SIP"

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


class SetupError(Exception):
    """A provisioning step failed; `step` names it and `reason` says why."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"step {step} failed: {reason}")
        self.step = step
        self.reason = reason


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


@dataclass
class StepResult:
    step: str
    action: str  # unchanged, created, updated, would create, would update
    detail: str
    resource_id: str | None = None


class Plan:
    """Collects what each step found or did, and prints it as it goes."""

    def __init__(self, dry_run: bool, out: TextIO) -> None:
        self.dry_run = dry_run
        self.out = out
        self.results: list[StepResult] = []

    def record(self, step: str, action: str, detail: str, resource_id: str | None = None) -> None:
        if self.dry_run and action in {"created", "updated"}:
            action = "would " + action[:-1]
        result = StepResult(step, action, detail, resource_id)
        self.results.append(result)
        suffix = f" [{resource_id}]" if resource_id else ""
        print(f"{step:<29} {action:<13} {detail}{suffix}", file=self.out)

    def changes(self) -> list[StepResult]:
        return [r for r in self.results if r.action != "unchanged"]


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """Turn the errors of one step's API calls into a SetupError naming the step."""
    try:
        yield
    except SetupError:
        raise
    except TwilioRestException as err:
        detail = f" ({err.details})" if err.details else ""
        raise SetupError(name, f"Twilio answered HTTP {err.status} (code {err.code}): {err.msg}{detail}") from err
    except ServerError as err:
        raise SetupError(name, f"LiveKit answered {err.code} (HTTP {err.status}): {err.message}") from err
    except TwilioException as err:
        raise SetupError(name, _twilio_reason(err)) from err
    except RequestException as err:
        raise SetupError(name, f"could not talk to Twilio: {err}") from err
    except (aiohttp.ClientError, TimeoutError) as err:
        raise SetupError(name, f"could not reach LiveKit: {err!r}") from err


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


def _only(items: list[Any], what: str, step_name: str) -> Any | None:
    if len(items) > 1:
        raise SetupError(step_name, f"{len(items)} {what} match; delete or rename all but one")
    return items[0] if items else None


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
    with step(name):
        found = [t for t in client.trunking.v1.trunks.list() if t.friendly_name == cfg.trunk_name]
        trunk = _only(found, f"trunks named {cfg.trunk_name!r}", name)
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
    with step(name):
        urls = client.trunking.v1.trunks(trunk_sid).origination_urls.list() if trunk_sid else []
        url = _only([u for u in urls if u.sip_url.lower() == cfg.livekit_sip_uri.lower()], "origination URLs", name)
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
    with step(name):
        lists = [c for c in sip.credential_lists.list() if c.friendly_name == cfg.trunk_name]
        cred_list = _only(lists, f"credential lists named {cfg.trunk_name!r}", name)
        if cred_list is None:
            if not plan.dry_run:
                cred_list = sip.credential_lists.create(friendly_name=cfg.trunk_name)
            plan.record(name, "created", repr(cfg.trunk_name), _sid(cred_list))
        else:
            plan.record(name, "unchanged", repr(cfg.trunk_name), cred_list.sid)
    cl_sid = _sid(cred_list)
    name = "twilio.credential"
    with step(name):
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
    with step(name):
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
    with step(name):
        account = client.api.v2010.accounts(cfg.twilio_account_sid)
        owned = [n for n in account.incoming_phone_numbers.list(phone_number=cfg.phone_number)]
        number = _only([n for n in owned if n.phone_number == cfg.phone_number], "phone numbers", name)
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


async def provision_livekit(lkapi: Any, cfg: SetupConfig, plan: Plan, domain: str) -> dict[str, str | None]:
    """Create or find LiveKit's inbound trunk, outbound trunk and dispatch rule; returns their ids."""
    inbound = sip_proto.SIPInboundTrunkInfo(
        name=f"{cfg.trunk_name}-inbound", numbers=[cfg.phone_number], krisp_enabled=True
    )
    inbound_id = await _ensure_lk(
        plan,
        "livekit.inbound_trunk",
        inbound,
        list_items=lambda: lkapi.sip.list_inbound_trunk(sip_proto.ListSIPInboundTrunkRequest()),
        create=lambda: lkapi.sip.create_inbound_trunk(sip_proto.CreateSIPInboundTrunkRequest(trunk=inbound)),
        update=lambda tid: lkapi.sip.update_inbound_trunk(tid, inbound),
        key=lambda t: (sorted(t.numbers), t.krisp_enabled),
        id_field="sip_trunk_id",
    )
    outbound = sip_proto.SIPOutboundTrunkInfo(
        name=f"{cfg.trunk_name}-outbound",
        address=domain,
        numbers=[cfg.phone_number],
        auth_username=cfg.sip_username,
        auth_password=cfg.sip_password,
    )
    outbound_id = await _ensure_lk(
        plan,
        "livekit.outbound_trunk",
        outbound,
        list_items=lambda: lkapi.sip.list_outbound_trunk(sip_proto.ListSIPOutboundTrunkRequest()),
        create=lambda: lkapi.sip.create_outbound_trunk(sip_proto.CreateSIPOutboundTrunkRequest(trunk=outbound)),
        update=lambda tid: lkapi.sip.update_outbound_trunk(tid, outbound),
        key=lambda t: (t.address, sorted(t.numbers), t.auth_username),  # the password is not readable back
        id_field="sip_trunk_id",
    )
    rule = sip_proto.SIPDispatchRuleInfo(
        name=f"{cfg.trunk_name}-dispatch",
        rule=sip_proto.SIPDispatchRule(
            dispatch_rule_individual=sip_proto.SIPDispatchRuleIndividual(room_prefix=ROOM_PREFIX)
        ),
        trunk_ids=[inbound_id or "<new inbound trunk>"],
        room_config=room_proto.RoomConfiguration(agents=[dispatch_proto.RoomAgentDispatch(agent_name=cfg.agent_name)]),
    )
    rule_id = await _ensure_lk(
        plan,
        "livekit.dispatch_rule",
        rule,
        list_items=lambda: lkapi.sip.list_dispatch_rule(sip_proto.ListSIPDispatchRuleRequest()),
        create=lambda: lkapi.sip.create_dispatch_rule(sip_proto.CreateSIPDispatchRuleRequest(dispatch_rule=rule)),
        update=lambda rid: lkapi.sip.update_dispatch_rule(rid, rule),
        key=_dispatch_key,
        id_field="sip_dispatch_rule_id",
    )
    return {"inbound_trunk_id": inbound_id, "outbound_trunk_id": outbound_id, "dispatch_rule_id": rule_id}


async def _ensure_lk(
    plan: Plan,
    name: str,
    wanted: Any,
    *,
    list_items: Callable[[], Any],
    create: Callable[[], Any],
    update: Callable[[str], Any],
    key: Callable[[Any], Any],
    id_field: str,
) -> str | None:
    with step(name):
        found = [item for item in (await list_items()).items if item.name == wanted.name]
        existing = _only(found, f"LiveKit resources named {wanted.name!r}", name)
        if existing is None:
            created = None if plan.dry_run else await create()
            plan.record(name, "created", repr(wanted.name), getattr(created, id_field, None))
            return getattr(created, id_field, None)
        resource_id = getattr(existing, id_field)
        if key(existing) != key(wanted):
            if not plan.dry_run:
                await update(resource_id)
            plan.record(name, "updated", f"{wanted.name!r}: settings differ, replaced", resource_id)
        else:
            plan.record(name, "unchanged", repr(wanted.name), resource_id)
        return resource_id


def _dispatch_key(rule: Any) -> tuple[Any, ...]:
    individual = rule.rule.dispatch_rule_individual if rule.rule.HasField("dispatch_rule_individual") else None
    return (
        individual.room_prefix if individual else None,
        sorted(rule.trunk_ids),
        sorted(a.agent_name for a in rule.room_config.agents),
    )


def _sid(resource: Any) -> str | None:
    return getattr(resource, "sid", None)


def _fmt(changes: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in changes.items())


def make_twilio_client(cfg: SetupConfig) -> Any:
    from twilio.rest import Client

    # The twilio client logs query parameters (our phone number among them) at INFO.
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)
    return Client(cfg.twilio_account_sid, cfg.twilio_auth_token)


async def _run_livekit(cfg: SetupConfig, plan: Plan, domain: str) -> dict[str, str | None]:
    from livekit.api import LiveKitAPI

    lkapi = LiveKitAPI(cfg.livekit_url, cfg.livekit_api_key, cfg.livekit_api_secret)
    try:
        return await provision_livekit(lkapi, cfg, plan, domain)
    finally:
        await lkapi.aclose()


def main(
    argv: list[str] | None = None,
    *,
    prog: str = "python -m backend.provision",
    env: Mapping[str, str] | None = None,
    twilio_client: Any = None,
    out: TextIO | None = None,
) -> int:
    """Entry point. Exit status: 0 done (or planned), 1 a step failed, 2 the settings are incomplete."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="print the plan; send no writes")
    args = parser.parse_args(argv)
    out = out or sys.stdout
    err_out = sys.stderr if out is sys.stdout else out
    if env is None:
        from backend.settings import load_dotenv_file

        load_dotenv_file()
    try:
        cfg = SetupConfig.from_env(env)
    except SetupError as err:
        print(f"error: {err}", file=err_out)
        return 2
    plan = Plan(args.dry_run, out)
    print(f"{'Plan' if args.dry_run else 'Provisioning'} SIP lines for trunk {cfg.trunk_name!r}:", file=out)
    try:
        domain = provision_twilio(twilio_client or make_twilio_client(cfg), cfg, plan)
        ids = asyncio.run(_run_livekit(cfg, plan, domain))
    except SetupError as err:
        print(f"error: {err}", file=err_out)
        return 1
    changed = len(plan.changes())
    if args.dry_run:
        print(f"dry run: {changed} change(s) planned, nothing was sent.", file=out)
    else:
        print(f"done: {changed} change(s), {len(plan.results) - changed} unchanged.", file=out)
        if ids["outbound_trunk_id"]:
            print(f"Set SIP_OUTBOUND_TRUNK_ID={ids['outbound_trunk_id']} in your environment.", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
