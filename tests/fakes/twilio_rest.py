"""A small stateful fake of the Twilio REST resources SIP provisioning uses, on 127.0.0.1.

Prism (served from Twilio's OpenAPI descriptions) checks request shapes but keeps no state;
this fake keeps state, so a second provisioning run can find what the first created. It serves
both domains on one port: point `client.trunking.base_url` and `client.api.base_url` at
`fake.url`. Every request is recorded as `(method, path, form)`; `fail(...)` makes a route
answer with a Twilio error body.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_TRUNK = r"/v1/Trunks/(?P<trunk>TK\w+)"
_ACCOUNT = r"/2010-04-01/Accounts/(?P<account>AC\w+)"


class FakeTwilio:
    def __init__(self, account_sid: str, auth_token: str) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.trunks: dict[str, dict[str, Any]] = {}
        self.origination_urls: dict[str, dict[str, dict[str, Any]]] = {}
        self.trunk_credential_lists: dict[str, dict[str, dict[str, Any]]] = {}
        self.trunk_phone_numbers: dict[str, dict[str, dict[str, Any]]] = {}
        self.credential_lists: dict[str, dict[str, Any]] = {}
        self.credentials: dict[str, dict[str, dict[str, Any]]] = {}
        self.incoming_numbers: dict[str, dict[str, Any]] = {}
        self._failures: list[tuple[str, re.Pattern[str], int, dict[str, Any]]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeTwilio:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def writes(self) -> list[tuple[str, str, dict[str, str]]]:
        return [r for r in self.requests if r[0] != "GET"]

    def add_incoming_number(self, phone_number: str) -> str:
        sid = self._sid("PN")
        self.incoming_numbers[sid] = {"sid": sid, "phone_number": phone_number, "account_sid": self.account_sid}
        return sid

    def fail(self, method: str, path_pattern: str, status: int, code: int, message: str) -> None:
        body = {
            "code": code,
            "message": message,
            "status": status,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
        }
        self._failures.append((method, re.compile(path_pattern), status, body))

    def _sid(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):032x}"

    # --- routing -------------------------------------------------------------------------
    def _route(self, method: str, path: str, form: dict[str, str], query: dict[str, str]) -> tuple[int, Any]:
        for fail_method, pattern, status, body in self._failures:
            if fail_method == method and pattern.fullmatch(path):
                return status, body
        routes = [
            ("GET", r"/v1/Trunks", lambda m: self._list_v1("trunks", self.trunks)),
            ("POST", r"/v1/Trunks", lambda m: self._create_trunk(form)),
            ("POST", _TRUNK, lambda m: self._update(self.trunks[m["trunk"]], form)),
            (
                "GET",
                _TRUNK + "/OriginationUrls",
                lambda m: self._list_v1("origination_urls", self._sub(self.origination_urls, m)),
            ),
            ("POST", _TRUNK + "/OriginationUrls", lambda m: self._create_origination(m, form)),
            (
                "POST",
                _TRUNK + r"/OriginationUrls/(?P<sid>OU\w+)",
                lambda m: self._update(self._sub(self.origination_urls, m)[m["sid"]], form),
            ),
            (
                "GET",
                _TRUNK + "/CredentialLists",
                lambda m: self._list_v1("credential_lists", self._sub(self.trunk_credential_lists, m)),
            ),
            (
                "POST",
                _TRUNK + "/CredentialLists",
                lambda m: self._attach(
                    self.trunk_credential_lists, m, form["CredentialListSid"], self.credential_lists
                ),
            ),
            (
                "GET",
                _TRUNK + "/PhoneNumbers",
                lambda m: self._list_v1("phone_numbers", self._sub(self.trunk_phone_numbers, m)),
            ),
            (
                "POST",
                _TRUNK + "/PhoneNumbers",
                lambda m: self._attach(self.trunk_phone_numbers, m, form["PhoneNumberSid"], self.incoming_numbers),
            ),
            (
                "GET",
                _ACCOUNT + r"/SIP/CredentialLists\.json",
                lambda m: self._list_2010("credential_lists", self.credential_lists),
            ),
            ("POST", _ACCOUNT + r"/SIP/CredentialLists\.json", lambda m: self._create_credential_list(form)),
            (
                "GET",
                _ACCOUNT + r"/SIP/CredentialLists/(?P<cl>CL\w+)/Credentials\.json",
                lambda m: self._list_2010("credentials", self.credentials.get(m["cl"], {})),
            ),
            (
                "POST",
                _ACCOUNT + r"/SIP/CredentialLists/(?P<cl>CL\w+)/Credentials\.json",
                lambda m: self._create_credential(m, form),
            ),
            (
                "GET",
                _ACCOUNT + r"/IncomingPhoneNumbers\.json",
                lambda m: self._list_2010(
                    "incoming_phone_numbers",
                    {
                        k: v
                        for k, v in self.incoming_numbers.items()
                        if v["phone_number"] == query.get("PhoneNumber", v["phone_number"])
                    },
                ),
            ),
        ]
        for route_method, pattern, action in routes:
            match = re.fullmatch(pattern, path)
            if route_method == method and match:
                try:
                    return action(match)
                except KeyError as err:
                    return 404, {
                        "code": 20404,
                        "message": f"The requested resource {path} was not found ({err})",
                        "status": 404,
                    }
        return 404, {"code": 20404, "message": f"no route {method} {path}", "status": 404}

    def _sub(self, table: dict[str, dict[str, Any]], match: re.Match[str]) -> dict[str, Any]:
        if match["trunk"] not in self.trunks:
            raise KeyError(match["trunk"])
        return table.setdefault(match["trunk"], {})

    def _list_v1(self, key: str, items: dict[str, Any]) -> tuple[int, Any]:
        return 200, {"meta": {"key": key, "next_page_url": None, "page": 0, "page_size": 50}, key: list(items.values())}

    def _list_2010(self, key: str, items: dict[str, Any]) -> tuple[int, Any]:
        return 200, {key: list(items.values()), "next_page_uri": None, "page": 0, "page_size": 50}

    def _update(self, item: dict[str, Any], form: dict[str, str]) -> tuple[int, Any]:
        for name, value in form.items():
            snake = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
            item[snake] = value == "true" if value in {"true", "false"} else value
        return 200, item

    def _create_trunk(self, form: dict[str, str]) -> tuple[int, Any]:
        sid = self._sid("TK")
        trunk = {
            "sid": sid,
            "account_sid": self.account_sid,
            "transfer_mode": "disable-all",
            "transfer_caller_id": "from-transferee",
            "domain_name": None,
            "friendly_name": None,
        }
        self.trunks[sid] = trunk
        self._update(trunk, form)
        return 201, trunk

    def _create_origination(self, match: re.Match[str], form: dict[str, str]) -> tuple[int, Any]:
        sid = self._sid("OU")
        item = {"sid": sid, "trunk_sid": match["trunk"]}
        self._sub(self.origination_urls, match)[sid] = item
        self._update(item, form)
        item["weight"], item["priority"] = int(item["weight"]), int(item["priority"])
        return 201, item

    def _attach(self, table: dict[str, Any], match: re.Match[str], sid: str, source: dict[str, Any]) -> tuple[int, Any]:
        if sid not in source:
            return 404, {"code": 20404, "message": f"{sid} was not found", "status": 404}
        item = dict(source[sid], trunk_sid=match["trunk"])
        self._sub(table, match)[sid] = item
        return 201, item

    def _create_credential_list(self, form: dict[str, str]) -> tuple[int, Any]:
        sid = self._sid("CL")
        self.credential_lists[sid] = {
            "sid": sid,
            "friendly_name": form["FriendlyName"],
            "account_sid": self.account_sid,
        }
        return 201, self.credential_lists[sid]

    def _create_credential(self, match: re.Match[str], form: dict[str, str]) -> tuple[int, Any]:
        if match["cl"] not in self.credential_lists:
            raise KeyError(match["cl"])
        sid = self._sid("CR")
        item = {"sid": sid, "username": form["Username"], "credential_list_sid": match["cl"]}
        self.credentials.setdefault(match["cl"], {})[sid] = item
        return 201, item

    # --- HTTP ----------------------------------------------------------------------------
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                form = {k: v[-1] for k, v in parse_qs(body).items()}
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                expected = "Basic " + base64.b64encode(f"{fake.account_sid}:{fake.auth_token}".encode()).decode()
                with fake._lock:
                    fake.requests.append((self.command, parts.path, form))
                    if self.headers.get("Authorization") != expected:
                        status, payload = 401, {"code": 20003, "message": "Authenticate", "status": 401}
                    else:
                        status, payload = fake._route(self.command, parts.path, form, query)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
