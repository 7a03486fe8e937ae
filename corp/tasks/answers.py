"""Answer extraction shared by tasks: tagged answers and numbers."""

from __future__ import annotations

import re
from fractions import Fraction

_MINUS = str.maketrans({"\u2212": "-", "\u2013": "-"})
# A number: thousands-grouped ("1,234") or plain digits, optional decimals; "-" is a sign only
# when it does not follow a digit ("12-3" ends in 3, not -3).
_NUMBER = re.compile(r"((?<!\d)-)?(\d{1,3}(?:,\d{3})+(?!\d)|\d+)(\.\d+)?")
# What canonical_number accepts once commas, units and spaces are gone: no exponents, so a
# hostile "1e999999999" is never expanded.
_PLAIN = re.compile(r"[-+]?(\d{1,60}(\.\d{1,60})?|\.\d{1,60}|\d{1,60}/\d{1,60})")


class MissingExtra(ImportError, ValueError):
    """An optional package a task needs is not installed (a ValueError, so runs report it in one line)."""


def last_tagged(text: str, tag: str) -> str | None:
    """The stripped content of the last ``<tag>...</tag>``, or None.

    An unclosed tag at the very end counts, so the answer does not depend on whether decoding
    kept the closing stop string.
    """
    found = re.findall(rf"<{tag}>(.*?)(?:</{tag}>|$)", text, flags=re.DOTALL)
    return found[-1].strip() if found else None


def canonical_number(text: str) -> str | None:
    """``text`` as a canonical number string if it is exactly one number, else None.

    Commas, spaces, ``$`` and ``%`` are dropped; ``9.0`` -> ``9``, ``0.50`` and ``1/2`` -> ``0.5``,
    ``2/6`` -> ``1/3``; so equal values compare equal as strings.
    """
    s = text.translate(_MINUS).replace(",", "").replace("$", "").replace("%", "").replace(" ", "")
    s = s.rstrip(".")
    if not _PLAIN.fullmatch(s):
        return None
    try:
        value = Fraction(s)
    except ZeroDivisionError:
        return None
    if value.denominator == 1:
        return str(value.numerator)
    for places in range(1, 20):  # a terminating decimal is written as one, exactly: 1/2 -> 0.5
        if 10**places % value.denominator == 0:
            digits = str(abs(value.numerator) * (10**places // value.denominator)).rjust(places + 1, "0")
            return f"{'-' if value < 0 else ''}{digits[:-places]}.{digits[-places:]}"
    return f"{value.numerator}/{value.denominator}"


def first_number(text: str) -> str | None:
    """The first number in ``text``, canonical, or None (for "#### 18 dollars per 2 days")."""
    match = _NUMBER.search(text.translate(_MINUS))
    return None if match is None else canonical_number(match.group(0))


def last_number(text: str) -> str | None:
    """The last number in ``text``, canonical (commas dropped, ``9.0`` -> ``9``, ``0.50`` -> ``0.5``), or None."""
    matches = list(_NUMBER.finditer(text.translate(_MINUS)))
    if not matches:
        return None
    return canonical_number(matches[-1].group(0))
