"""Structure and checksum rules for identifiers, as pure functions of the candidate text.

Every validator takes the candidate as written (separators allowed where the format
allows them) and returns ``True`` only when the structure rules and, where the format
has one, the check digit hold. Context (keywords nearby) is decided by the scanner,
not here.
"""

from __future__ import annotations

import datetime
import functools
import importlib.util
import re
from pathlib import Path

_NON_DIGITS = re.compile(r"\D")

# Numbers the Social Security Administration or its history made public and that
# therefore turn up in samples and test data: the Woolworth wallet card
# (078-05-1120), the SSA advertising number (219-09-9999) and the usual placeholder.
SAMPLE_SSNS = frozenset({"078051120", "219099999", "123456789"})


def digits_of(text: str) -> str:
    """Return ``text`` with every non-digit removed."""
    if text.isascii() and text.isdigit():
        # Most candidates are already bare digit runs; the substitution would copy them.
        return text
    return _NON_DIGITS.sub("", text)


def ssn_valid(candidate: str) -> bool:
    """Check SSN structure: 9 digits, area not 000, 666 or 900-999, group not 00,
    serial not 0000, and not a well-known sample number."""
    digits = digits_of(candidate)
    if len(digits) != 9:
        return False
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    if area in ("000", "666") or area[0] == "9":
        return False
    if group == "00" or serial == "0000":
        return False
    return digits not in SAMPLE_SSNS


# MBI letters exclude S, L, O, I, B and Z so they cannot be mistaken for digits.
_MBI_LETTER = "AC-HJKMNP-RT-Y"
MBI_PATTERN = re.compile(
    rf"[1-9][{_MBI_LETTER}][{_MBI_LETTER}0-9][0-9]-?"
    rf"[{_MBI_LETTER}][{_MBI_LETTER}0-9][0-9]-?"
    rf"[{_MBI_LETTER}][{_MBI_LETTER}][0-9][0-9]"
)


def mbi_valid(candidate: str) -> bool:
    """Check the Medicare Beneficiary Identifier layout (CMS MBI format specification):
    11 characters C A AN N A AN N A A N N, optionally written 4-3-4 with hyphens.

    Lower-case input is rejected: MBIs are issued and printed in capitals.
    """
    if MBI_PATTERN.fullmatch(candidate) is None:
        return False
    if "-" in candidate and (candidate[4] != "-" or candidate[8] != "-"):
        return False
    return True


def nhs_number_valid(candidate: str) -> bool:
    """Check a UK NHS number or a Scottish CHI number: 10 digits whose last is the
    modulus 11 check digit of the first nine, weighted 10 down to 2. A remainder that
    gives 10 means the number was never issued."""
    digits = digits_of(candidate)
    if len(digits) != 10:
        return False
    total = sum(
        int(digit) * weight for digit, weight in zip(digits[:9], range(10, 1, -1), strict=True)
    )
    check = 11 - total % 11
    if check == 11:
        check = 0
    return check != 10 and check == int(digits[9])


def australian_medicare_valid(candidate: str) -> bool:
    """Check an Australian Medicare card number: 10 digits, the first 2 to 6. The ninth
    is the check digit: the first eight weighted 1, 3, 7, 9, 1, 3, 7, 9, modulo 10. An
    11th digit, the person's position on the card, may follow."""
    digits = digits_of(candidate)
    if len(digits) not in (10, 11) or digits[0] not in "23456":
        return False
    total = sum(
        int(digit) * weight
        for digit, weight in zip(digits[:8], (1, 3, 7, 9, 1, 3, 7, 9), strict=True)
    )
    return total % 10 == int(digits[8])


def ontario_health_number_valid(candidate: str) -> bool:
    """Check an Ontario health card number: 10 digits whose last is the Luhn check digit
    of the first nine (a two-letter version code after it is not part of the number)."""
    digits = digits_of(candidate)
    return len(digits) == 10 and luhn_valid(digits)


def luhn_valid(digits: str) -> bool:
    """Check the Luhn (mod 10) check digit of a string of digits."""
    if not digits or not digits.isdigit():
        return False
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


# (prefix range low, high, allowed lengths) per issuer, from the public IIN ranges of
# Visa, Mastercard, American Express, Discover, JCB, Diners Club and UnionPay.
_CARD_RANGES: tuple[tuple[int, int, int, frozenset[int]], ...] = (
    (1, 4, 4, frozenset({13, 16, 19})),  # Visa
    (2, 51, 55, frozenset({16})),  # Mastercard
    (4, 2221, 2720, frozenset({16})),  # Mastercard 2-series
    (2, 34, 34, frozenset({15})),  # American Express
    (2, 37, 37, frozenset({15})),
    (4, 6011, 6011, frozenset({16, 19})),  # Discover
    (3, 644, 649, frozenset({16, 19})),
    (2, 65, 65, frozenset({16, 19})),
    (4, 3528, 3589, frozenset({16, 19})),  # JCB
    (3, 300, 305, frozenset({14, 16, 19})),  # Diners Club
    (2, 36, 36, frozenset({14, 16, 19})),
    (2, 38, 39, frozenset({16, 19})),
    (2, 62, 62, frozenset({16, 17, 18, 19})),  # UnionPay
)


def card_issuer_known(digits: str) -> bool:
    """Check that the number starts with a known issuer prefix and has that issuer's length."""
    for width, low, high, lengths in _CARD_RANGES:
        if len(digits) in lengths and low <= int(digits[:width]) <= high:
            return True
    return False


def card_valid(candidate: str) -> bool:
    """Check a payment card number: issuer prefix, length and Luhn check digit."""
    digits = digits_of(candidate)
    if not 13 <= len(digits) <= 19:
        return False
    if len(set(digits)) == 1:
        return False
    return card_issuer_known(digits) and luhn_valid(digits)


# Unix times from 2000-01-01 to 2040-01-01 in seconds, milliseconds, microseconds
# and nanoseconds: log lines and URLs are full of them.
_EPOCH_LOW = 946_684_800
_EPOCH_HIGH = 2_208_988_800


def looks_like_epoch(digits: str) -> bool:
    """Return whether a digit run reads as a Unix timestamp between 2000 and 2040."""
    if not digits.isdigit():
        return False
    scale = {10: 1, 13: 1_000, 16: 1_000_000, 19: 1_000_000_000}.get(len(digits))
    if scale is None:
        return False
    return _EPOCH_LOW * scale <= int(digits) < _EPOCH_HIGH * scale


def npi_valid(candidate: str) -> bool:
    """Check a National Provider Identifier: 10 digits starting with 1 or 2 whose last
    digit is the Luhn check digit computed over the card-issuer prefix 80840."""
    digits = digits_of(candidate)
    if len(digits) != 10 or digits[0] not in "12":
        return False
    return luhn_valid("80840" + digits)


_DEA_PATTERN = re.compile(r"[ABCDEFGHJKLMPRSTUX][A-Z9][0-9]{7}")


def dea_valid(candidate: str) -> bool:
    """Check a DEA registration number: registrant-type letter, a letter (or 9), seven
    digits, and the check digit (d1+d3+d5 + 2*(d2+d4+d6)) mod 10 == d7."""
    text = candidate.upper()
    if _DEA_PATTERN.fullmatch(text) is None:
        return False
    d = [ord(c) - 48 for c in text[2:]]
    check = (d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10
    return check == d[6]


# IBAN lengths by country (ISO 13616 registry, SWIFT release 2024).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24,
    "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31,
    "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


def iban_valid(candidate: str) -> bool:
    """Check an IBAN: known country, that country's length, and mod 97 == 1 (ISO 13616)."""
    compact = candidate.replace(" ", "").upper()
    if len(compact) < 15 or not compact.isalnum() or not compact[2:4].isdigit():
        return False
    if IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(char, 36)) for char in rearranged)
    return int(number) % 97 == 1


@functools.cache
def _icd10cm_codes() -> frozenset[str] | None:
    """Return every ICD-10-CM item of the simple-icd-10-cm package, without dots.

    The package ships its code list as a text file (one item per line, the first
    word). Reading that file takes about 0.1 s and 10 MB; importing the package parses
    its whole classification, about 2 s and 180 MB per process. Both give the same
    items (tests/detection/test_validators.py compares them). Returns None when the
    package has no single code list file, so the caller falls back to the package.
    """
    spec = importlib.util.find_spec("simple_icd_10_cm")
    if spec is None or not spec.submodule_search_locations:
        return None
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    lists = sorted(data.glob("code-list-*.txt"))
    if len(lists) != 1:
        return None
    codes = set()
    for line in lists[0].read_text(encoding="utf-8").splitlines():
        words = line.split(" ", 1)
        if words[0]:
            codes.add(words[0].replace(".", "").upper())
    if len(codes) < _MIN_ICD10CM_ITEMS:
        # A damaged or truncated file would reject real codes without a word.
        return None
    return frozenset(codes)


_MIN_ICD10CM_ITEMS = 50_000
"""Fewer items than this in the code list file is taken as a damaged file. The April
2026 list in simple-icd-10-cm 1.5 has 98,466 items (chapters, blocks, categories and
codes), about twice this limit."""


@functools.cache
def _icd10cm_module():  # type: ignore[no-untyped-def]
    import simple_icd_10_cm

    return simple_icd_10_cm


def load_icd10cm() -> None:
    """Load the ICD-10-CM code list now rather than at the first code-like token."""
    if _icd10cm_codes() is None:
        _icd10cm_module()


def icd10cm_exists(candidate: str) -> bool:
    """Check that an ICD-10-CM code (with or without its dot) is in the code list of the
    simple-icd-10-cm package. Chapter and block ranges such as ``A00-A09`` are rejected."""
    code = candidate.strip().upper()
    if not 3 <= len(code.replace(".", "")) <= 7 or "-" in code:
        return False
    if "." in code and (code.index(".") != 3 or code.endswith(".") or code.count(".") > 1):
        return False
    codes = _icd10cm_codes()
    if codes is None:
        return bool(_icd10cm_module().is_valid_item(code))
    return code.replace(".", "") in codes


NDC_LAYOUTS = frozenset({(4, 4, 2), (5, 3, 2), (5, 4, 1), (5, 4, 2)})


def ndc_shape_valid(candidate: str) -> bool:
    """Check a National Drug Code layout: 4-4-2, 5-3-2, 5-4-1 or 5-4-2 digits with hyphens,
    or 11 bare digits (the 5-4-2 billing form). NDCs carry no check digit."""
    if "-" in candidate:
        parts = candidate.split("-")
        if not all(part.isdigit() for part in parts):
            return False
        return tuple(len(part) for part in parts) in NDC_LAYOUTS
    return candidate.isdigit() and len(candidate) in (10, 11)


def date_valid(year: int, month: int, day: int) -> bool:
    """Check that the date exists in the Gregorian calendar (1 <= year <= 9999)."""
    try:
        datetime.date(year, month, day)
    except (ValueError, OverflowError):
        # OverflowError: a part too large for a C int ("2020-1-9999999999999").
        return False
    return True


_MONTHS = {
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
    "jul": 7, "aug": 8, "sep": 9, "sept": 9, "oct": 10, "nov": 11, "dec": 12,
}  # fmt: skip


def month_number(name: str) -> int | None:
    """Return 1-12 for an English month name or its abbreviation, else ``None``."""
    key = name.lower().rstrip(".")
    if key in _MONTHS:
        return _MONTHS[key]
    for prefix, number in _MONTHS.items():
        if len(key) > 3 and key.startswith(prefix) and _full_month(number).startswith(key):
            return number
    return None


def _full_month(number: int) -> str:
    return datetime.date(2000, number, 1).strftime("%B").lower()


_DATE_SEPARATOR = re.compile(r"[-/.]")


def numeric_date_valid(text: str) -> bool:
    """Check a numeric date written Y-M-D, M/D/Y, D.M.Y or with a 2-digit year.

    Any reading that is a real calendar date is enough: 03/04/1970 passes as
    March 4 or April 3.
    """
    parts = _DATE_SEPARATOR.split(text)
    if len(parts) != 3 or not all(part.isdigit() for part in parts):
        return False
    a, b, c = parts
    if len(a) == 4:
        return date_valid(int(a), int(b), int(c))
    if len(c) not in (2, 4) or len(a) > 2 or len(b) > 2:
        return False
    year = int(c) if len(c) == 4 else 1900 + int(c)
    return date_valid(year, int(a), int(b)) or date_valid(year, int(b), int(a))
