"""Schemathesis hooks for tests/test_api_gunicorn.py: how to make a valid cursor.

Cursors are opaque: only the server makes valid ones, so the OpenAPI document gives each
route's cursor a custom format (`information-cursor`, ...) and these strategies make values of
that format the way the server does. Any other string is rightly a 400 `bad_cursor`.
"""

import schemathesis
from hypothesis import strategies as st

from backend.api.params import encode_cursor

_seq = st.integers(min_value=1, max_value=2**40)

schemathesis.openapi.format(
    "information-cursor",
    st.one_of(
        _seq.map(lambda n: encode_cursor("information", before=n)),
        _seq.map(lambda n: encode_cursor("information", after=n)),
    ),
)
schemathesis.openapi.format("sessions-cursor", _seq.map(lambda n: encode_cursor("sessions", before=n)))
schemathesis.openapi.format("calls-cursor", _seq.map(lambda n: encode_cursor("calls", before=n)))


@schemathesis.check
def calls_503_only_when_unconfigured(ctx, response, case):
    """The test server has no outbound trunk, so by the contract a well-formed, allowed call to
    POST /api/calls ends in 503 `outbound_not_configured`. The per-operation config accepts 503
    there; this check makes sure no other 5xx (a store failure, a crash) hides behind it."""
    if case.operation.label == "POST /api/calls" and response.status_code >= 500:
        code = (response.json() or {}).get("error", {}).get("code")
        assert response.status_code == 503 and code == "outbound_not_configured", (response.status_code, code)
