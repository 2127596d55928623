"""What a call cost: the realtime model's tokens (audio and text, in and out, from LiveKit's
usage of the session) priced by the table in `MODEL_PRICES`, plus its minutes at
`TELEPHONY_USD_PER_MINUTE`. Pure: no network.

`MODEL_PRICES` is JSON, US dollars per million tokens for each model LiveKit reports:
`{"gemini-live-2.5-flash": {"input_audio": 3.0, "input_text": 0.5, "output_audio": 12.0,
"output_text": 2.0}}`. A model missing from the table is not guessed: its part is left out,
the cost says why (`error`), and the usage is kept so it can be priced later.
"""

from __future__ import annotations

import json
import math
from typing import Any

TOKEN_KINDS = ("input_audio", "input_text", "output_audio", "output_text")


class PriceTableError(ValueError):
    """MODEL_PRICES is not a table of non-negative prices per model."""


def price_table(raw: str | None) -> dict[str, dict[str, float]]:
    """Parse MODEL_PRICES (empty: no model prices). Raises PriceTableError naming the problem."""
    if not raw or not raw.strip():
        return {}
    try:
        table = json.loads(raw)
    except ValueError as exc:
        raise PriceTableError(f"MODEL_PRICES is not JSON: {exc}") from None
    if not isinstance(table, dict):
        raise PriceTableError("MODEL_PRICES must be an object of model -> prices.")
    for model, prices in table.items():
        if not isinstance(prices, dict) or not prices:
            raise PriceTableError(f"MODEL_PRICES[{model!r}] must be an object of prices.")
        for kind, value in prices.items():
            if kind not in TOKEN_KINDS:
                raise PriceTableError(f"MODEL_PRICES[{model!r}] has {kind!r}; use {', '.join(TOKEN_KINDS)}.")
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or not math.isfinite(value):
                raise PriceTableError(f"MODEL_PRICES[{model!r}][{kind!r}] must be a non-negative number.")
    return table


def tokens(usage: dict[str, Any]) -> dict[str, int]:
    """One LiveKit model usage (`LLMModelUsage` as a dict) as tokens of each kind. Tokens not split
    by modality count as text."""
    audio_in, text_in = int(usage.get("input_audio_tokens", 0)), int(usage.get("input_text_tokens", 0))
    audio_out, text_out = int(usage.get("output_audio_tokens", 0)), int(usage.get("output_text_tokens", 0))
    rest_in = max(0, int(usage.get("input_tokens", 0)) - audio_in - text_in)
    rest_out = max(0, int(usage.get("output_tokens", 0)) - audio_out - text_out)
    return {
        "input_audio": audio_in,
        "input_text": text_in + rest_in,
        "output_audio": audio_out,
        "output_text": text_out + rest_out,
    }


def call_cost(
    usage: list[dict[str, Any]], duration_seconds: float, prices: dict[str, dict[str, float]], per_minute: float
) -> dict[str, Any]:
    """The call's cost with its parts: `total_usd`, `model_usd` (None when a model has no price),
    `telephony_usd`, the `usage` by model, and `error` when something could not be priced."""
    by_model: dict[str, dict[str, int]] = {}
    for item in usage:
        if item.get("type", "llm_usage") != "llm_usage":
            continue
        counted = by_model.setdefault(str(item.get("model") or "unknown"), dict.fromkeys(TOKEN_KINDS, 0))
        for kind, n in tokens(item).items():
            counted[kind] += n
    model_usd: float | None = 0.0
    missing = sorted(m for m in by_model if m not in prices)
    for model, counted in by_model.items():
        if model in prices:
            model_usd += sum(counted[k] * prices[model].get(k, 0.0) for k in TOKEN_KINDS) / 1_000_000
    if missing:
        model_usd = None
    telephony = round(max(0.0, duration_seconds) / 60.0 * per_minute, 6)
    total = round((model_usd or 0.0) + telephony, 6)
    return {
        "total_usd": total,
        "model_usd": None if model_usd is None else round(model_usd, 6),
        "telephony_usd": telephony,
        "model": ", ".join(sorted(by_model)) or None,
        "usage": by_model,
        "error": f"no price for model {', '.join(missing)} in MODEL_PRICES" if missing else None,
    }
