"""Phone numbers: the one normaliser (E.164), its lenient form for the do-not-call list and the
dashboard's filter, the one masker for logs, and a number's time zones. Pure: no network."""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import timezone as pn_timezone

E164_SHAPE = re.compile(r"\+[1-9][0-9]{6,14}")
NUMBER_TEXT = re.compile(r"\+?[0-9 ().\-]*")  # what a number may be written with


class InvalidPhoneNumber(ValueError):
    """The text is not a valid phone number in E.164 form (`+` then country code and number)."""


def normalize_e164(number: str, default_region: str | None = None) -> str:
    """Return `number` in E.164 form (`+12125551234`), or raise InvalidPhoneNumber.

    Spaces, dashes, dots and brackets are accepted. Without `default_region` the number must
    start with `+` and its country code; with it (for example "US"), national forms are read in
    that region. The number must be valid for its region (phonenumbers' metadata), not only
    possible: `+1 555 123 4567` is refused, since 555 is no area code.
    """
    if not isinstance(number, str) or not number.strip():
        raise InvalidPhoneNumber("A phone number is required.")
    text = number.strip()
    if default_region is None and not text.startswith("+"):
        raise InvalidPhoneNumber("The phone number must be in E.164 form, starting with + and the country code.")
    if not NUMBER_TEXT.fullmatch(text):  # phonenumbers would drop trailing junk, read letters as digits
        raise InvalidPhoneNumber(
            "The phone number must be + and the digits (spaces, dashes, dots and brackets allowed)."
        )
    try:
        parsed = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(f"The phone number cannot be read: {exc._msg}") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhoneNumber("The phone number is not a valid number for its country.")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def redact_number(number: str | None) -> str:
    """A phone number safe for INFO logs: country code kept, all but the last two digits masked.
    The one masker: logs, the agent and the provisioning tool all use it."""
    if not number:
        return "<none>"
    digits = number.lstrip("+")
    if len(digits) <= 4:
        return "***"
    return f"+{digits[:1]}{'*' * (len(digits) - 3)}{digits[-2:]}"


def timezones_for_number(number: str) -> list[str]:
    """IANA time zones of the area the number belongs to (sorted; empty when unknown).

    From the area code via phonenumbers' geocoding data: `+12125551234` gives
    `["America/New_York"]`; an area code that spans zones (`+1 208` Idaho) gives all of them.
    Raises InvalidPhoneNumber for an invalid number.
    """
    parsed = phonenumbers.parse(normalize_e164(number), None)
    zones = pn_timezone.time_zones_for_number(parsed)
    return sorted(z for z in zones if z != pn_timezone.UNKNOWN_TIMEZONE)


def listed_number(number: str) -> str:
    """The key a number is kept under on the do-not-call list: its E.164 form.

    A number phonenumbers does not know as valid but shaped like E.164 (a caller id from a new
    range, say) is kept as given: an opt-out must never be lost to number metadata.
    Raises InvalidPhoneNumber for anything else (a console or web caller's identity).
    """
    try:
        return normalize_e164(number)
    except InvalidPhoneNumber:
        text = number.strip().replace(" ", "").replace("-", "") if isinstance(number, str) else ""
        if E164_SHAPE.fullmatch(text):
            return text
        raise


def caller_filter_number(text: str, default_region: str = "US") -> str:
    """What a qualifier typed in a caller filter (`(212) 555-1234`), as the E.164 id the store
    keeps; text that is no possible number is returned as typed (it may be a console caller)."""
    text = text.strip()
    try:
        parsed = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException:
        return text
    if not phonenumbers.is_possible_number(parsed):
        return text
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
