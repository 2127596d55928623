"""`POST /api/test_function`: run one of the agent's four backend functions by hand.

The function's own result is passed through unchanged: 200 when `success` is true, 400 when
false. A body that is not `{"function": <one of the four>, "arguments": {...}}`, an unknown or
missing argument, or an argument of the wrong JSON type is an API error (400, the envelope); a
number with a zero fraction (`5.0`) is an integer. The OpenAPI document describes each
function's arguments with the checks the function makes, so a well-formed call succeeds.
"""

from __future__ import annotations

import inspect
import json
import types
import typing

from flask import Blueprint, request

from backend.api import get_backend
from backend.api.auth import require_token
from backend.api.errors import ApiError
from backend.backend_agent import TOOL_NAMES

FUNCTIONS = TOOL_NAMES
# what the agent passes from the call itself, not an argument anybody else gives
NOT_ARGUMENTS = frozenset({"details", "usage"})

bp = Blueprint("api_test_function", __name__, url_prefix="/api")
bp.before_request(require_token)


def _accepts(hint: object, value: object) -> bool:
    """Whether a JSON value fits a parameter annotation (str, int, float, dict, X | None, Any)."""
    if hint is typing.Any:
        return True
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return any(_accepts(h, value) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if isinstance(value, bool):
        return hint is bool
    if hint is float:
        return isinstance(value, int | float)
    return isinstance(value, typing.get_origin(hint) or hint)


def _arguments(method, arguments: dict) -> dict:
    signature = inspect.signature(method)
    hints = typing.get_type_hints(method)
    unknown = sorted(set(arguments) - (set(signature.parameters) - NOT_ARGUMENTS))
    if unknown:
        raise ApiError(400, "unknown_argument", f"Unknown argument(s): {', '.join(unknown)}.")
    missing = [n for n, p in signature.parameters.items() if p.default is p.empty and n not in arguments]
    if missing:
        raise ApiError(400, "missing_argument", f"Missing argument(s): {', '.join(missing)}.")
    out = {}
    for name, value in arguments.items():
        hint = hints.get(name, typing.Any)
        # JSON has one kind of number: 5.0 is the integer 5 (as JSON Schema's "integer" says)
        if isinstance(value, float) and value.is_integer() and not _accepts(hint, value) and _accepts(hint, 0):
            value = int(value)
        if not _accepts(hint, value):
            raise ApiError(400, "invalid_argument", f"Argument {name} has the wrong type.")
        out[name] = value
    return out


def _not_json(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _body() -> tuple[str, dict]:
    try:  # Python's json reads NaN and Infinity, which no store record may hold (it answered 500)
        body = json.loads(request.get_data(cache=True), parse_constant=_not_json)
    except ValueError:  # includes JSONDecodeError and UnicodeDecodeError
        body = None
    if body is None:
        raise ApiError(400, "invalid_json", "The body must be a JSON object.")
    if not isinstance(body, dict) or set(body) - {"function", "arguments"}:
        raise ApiError(400, "invalid_body", 'The body must be {"function": ..., "arguments": {...}}.')
    function, arguments = body.get("function"), body.get("arguments", {})
    if function not in FUNCTIONS:
        raise ApiError(400, "unknown_function", f"function must be one of: {', '.join(FUNCTIONS)}.")
    if not isinstance(arguments, dict):
        raise ApiError(400, "invalid_body", "arguments must be a JSON object.")
    return function, arguments


@bp.post("/test_function")
def test_function():
    function, arguments = _body()
    agent = get_backend()
    method = getattr(agent, function)
    result = method(**_arguments(method, arguments))
    return result, 200 if result.get("success") else 400
