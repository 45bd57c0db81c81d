"""Phone numbers as CRMs store them and as lookups must match them (``phonenumbers``).

The same rule as the mapping language's ``phone`` filter (``mappings.templates``);
each layer keeps its own copy because neither may import the other.
"""

from __future__ import annotations

from typing import Any

import phonenumbers


def parse_phone(value: Any, region: str | None) -> phonenumbers.PhoneNumber | None:
    """The number in ``value`` read in ``region``, or None when it is not a valid number."""
    text = str(value).strip() if value is not None else ""
    if not text:
        return None
    try:
        number = phonenumbers.parse(text, region or None)
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_valid_number(number) else None


def format_phone(value: Any, region: str | None, style: str) -> str | None:
    """``e164``, ``national`` (international for a number of another region) or
    ``international``; a value that is no valid number comes back stripped."""
    number = parse_phone(value, region)
    if number is None:
        text = str(value).strip() if value is not None else ""
        return text or None
    fmt = phonenumbers.PhoneNumberFormat
    if style == "e164":
        return phonenumbers.format_number(number, fmt.E164)
    if style == "national" and region and phonenumbers.region_code_for_number(number) == region:
        return phonenumbers.format_number(number, fmt.NATIONAL)
    return phonenumbers.format_number(number, fmt.INTERNATIONAL)
