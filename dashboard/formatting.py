"""How the dashboard shows values to people: phone numbers, durations, money, labels and UTC
fallback text for timestamps (the browser converts those to the viewer's own time zone)."""

from __future__ import annotations

from typing import Any

import phonenumbers

from backend.api.data import parse_iso

NONE = "\N{EN DASH}"  # shown where there is no value
CATEGORY_LABELS = {
    "contact_details": "Contact details",
    "debt_info": "Debt",
    "personal_info": "Personal",
    "qualification": "Qualification",
    "conversation_flow": "Conversation",
}
OUTCOME_LABELS = {
    "qualified": "Qualified",
    "callback": "Callback",
    "not_qualified": "Not qualified",
    "not_interested": "Not interested",
    "do_not_call": "Do not call",
    "no_contact": "No contact",
    "incomplete": "Incomplete",
    "completed": "Completed",
}
# The words of the `fields` vocabularies (backend/schemas/fields/*.json; a test checks that
# every value the schemas allow has one).
DEBT_TYPE_LABELS = {
    "credit_card": "Credit card",
    "medical": "Medical",
    "personal_loan": "Personal loan",
    "student_loan": "Student loan",
    "payday_loan": "Payday loan",
    "auto_loan": "Auto loan",
    "mortgage": "Mortgage",
    "tax": "Tax",
    "business": "Business",
    "collections": "Collections",
    "other": "Other",
}
DISCLOSURE_LABELS = {
    "business_name": "Business name",
    "ai_assistant": "AI assistant",
    "call_recorded": "Call is recorded",
    "callback_number": "Callback number",
}
RECORDING_STATUS_LABELS = {"recording": "Recording", "completed": "Recorded", "failed": "Not recorded"}
WEBHOOK_STATE_LABELS = {
    "queued": "Queued",
    "delivering": "Delivering",
    "retrying": "Retrying",
    "done": "Delivered",
    "gave_up": "Gave up",
    "skipped": "Skipped",
}
WEBHOOK_TYPE_LABELS = {"call.ended": "Call ended", "call.summary": "Summary"}
ATTEMPT_OUTCOME_LABELS = {
    "in_progress": "In progress",
    "delivered": "Delivered",
    "failed": "Failed",
    "skipped": "Skipped",
    "abandoned": "Worker stopped before answering",
}
VALUE_LABELS = {"debt_type": DEBT_TYPE_LABELS, "disclosures": DISCLOSURE_LABELS}
HUMANISED_FIELDS = {"employment_status", "stage"}  # vocabularies without labels: underscores go
NOT_STATED = "Not stated"


def phone(number: str | None) -> str:
    """`+15551234567` -> `+1 (555) 123-4567`; other countries in international format; text
    that is not a phone number (`anonymous`, a SIP URI) comes back unchanged."""
    if not number:
        return ""
    try:
        parsed = phonenumbers.parse(number, "US")
    except phonenumbers.NumberParseException:
        return number
    national = str(parsed.national_number)
    if parsed.country_code == 1 and len(national) == 10:
        return f"+1 ({national[:3]}) {national[3:6]}-{national[6:]}"
    if not phonenumbers.is_possible_number(parsed):
        return number
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def duration(seconds: float | None) -> str:
    """420.5 -> `7m 00s`; 3725 -> `1h 02m`."""
    if seconds is None:
        return NONE
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s"


def call_clock(seconds: float) -> str:
    """Seconds from the start of the call as `m:ss` (`h:mm:ss` from an hour): 65.4 -> `1:05`."""
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def money(amount: float | None) -> str:
    if amount is None:
        return NONE
    return f"${amount:,.0f}" if float(amount).is_integer() else f"${amount:,.2f}"


def cost(amount: float | None) -> str:
    """A call's cost: `$0.034` or `$0.75` under a dollar (calls cost cents), `$1,234.50` above."""
    if amount is None:
        return NONE
    if abs(amount) >= 1:
        return f"${amount:,.2f}"
    text = f"${amount:.3f}"
    return text[:-1] if text.endswith("0") else text


def count(n: int) -> str:
    return f"{n:,}"


def percent(share: float | None) -> str:
    """0.4567 -> `45.7%`; None (nothing to divide by) -> an en dash."""
    return NONE if share is None else f"{share * 100:.1f}%"


def utc_text(timestamp: str | None) -> str:
    """The text shown before the browser's script localises a `<time>` element."""
    if not timestamp:
        return ""
    try:
        return parse_iso(timestamp).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return timestamp


def field_value(value: Any, name: str = "") -> str:
    """A `fields` value as text: amounts as money, vocabulary words by their labels (or at
    least without underscores)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(field_value(v, name) for v in value)
    if value is None:
        return NONE
    if name.endswith("_usd") and isinstance(value, int | float):
        return money(value)
    if name in VALUE_LABELS and isinstance(value, str):
        return vocabulary_label(name, value)
    if name in HUMANISED_FIELDS and isinstance(value, str):
        return value.replace("_", " ")
    return str(value)


def vocabulary_label(name: str, value: str) -> str:
    """`("debt_type", "credit_card")` -> `Credit card`; a value without a label (an imported
    record's `Credit Card`) by its normalised key's label, else as written without underscores."""
    labels = VALUE_LABELS[name]
    key = value.strip().lower().replace(" ", "_").replace("-", "_")
    return labels.get(value) or labels.get(key) or value.replace("_", " ")


def debt_type(value: Any) -> str:
    """The Debt table's type of a `debt_info` record's `debt_type` (`Not stated` when it has none)."""
    if not isinstance(value, str) or not value.strip():
        return NOT_STATED
    return vocabulary_label("debt_type", value)


def disclosure_label(key: str) -> str:
    return DISCLOSURE_LABELS.get(key) or key.replace("_", " ")


def field_name(name: str) -> str:
    """`monthly_income_usd` -> `Monthly income (USD)`."""
    text = name.replace("_", " ").strip()
    text = text[:1].upper() + text[1:]
    return text[:-4] + " (USD)" if text.endswith(" usd") else text


FILTERS = {
    "phone": phone,
    "duration": duration,
    "money": money,
    "cost": cost,
    "count": count,
    "percent": percent,
    "utc_text": utc_text,
    "field_value": field_value,
    "field_name": field_name,
    "category_label": lambda c: CATEGORY_LABELS.get(c, c),
    "outcome_label": lambda o: OUTCOME_LABELS.get(o, o or NONE),
    "webhook_state": lambda s: WEBHOOK_STATE_LABELS.get(s, s or NONE),
    "webhook_type": lambda t: WEBHOOK_TYPE_LABELS.get(t, t or NONE),
    "attempt_outcome": lambda o: ATTEMPT_OUTCOME_LABELS.get(o, o or NONE),
}
