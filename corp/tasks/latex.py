"""``\\boxed{}`` answers: extraction and a normal form, so that equal answers written differently match.

Normalisation (MATH-500 style): spaces and LaTeX spacing, ``\\left``/``\\right``, ``\\dfrac``/``\\tfrac``,
``$``, ``%``, degrees, ``\\text{}`` wrappers, trailing units and a leading ``x =`` are removed; braces
are added to ``\\frac12`` and ``\\sqrt2``. Answers that are plain numbers or fractions compare by
value (``0.5`` = ``\\frac{1}{2}`` = ``1/2``); everything else compares as normalised text.
"""

from __future__ import annotations

import re
from fractions import Fraction

from corp.tasks.answers import canonical_number

_BOX = re.compile(r"\\(?:boxed|fbox)\s*")
_UNIT = re.compile(r"^(-?[\d.,/]+)\s*(?:[a-zA-Z]+\s*)+(?:\^\{?\d\}?)?$")  # "5 cm", "12 square feet", "3m^2"
_FRAC = re.compile(r"^(-?)\\frac\{(-?\d+)\}\{(-?\d+)\}$")
MAX_CHARS = 1000  # longer "answers" are never right; the bound keeps normalisation cheap


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (balanced braces) or ``\\boxed 5``; None when absent or unclosed."""
    starts = [m.end() for m in _BOX.finditer(text)]
    if not starts:
        return None
    i = starts[-1]
    if i < len(text) and text[i] != "{":
        return re.split(r"[\s$]", text[i:], maxsplit=1)[0] or None
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1 : j]
    return None


def _unwrap(s: str, command: str) -> str:
    """``\\command{X}`` -> ``X`` (innermost first, balanced braces not needed for simple content)."""
    pattern = re.compile(rf"\\{command}\s*\{{([^{{}}]*)\}}")
    while True:
        new = pattern.sub(r"\1", s)
        if new == s:
            return s
        s = new


def _argument(s: str, i: int) -> tuple[str, int]:
    """The argument of a command starting at ``s[i]``: a braced group, a command name or one character."""
    if i >= len(s):
        return "", i
    if s[i] == "{":
        depth = 0
        for j in range(i, len(s)):
            depth += {"{": 1, "}": -1}.get(s[j], 0)
            if depth == 0:
                return s[i + 1 : j], j + 1
        return s[i + 1 :], len(s)
    if s[i] == "\\":
        name = re.match(r"\\[a-zA-Z]+", s[i:])
        if name:
            return name.group(0), i + len(name.group(0))
    return s[i], i + 1


def _brace_arguments(s: str) -> str:
    """Write every ``\\frac`` and ``\\sqrt`` argument in braces: ``\\frac12`` -> ``\\frac{1}{2}``."""
    out, i = [], 0
    while i < len(s):
        command = re.match(r"\\(frac|sqrt)(?![a-zA-Z])", s[i:])
        if not command:
            out.append(s[i])
            i += 1
            continue
        i += len(command.group(0))
        args = []
        for _ in range(2 if command.group(1) == "frac" else 1):
            while i < len(s) and s[i] == " ":
                i += 1
            arg, i = _argument(s, i)
            args.append("{" + _brace_arguments(arg) + "}")
        out.append(command.group(0) + "".join(args))
    return "".join(out)


def normalize(answer: str) -> str:
    """A normal form of a LaTeX answer (see the module docstring)."""
    s = answer.strip()[:MAX_CHARS]
    for command in ("text", "textbf", "mathrm", "mbox", "boxed"):
        s = _unwrap(s, command)
    for old, new in (("\\left", ""), ("\\right", ""), ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"),
                     ("^{\\circ}", ""), ("^\\circ", ""), ("\\$", ""), ("$", ""), ("\\%", ""), ("%", ""),
                     ("\\!", ""), ("\\,", ""), ("\\;", ""), ("\\:", ""), ("\\ ", ""), ("~", ""), ("\n", "")):  # fmt: skip
        s = s.replace(old, new)
    s = _brace_arguments(s)
    s = re.sub(r"^[a-zA-Z]\s*=\s*", "", s.strip())  # "x = 5" -> "5"
    unit = _UNIT.match(s.strip())
    if unit:
        s = unit.group(1)
    s = s.replace(" ", "").rstrip(".")
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    return s


def value(normal: str) -> Fraction | None:
    """The exact value of a normalised answer that is a number or a simple fraction, else None."""
    frac = _FRAC.match(normal)
    if frac:
        sign, num, den = frac.groups()
        return None if int(den) == 0 else Fraction(int(num), int(den)) * (-1 if sign else 1)
    number = canonical_number(normal)
    return None if number is None else Fraction(number)


def canonical(answer: str) -> str:
    """The vote key of an answer: its value as a canonical number when it has one, else its normal form."""
    normal = normalize(answer)
    number = value(normal)
    return normal if number is None else canonical_number(str(number)) or normal


def equivalent(answer: str, reference: str) -> bool:
    """Whether two answers are the same after normalisation (by value when both are numbers)."""
    return canonical(answer) == canonical(reference)
