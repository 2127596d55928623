"""Schemathesis hooks for tests/test_api_gunicorn.py's run against a server without outbound
calling configured.

Nothing else is needed any more: the OpenAPI document itself says what a well-formed request is,
cursors included (each route's cursor parameter has a pattern matching exactly the cursors it
gives out, so the custom cursor formats and their strategies that used to live here are gone).
The no-hooks run in the same test file checks that.
"""

import schemathesis


@schemathesis.check
def calls_503_only_when_unconfigured(ctx, response, case):
    """The test server has no outbound trunk, so by the contract a well-formed, allowed call to
    POST /api/calls ends in 503 `outbound_not_configured`. The per-operation config accepts 503
    there; this check makes sure no other 5xx (a store failure, a crash) hides behind it."""
    if case.operation.label == "POST /api/calls" and response.status_code >= 500:
        code = (response.json() or {}).get("error", {}).get("code")
        assert response.status_code == 503 and code == "outbound_not_configured", (response.status_code, code)
