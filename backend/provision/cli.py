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
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from backend.provision.config import SetupConfig
from backend.provision.livekit_sip import run_livekit
from backend.provision.plan import Plan, SetupError
from backend.provision.twilio_trunk import make_twilio_client, provision_twilio


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
        ids = asyncio.run(run_livekit(cfg, plan, domain))
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
