"""`python -m backend.provision` provisions the SIP lines: it creates what is missing, finds what
exists (a second run changes nothing), repairs settings that drifted, sends no write on
`--dry-run`, names the failing step and why, and never prints a secret.

Twilio is met at the network boundary twice: Stoplight Prism serving Twilio's own OpenAPI
descriptions (shared/twilio-oai) checks the shape of every request, and a small stateful fake
(tests/fakes/twilio_rest.py) keeps state so a second run has something to find. LiveKit is the
local fake Twirp server, which decodes the protobuf requests, with a small in-memory SIP state.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from livekit.protocol import sip as sip_proto
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from backend.provision import cli, config, twilio_trunk
from tests.fakes.livekit_twirp import FakeTwirpServer, TwirpError
from tests.fakes.twilio_rest import FakeTwilio

pytestmark = pytest.mark.store_free  # provisioning touches no store

REPO = Path(__file__).resolve().parents[1]
OAI_DIR = Path(os.environ.get("TWILIO_OAI_DIR", REPO.parent / "shared" / "twilio-oai"))
ACCOUNT_SID = "AC" + "a" * 32
AUTH_TOKEN = "twilio-auth-token-secret"
LK_KEY, LK_SECRET = "lk-key", "lk-secret-that-is-long-enough-for-hs256"
SIP_PASSWORD = "SipPassw0rdSecret"
PHONE = "+12125551234"
SECRETS = (AUTH_TOKEN, LK_SECRET, SIP_PASSWORD)


def make_env(livekit_url: str, **overrides: str) -> dict[str, str]:
    env = {
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_PHONE_NUMBER": PHONE,
        "LIVEKIT_URL": livekit_url,
        "LIVEKIT_API_KEY": LK_KEY,
        "LIVEKIT_API_SECRET": LK_SECRET,
        "LIVEKIT_SIP_URI": "abc123.sip.livekit.cloud",
        "SIP_USERNAME": "livekit-out",
        "SIP_PASSWORD": SIP_PASSWORD,
        "AGENT_NAME": "debt-relief-agent",
    }
    env.update(overrides)
    return env


class RecordingHttpClient(TwilioHttpClient):
    """The twilio package's own HTTP client; records each request and, when `shadow` is given,
    also sends it to Prism (by URL prefix) and records Prism's verdict on its shape."""

    def __init__(self, shadow: dict[str, str] | None = None) -> None:
        super().__init__()
        self.sent: list[tuple[str, str, dict]] = []
        self.shadow = shadow or {}
        self.prism_verdicts: list[tuple[str, str, int, str]] = []

    def request(
        self, method, url, params=None, data=None, headers=None, auth=None, timeout=None, allow_redirects=False
    ):
        self.sent.append((method, url, dict(data or {})))
        for prefix, prism in self.shadow.items():
            if url.startswith(prefix):
                checked = requests.request(
                    method, prism + url[len(prefix) :], params=params, data=data, auth=auth, timeout=30
                )
                self.prism_verdicts.append((method, url[len(prefix) :], checked.status_code, checked.text[:500]))
        return super().request(method, url, params, data, headers, auth, timeout, allow_redirects)

    def writes(self) -> list[tuple[str, str, dict]]:
        return [r for r in self.sent if r[0] != "GET"]


def twilio_client(trunking_url: str, api_url: str, http_client: TwilioHttpClient | None = None) -> Client:
    client = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=http_client or RecordingHttpClient())
    client.trunking.base_url = trunking_url  # the twilio package's per-domain base URL
    client.api.base_url = api_url
    return client


class LiveKitSip:
    """In-memory SIP trunks and dispatch rules behind the fake Twirp server. Like LiveKit, a
    listing does not give passwords back."""

    def __init__(self, server: FakeTwirpServer) -> None:
        self.server = server
        self.inbound: dict[str, sip_proto.SIPInboundTrunkInfo] = {}
        self.outbound: dict[str, sip_proto.SIPOutboundTrunkInfo] = {}
        self.rules: dict[str, sip_proto.SIPDispatchRuleInfo] = {}
        self._n = 0
        on = server.on
        on(
            "SIP",
            "ListSIPInboundTrunk",
            lambda r: sip_proto.ListSIPInboundTrunkResponse(items=self._listed(self.inbound)),
        )
        on(
            "SIP",
            "ListSIPOutboundTrunk",
            lambda r: sip_proto.ListSIPOutboundTrunkResponse(items=self._listed(self.outbound)),
        )
        on(
            "SIP",
            "ListSIPDispatchRule",
            lambda r: sip_proto.ListSIPDispatchRuleResponse(items=list(self.rules.values())),
        )
        on("SIP", "CreateSIPInboundTrunk", lambda r: self._store(self.inbound, r.trunk, "ST_in", "sip_trunk_id"))
        on("SIP", "CreateSIPOutboundTrunk", lambda r: self._store(self.outbound, r.trunk, "ST_out", "sip_trunk_id"))
        on(
            "SIP",
            "CreateSIPDispatchRule",
            lambda r: self._store(self.rules, r.dispatch_rule, "SDR_", "sip_dispatch_rule_id"),
        )
        on(
            "SIP",
            "UpdateSIPInboundTrunk",
            lambda r: self._replace(self.inbound, r.sip_trunk_id, r.replace, "sip_trunk_id"),
        )
        on(
            "SIP",
            "UpdateSIPOutboundTrunk",
            lambda r: self._replace(self.outbound, r.sip_trunk_id, r.replace, "sip_trunk_id"),
        )
        on(
            "SIP",
            "UpdateSIPDispatchRule",
            lambda r: self._replace(self.rules, r.sip_dispatch_rule_id, r.replace, "sip_dispatch_rule_id"),
        )

    def _listed(self, table):
        items = []
        for item in table.values():
            copy = type(item)()
            copy.CopyFrom(item)
            copy.auth_password = ""
            items.append(copy)
        return items

    def _store(self, table, info, prefix, id_field):
        self._n += 1
        item = type(info)()
        item.CopyFrom(info)
        setattr(item, id_field, f"{prefix}{self._n}")
        table[getattr(item, id_field)] = item
        return item

    def _replace(self, table, item_id, info, id_field):
        if item_id not in table:
            raise TwirpError("not_found", f"{item_id} not found", 404)
        item = type(info)()
        item.CopyFrom(info)
        setattr(item, id_field, item_id)
        table[item_id] = item
        return item

    def writes(self) -> list[str]:
        return [c.method for c in self.server.calls if not c.method.startswith("List")]


@pytest.fixture
def livekit():
    with FakeTwirpServer(api_key=LK_KEY, api_secret=LK_SECRET) as server:
        yield LiveKitSip(server)


@pytest.fixture
def twilio_fake():
    fake = FakeTwilio(ACCOUNT_SID, AUTH_TOKEN).start()
    fake.add_incoming_number(PHONE)
    yield fake
    fake.stop()


def run(argv, env, client) -> tuple[int, str]:
    out = io.StringIO()
    code = cli.main(argv, env=env, twilio_client=client, out=out)
    text = out.getvalue()
    for secret in SECRETS:
        assert secret not in text
    return code, text


def actions(text: str) -> dict[str, str]:
    """step -> action, from the printed plan."""
    found = {}
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0].startswith(("twilio.", "livekit.")):
            found[parts[0]] = parts[1] if parts[1] != "would" else f"would {parts[2]}"
    return found


ALL_STEPS = [
    "twilio.trunk",
    "twilio.origination_url",
    "twilio.credential_list",
    "twilio.credential",
    "twilio.trunk_credential_list",
    "twilio.phone_number",
    "livekit.inbound_trunk",
    "livekit.outbound_trunk",
    "livekit.dispatch_rule",
]


# --- settings ---------------------------------------------------------------------------------


def test_missing_settings_are_all_named_and_nothing_is_sent():
    out = io.StringIO()
    assert cli.main([], env={}, out=out) == 2
    text = out.getvalue()
    assert "step config failed" in text
    for name in config.REQUIRED_ENV:
        assert f"{name} is not set" in text


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"TWILIO_PHONE_NUMBER": "+15551234567"}, "TWILIO_PHONE_NUMBER"),
        ({"SIP_PASSWORD": "short1A"}, "SIP_PASSWORD must be at least 12 characters"),
        ({"SIP_PASSWORD": "alllowercase123"}, "upper-case"),
        ({"SIP_TERMINATION_DOMAIN": "example.com"}, "SIP_TERMINATION_DOMAIN"),
    ],
)
def test_bad_settings_are_refused_before_any_request(override, message, twilio_fake):
    client = twilio_client(twilio_fake.url, twilio_fake.url)
    code, text = run([], make_env("http://127.0.0.1:9", **override), client)
    assert code == 2
    assert "step config failed" in text and message in text
    assert twilio_fake.requests == []


def test_module_runs_as_a_command_and_reports_missing_settings(tmp_path):
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "backend.provision", "--dry-run"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "step config failed" in done.stderr and "TWILIO_ACCOUNT_SID is not set" in done.stderr


@pytest.mark.parametrize("module", ["backend.provision", "backend.sip_setup"])
def test_help_works_under_the_new_name_and_the_old_one(module, tmp_path):
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: python -m {module} [-h] [--dry-run]")
    assert "Provision the SIP lines" in done.stdout and "--dry-run" in done.stdout
    if module == "backend.sip_setup":
        assert "is now `python -m backend.provision`" in done.stderr


def test_the_provisioning_package_loads_neither_flask_nor_the_agent():
    code = (
        "import pkgutil, sys, importlib, backend.provision as p\n"
        "for m in pkgutil.iter_modules(p.__path__):\n"
        "    if m.name != '__main__': importlib.import_module(f'backend.provision.{m.name}')\n"
        "import backend.sip_setup\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] == 'flask' or n.startswith('livekit.agents')))"
    )
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# --- against stateful fakes: create, find, repair ----------------------------------------------


def test_first_run_creates_everything_and_second_run_changes_nothing(twilio_fake, livekit):
    recorder = RecordingHttpClient()
    client = twilio_client(twilio_fake.url, twilio_fake.url, recorder)
    env = make_env(livekit.server.url)

    code, text = run([], env, client)
    assert code == 0, text
    assert actions(text) == dict.fromkeys(ALL_STEPS, "created")

    [trunk] = twilio_fake.trunks.values()
    assert trunk["friendly_name"] == "debt-relief-agent"
    assert trunk["domain_name"] == "debt-relief-agent.pstn.twilio.com"
    assert (trunk["transfer_mode"], trunk["transfer_caller_id"]) == ("enable-all", "from-transferee")
    [origination] = twilio_fake.origination_urls[trunk["sid"]].values()
    assert origination["sip_url"] == "sip:abc123.sip.livekit.cloud" and origination["enabled"] is True
    [cred_list] = twilio_fake.credential_lists.values()
    [credential] = twilio_fake.credentials[cred_list["sid"]].values()
    assert credential["username"] == "livekit-out"
    assert (
        "POST",
        f"/2010-04-01/Accounts/{ACCOUNT_SID}/SIP/CredentialLists/{cred_list['sid']}/Credentials.json",
        {"Username": "livekit-out", "Password": SIP_PASSWORD},
    ) in twilio_fake.writes()
    assert list(twilio_fake.trunk_credential_lists[trunk["sid"]]) == [cred_list["sid"]]
    [number] = twilio_fake.trunk_phone_numbers[trunk["sid"]].values()
    assert number["phone_number"] == PHONE

    [inbound_call] = livekit.server.calls_to("SIP", "CreateSIPInboundTrunk")
    assert inbound_call.request.trunk.name == "debt-relief-agent-inbound"
    assert list(inbound_call.request.trunk.numbers) == [PHONE]
    assert inbound_call.claims.sip.admin is True
    [outbound_call] = livekit.server.calls_to("SIP", "CreateSIPOutboundTrunk")
    out_trunk = outbound_call.request.trunk
    assert (out_trunk.name, out_trunk.address) == ("debt-relief-agent-outbound", "debt-relief-agent.pstn.twilio.com")
    assert (out_trunk.auth_username, out_trunk.auth_password) == ("livekit-out", SIP_PASSWORD)
    assert list(out_trunk.numbers) == [PHONE]
    [rule_call] = livekit.server.calls_to("SIP", "CreateSIPDispatchRule")
    rule = rule_call.request.dispatch_rule
    assert rule.rule.WhichOneof("rule") == "dispatch_rule_individual"
    assert rule.rule.dispatch_rule_individual.room_prefix == "call-"
    [inbound_id] = livekit.inbound
    assert list(rule.trunk_ids) == [inbound_id]
    assert [a.agent_name for a in rule.room_config.agents] == ["debt-relief-agent"]
    [outbound_id] = livekit.outbound
    assert f"SIP_OUTBOUND_TRUNK_ID={outbound_id}" in text

    twilio_writes, lk_writes = len(twilio_fake.writes()), len(livekit.writes())
    code, text = run([], env, client)
    assert code == 0, text
    assert actions(text) == dict.fromkeys(ALL_STEPS, "unchanged")
    assert "done: 0 change(s)" in text
    assert len(twilio_fake.writes()) == twilio_writes
    assert len(livekit.writes()) == lk_writes
    assert len(livekit.inbound) == len(livekit.outbound) == len(livekit.rules) == 1


def test_dry_run_prints_the_plan_and_sends_no_writes(twilio_fake, livekit):
    recorder = RecordingHttpClient()
    client = twilio_client(twilio_fake.url, twilio_fake.url, recorder)
    code, text = run(["--dry-run"], make_env(livekit.server.url), client)
    assert code == 0, text
    assert actions(text) == dict.fromkeys(ALL_STEPS, "would create")
    assert "nothing was sent" in text
    assert recorder.sent and recorder.writes() == []  # it looked, and wrote nothing
    assert twilio_fake.writes() == []
    assert livekit.writes() == []
    assert not (twilio_fake.trunks or livekit.inbound or livekit.outbound or livekit.rules)


def test_dry_run_after_setup_plans_no_change(twilio_fake, livekit):
    client = twilio_client(twilio_fake.url, twilio_fake.url)
    env = make_env(livekit.server.url)
    assert run([], env, client)[0] == 0
    writes = len(twilio_fake.writes()), len(livekit.writes())
    code, text = run(["--dry-run"], env, client)
    assert code == 0
    assert actions(text) == dict.fromkeys(ALL_STEPS, "unchanged")
    assert "0 change(s) planned" in text
    assert (len(twilio_fake.writes()), len(livekit.writes())) == writes


def test_drifted_settings_are_repaired_and_only_they(twilio_fake, livekit):
    client = twilio_client(twilio_fake.url, twilio_fake.url)
    env = make_env(livekit.server.url)
    assert run([], env, client)[0] == 0
    [trunk] = twilio_fake.trunks.values()
    trunk["transfer_mode"] = "disable-all"  # someone turned transfers off in the console
    [out_id] = livekit.outbound
    livekit.outbound[out_id].address = "old.pstn.twilio.com"
    before = len(twilio_fake.writes())

    code, text = run([], env, client)
    assert code == 0, text
    found = actions(text)
    assert (found["twilio.trunk"], found["livekit.outbound_trunk"]) == ("updated", "updated")
    assert {s for s, a in found.items() if a != "unchanged"} == {"twilio.trunk", "livekit.outbound_trunk"}
    assert twilio_fake.writes()[before:] == [("POST", f"/v1/Trunks/{trunk['sid']}", {"TransferMode": "enable-all"})]
    [update] = livekit.server.calls_to("SIP", "UpdateSIPOutboundTrunk")
    assert update.request.sip_trunk_id == out_id
    assert update.request.replace.address == "debt-relief-agent.pstn.twilio.com"
    assert update.request.replace.auth_password == SIP_PASSWORD


def test_an_existing_trunk_keeps_its_own_termination_domain(twilio_fake, livekit):
    client = twilio_client(twilio_fake.url, twilio_fake.url)
    client.trunking.v1.trunks.create(
        friendly_name="debt-relief-agent",
        domain_name="acme-voice.pstn.twilio.com",
        transfer_mode="enable-all",
        transfer_caller_id="from-transferee",
    )
    code, text = run([], make_env(livekit.server.url), client)
    assert code == 0, text
    assert actions(text)["twilio.trunk"] == "unchanged"
    [outbound] = livekit.outbound.values()
    assert outbound.address == "acme-voice.pstn.twilio.com"


# --- failures name the step and the reason --------------------------------------------------------


def test_twilio_error_names_the_step_and_twilio_reason(twilio_fake, livekit):
    twilio_fake.fail("POST", r"/v1/Trunks", 400, 21248, "Domain name is already in use")
    client = twilio_client(twilio_fake.url, twilio_fake.url)
    code, text = run([], make_env(livekit.server.url), client)
    assert code == 1
    assert "step twilio.trunk failed: Twilio answered HTTP 400 (code 21248): " in text
    assert "Domain name is already in use" in text
    assert livekit.server.calls == []  # it stopped at the failed step


def test_wrong_twilio_credentials_name_the_first_step(twilio_fake, livekit):
    client = Client(ACCOUNT_SID, "not-the-token")
    client.trunking.base_url = client.api.base_url = twilio_fake.url
    code, text = run([], make_env(livekit.server.url), client)
    assert code == 1
    assert "step twilio.trunk failed: Twilio answered HTTP 401 (code 20003): Unable to fetch page: Authenticate" in text


def test_phone_number_not_on_the_account_is_named(twilio_fake, livekit):
    client = twilio_client(twilio_fake.url, twilio_fake.url)
    code, text = run([], make_env(livekit.server.url, TWILIO_PHONE_NUMBER="+13105551234"), client)
    assert code == 1
    assert "step twilio.phone_number failed" in text and "not a number of this Twilio account" in text
    assert "3105551234" not in text  # the number is masked


def test_two_trunks_with_our_name_is_an_error_not_a_guess(twilio_fake, livekit):
    client = twilio_client(twilio_fake.url, twilio_fake.url)
    for _ in range(2):
        client.trunking.v1.trunks.create(friendly_name="debt-relief-agent")
    code, text = run([], make_env(livekit.server.url), client)
    assert code == 1
    assert "step twilio.trunk failed: 2 trunks named 'debt-relief-agent' match" in text


def test_livekit_error_names_the_step_and_livekit_reason(twilio_fake, livekit):
    def refuse(req):
        raise TwirpError("invalid_argument", "dispatch rule conflicts with rule SDR_9", 400)

    livekit.server.on("SIP", "CreateSIPDispatchRule", refuse)
    client = twilio_client(twilio_fake.url, twilio_fake.url)
    code, text = run([], make_env(livekit.server.url), client)
    assert code == 1
    assert (
        "step livekit.dispatch_rule failed: LiveKit answered invalid_argument (HTTP 400): "
        "dispatch rule conflicts with rule SDR_9"
    ) in text


def test_unreachable_livekit_names_the_first_livekit_step(twilio_fake):
    with FakeTwirpServer() as gone:
        url = gone.url  # closed once stopped
    client = twilio_client(twilio_fake.url, twilio_fake.url)
    code, text = run([], make_env(url), client)
    assert code == 1
    assert "step livekit.inbound_trunk failed: could not reach LiveKit" in text


def test_wrong_livekit_secret_names_the_step(twilio_fake, livekit):
    client = twilio_client(twilio_fake.url, twilio_fake.url)
    env = make_env(livekit.server.url, LIVEKIT_API_SECRET="another-secret-that-is-long-enough-for-hs256")
    code, text = run([], env, client)
    assert code == 1
    assert "step livekit.inbound_trunk failed: LiveKit answered unauthenticated (HTTP 401)" in text


def test_unreachable_twilio_names_the_step(livekit):
    client = twilio_client("http://127.0.0.1:9", "http://127.0.0.1:9")
    code, text = run([], make_env(livekit.server.url), client)
    assert code == 1
    assert "step twilio.trunk failed: could not talk to Twilio" in text


# --- against Prism, serving Twilio's own OpenAPI descriptions -----------------------------------


def _prism_binary() -> str:
    if not (OAI_DIR / "twilio_trunking_v1.json").is_file():
        message = f"Twilio's OpenAPI descriptions are not at {OAI_DIR} (set TWILIO_OAI_DIR)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    for candidate in (
        os.environ.get("PRISM_BIN"),
        shutil.which("prism"),
        str(Path.home() / ".cache" / "prism" / "node_modules" / ".bin" / "prism"),
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    message = "Stoplight Prism is not installed (npm install --prefix ~/.cache/prism @stoplight/prism-cli)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def prism(tmp_path_factory):
    """Prism mock servers for Twilio's trunking v1 and api v2010 descriptions: {domain: url}."""
    binary = _prism_binary()
    logs = tmp_path_factory.mktemp("prism")
    servers, procs = {}, []
    try:
        for domain, spec in (("trunking", "twilio_trunking_v1.json"), ("api", "twilio_api_v2010.json")):
            port = _free_port()
            log = open(logs / f"{domain}.log", "w")  # noqa: SIM115 (closed with the process)
            procs.append(
                (
                    subprocess.Popen(
                        [binary, "mock", str(OAI_DIR / spec), "-h", "127.0.0.1", "-p", str(port)],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    ),
                    log,
                )
            )
            servers[domain] = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        for domain, url in servers.items():
            while True:
                try:
                    requests.get(url, timeout=2)
                    break
                except requests.ConnectionError:
                    if time.monotonic() > deadline:
                        pytest.fail(f"Prism for {domain} did not start: {(logs / f'{domain}.log').read_text()[-2000:]}")
                    time.sleep(0.3)
        yield servers
    finally:
        for proc, log in procs:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


@pytest.mark.slow
def test_every_request_of_a_full_run_has_the_shape_twilio_accepts(prism, twilio_fake, livekit):
    """The stateful fake answers; each request is also sent to Prism, which checks it against
    Twilio's description (422 for a bad or missing field, 401 without auth)."""
    # Both domains live on the fake; /v1 goes to the trunking description, /2010-04-01 to the api one.
    recorder = RecordingHttpClient(
        shadow={
            f"{twilio_fake.url}/v1/": f"{prism['trunking']}/v1/",
            f"{twilio_fake.url}/2010-04-01/": f"{prism['api']}/2010-04-01/",
        }
    )
    client = twilio_client(twilio_fake.url, twilio_fake.url, recorder)
    code, text = run([], make_env(livekit.server.url), client)
    assert code == 0, text
    writes = [(m, p) for m, p, status, body in recorder.prism_verdicts if m != "GET"]
    assert len(writes) == 6  # trunk, origination URL, credential list, credential, attach list, attach number
    rejected = [(m, p, status, body) for m, p, status, body in recorder.prism_verdicts if not 200 <= status < 300]
    assert rejected == []


@pytest.mark.slow
def test_provisioning_straight_against_prism_creates_with_valid_requests(prism, livekit):
    recorder = RecordingHttpClient()
    client = twilio_client(prism["trunking"], prism["api"], recorder)
    # Prism answers with Twilio's example data: its example account number is +18089255327.
    code, text = run([], make_env(livekit.server.url, TWILIO_PHONE_NUMBER="+18089255327"), client)
    assert code == 0, text
    posted = {url.split("/", 3)[3]: data for method, url, data in recorder.writes()}
    assert posted["v1/Trunks"] == {
        "FriendlyName": "debt-relief-agent",
        "DomainName": "debt-relief-agent.pstn.twilio.com",
        "TransferMode": "enable-all",
        "TransferCallerId": "from-transferee",
    }
    origination = next(d for p, d in posted.items() if p.endswith("/OriginationUrls"))
    assert origination == {
        "Weight": 1,
        "Priority": 1,
        "Enabled": "true",
        "FriendlyName": "LiveKit SIP",
        "SipUrl": "sip:abc123.sip.livekit.cloud",
    }


@pytest.mark.slow
def test_a_found_trunk_is_updated_with_valid_requests_against_prism(prism, livekit):
    """Prism's example trunk list holds a trunk named 'friendly_name' with transfers disabled:
    the run finds it (no create) and updates only the transfer mode."""
    recorder = RecordingHttpClient()
    client = twilio_client(prism["trunking"], prism["api"], recorder)
    env = make_env(livekit.server.url, TWILIO_PHONE_NUMBER="+18089255327", SIP_TRUNK_NAME="friendly_name")
    code, text = run([], env, client)
    assert code == 0, text
    assert actions(text)["twilio.trunk"] == "updated"
    trunk_writes = [
        (url.split("/", 3)[3], data)
        for m, url, data in recorder.writes()
        if "/OriginationUrls" not in url and url.split("/", 3)[3].startswith("v1/Trunks")
    ]
    assert trunk_writes[0][0].startswith("v1/Trunks/TK") and trunk_writes[0][1] == {"TransferMode": "enable-all"}
    assert not any(path == "v1/Trunks" for path, _ in trunk_writes)  # found, not created
    [outbound] = livekit.outbound.values()
    assert outbound.address == "test.pstn.twilio.com"  # the found trunk's own domain


@pytest.mark.slow
def test_prism_refuses_a_request_twilio_would_refuse(prism, livekit, monkeypatch):
    """The check is live: a transfer mode outside Twilio's enum is a 422 and names the step."""
    monkeypatch.setattr(twilio_trunk, "TRANSFER_MODE", "enable-pstn")
    client = twilio_client(prism["trunking"], prism["api"])
    code, text = run([], make_env(livekit.server.url, TWILIO_PHONE_NUMBER="+18089255327"), client)
    assert code == 1
    assert "step twilio.trunk failed: Twilio answered HTTP 422" in text
