"""Everything provisioning says to the LiveKit SIP API: the inbound trunk for our number, the
outbound trunk through Twilio's termination domain, and the dispatch rule that sends each call
to its own room with the agent."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
from livekit.api.twirp_client import ServerError
from livekit.protocol import agent_dispatch as dispatch_proto
from livekit.protocol import room as room_proto
from livekit.protocol import sip as sip_proto

from backend.provision.config import SetupConfig
from backend.provision.plan import Plan, SetupError, only_one

ROOM_PREFIX = "call-"


@contextlib.contextmanager
def livekit_step(name: str) -> Iterator[None]:
    """Turn the errors of one step's LiveKit calls into a SetupError naming the step."""
    try:
        yield
    except ServerError as err:
        raise SetupError(name, f"LiveKit answered {err.code} (HTTP {err.status}): {err.message}") from err
    except (aiohttp.ClientError, TimeoutError) as err:
        raise SetupError(name, f"could not reach LiveKit: {err!r}") from err


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
    with livekit_step(name):
        found = [item for item in (await list_items()).items if item.name == wanted.name]
        existing = only_one(found, f"LiveKit resources named {wanted.name!r}", name)
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


async def run_livekit(cfg: SetupConfig, plan: Plan, domain: str) -> dict[str, str | None]:
    """Open a LiveKit API client from the settings, provision, and close it."""
    from livekit.api import LiveKitAPI

    lkapi = LiveKitAPI(cfg.livekit_url, cfg.livekit_api_key, cfg.livekit_api_secret)
    try:
        return await provision_livekit(lkapi, cfg, plan, domain)
    finally:
        await lkapi.aclose()
