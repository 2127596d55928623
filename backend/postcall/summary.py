"""The post-call summary and lead: a Gemini text model (google-genai `generate_content`, model
SUMMARY_MODEL, JSON output constrained by a schema) reads the call's records and transcript and
answers a summary of three sentences at most and a lead (`backend/schemas/lead.json`).

The reply is checked, not trusted: a reply that is not JSON, or a lead that breaks the schema,
is kept as it came with the error beside it, never dropped. Beside the model's qualification,
our own rule computes one from the records (unsecured debt against
QUALIFY_MIN_UNSECURED_DEBT_USD); a disagreement between the two is flagged for a qualifier.

Runs as the `summary` job (`backend/postcall/jobs.py`): without GOOGLE_API_KEY it is skipped
("skipped: no key"); a failed request is retried with backoff, its error shown on the job.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from jsonschema import Draft202012Validator

from backend.postcall import jobs
from backend.store.records import schema

log = logging.getLogger(__name__)

POLICY = jobs.Policy(max_attempts=8, first_delay=10.0, max_delay=1800.0)
MAX_SENTENCES = 3
TIMEOUT_MS = 60_000
INSTRUCTIONS = (
    "You review a recorded debt-relief qualification phone call between an AI agent and a caller. "
    "From the call's saved facts and transcript below, answer JSON only: `summary`, at most three "
    "sentences a qualifier reads first; and `lead`: the caller's name, two-letter US state, total and "
    "unsecured debt in US dollars, creditors, monthly income, hardship, the qualification decision "
    "(qualified, not_qualified or undecided) with its reason, the agreed next step, and the callback "
    "time if one was agreed. Use null for anything the call did not say; never guess."
)


def _without_meta(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if not k.startswith("$")}


def reply_schema() -> dict[str, Any]:
    """The JSON the model must answer (given to Gemini as `response_json_schema`)."""
    return {
        "type": "object",
        "required": ["summary", "lead"],
        "properties": {"summary": {"type": "string"}, "lead": _without_meta(schema("lead"))},
    }


def call_text(records: list[dict[str, Any]], transcript: list[dict[str, Any]]) -> str:
    """What the model reads: the saved facts, then the transcript (tool calls left out)."""
    facts = "\n".join(
        f"- [{r['category']}] {r['information']}" + (f" {json.dumps(r['fields'])}" if r.get("fields") else "")
        for r in records
    )
    said = "\n".join(f"{t['speaker']}: {t['text']}" for t in transcript if t["speaker"] != "tool" and t.get("text"))
    return f"{INSTRUCTIONS}\n\nSaved facts:\n{facts or '(none)'}\n\nTranscript:\n{said or '(none)'}"


def rule_qualification(records: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    """Our own decision from the records: the unsecured debts (debt_info `amount_usd`, not
    `secured`) against the threshold."""
    unsecured = sum(
        float(r["fields"]["amount_usd"])
        for r in records
        if r["category"] == "debt_info"
        and isinstance((r.get("fields") or {}).get("amount_usd"), int | float)
        and not r["fields"].get("secured")
    )
    qualified = unsecured >= threshold
    return {
        "qualified": qualified,
        "unsecured_debt_usd": round(unsecured, 2),
        "threshold_usd": threshold,
        "reason": f"unsecured debt ${unsecured:,.0f} is {'at or above' if qualified else 'below'} ${threshold:,.0f}",
    }


def check_reply(text: str | None) -> dict[str, Any]:
    """The model's reply as summary, lead and the errors found; nothing is dropped."""
    out: dict[str, Any] = {"summary": None, "lead": None, "lead_valid": False, "errors": []}
    try:
        reply = json.loads(text or "")
    except ValueError as exc:
        out["errors"].append(f"the reply is not JSON ({exc})")
        out["raw"] = (text or "")[:20_000]
        return out
    if not isinstance(reply, dict):
        out["errors"].append("the reply is not a JSON object")
        out["raw"] = (text or "")[:20_000]
        return out
    summary = reply.get("summary")
    if isinstance(summary, str) and summary.strip():
        out["summary"] = summary.strip()
        sentences = len(re.findall(r"[.!?](?:\s|$)", summary.strip())) or 1
        if sentences > MAX_SENTENCES:
            out["errors"].append(f"the summary has {sentences} sentences (at most {MAX_SENTENCES})")
    else:
        out["errors"].append("the reply has no summary")
    out["lead"] = reply.get("lead")
    problems = [
        f"lead{''.join(f'/{p}' for p in e.absolute_path)}: {e.message}"
        for e in Draft202012Validator(schema("lead")).iter_errors(out["lead"])
    ]
    out["errors"].extend(problems[:20])
    out["lead_valid"] = not problems
    return out


def model_decision(lead: Any) -> str | None:
    if isinstance(lead, dict) and isinstance(lead.get("qualification"), dict):
        decision = lead["qualification"].get("decision")
        return decision if decision in ("qualified", "not_qualified", "undecided") else None
    return None


def ask_model(settings: Any, text: str) -> tuple[str | None, dict[str, Any]]:
    """One `generate_content` call; (reply text, token usage). Raises jobs.Retry on failure."""
    from google import genai
    from google.genai import errors, types

    client = genai.Client(api_key=settings.google_api_key, http_options=types.HttpOptions(timeout=TIMEOUT_MS))
    config = types.GenerateContentConfig(response_mime_type="application/json", response_json_schema=reply_schema())
    try:
        reply = client.models.generate_content(model=settings.summary_model, contents=text, config=config)
    except errors.APIError as exc:
        raise jobs.Retry(f"Gemini answered {exc.code}: {exc.message or exc.status}") from None
    except (OSError, TimeoutError) as exc:
        raise jobs.Retry(f"Gemini could not be reached: {exc!r}") from None
    except Exception as exc:  # httpx's transport errors and timeouts: the service, not our input
        if type(exc).__module__.startswith("httpx"):
            raise jobs.Retry(f"Gemini could not be reached: {type(exc).__name__}: {exc}") from None
        raise
    usage = reply.usage_metadata
    tokens = {
        "input_tokens": getattr(usage, "prompt_token_count", None) or 0,
        "output_tokens": getattr(usage, "candidates_token_count", None) or 0,
    }
    return reply.text, tokens


def run(backend: Any, job: dict[str, Any]) -> dict[str, Any]:
    """The `summary` job of one ended call (see the module doc)."""
    settings = backend.settings
    if not settings.google_api_key:
        raise jobs.Skip("skipped: no key")
    session_id = job["payload"]["session_id"]
    found = backend.session(session_id)
    if found is None:
        raise jobs.Skip(f"skipped: session {session_id} is not in the store")
    _session, records, _call = found
    text, tokens = ask_model(settings, call_text(records, backend.transcript(session_id) or []))
    result = check_reply(text)
    rule = rule_qualification(records, settings.qualify_min_unsecured_debt_usd)
    decision = model_decision(result["lead"])
    result.update(
        model=settings.summary_model,
        usage=tokens,
        rule=rule,
        model_decision=decision,
        disagreement=decision in ("qualified", "not_qualified") and (decision == "qualified") != rule["qualified"],
    )
    if result["errors"]:
        log.warning("summary of session %s kept with %d problem(s)", session_id, len(result["errors"]))
    return result
