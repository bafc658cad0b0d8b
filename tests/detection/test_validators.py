"""Table-driven cases for every identifier validator."""

from __future__ import annotations

import pytest

from postveil.detection import validators as v

SSN_CASES = [
    ("123-45-6780", True),
    ("536-22-1234", True),
    ("536221234", True),
    ("000-12-3456", False),  # area 000
    ("666-12-3456", False),  # area 666
    ("900-12-3456", False),  # 900-999 area is never issued
    ("987-65-4320", False),  # advertising range in the 900 area
    ("999-12-3456", False),
    ("536-00-1234", False),  # group 00
    ("536-22-0000", False),  # serial 0000
    ("078-05-1120", False),  # Woolworth wallet sample
    ("219-09-9999", False),  # SSA advertising sample
    ("123-45-6789", False),  # placeholder
    ("12-345-6780", True),  # structure is checked on the digits; layout is the scanner's job
    ("53622123", False),  # 8 digits
]


@pytest.mark.parametrize(("candidate", "expected"), SSN_CASES)
def test_ssn(candidate: str, expected: bool) -> None:
    assert v.ssn_valid(candidate) is expected


MBI_CASES = [
    ("1EG4TE5MK73", True),
    ("1EG4-TE5-MK73", True),
    ("9AA0AA0AA00", True),
    ("0EG4TE5MK73", False),  # first character must be 1-9
    ("1SG4TE5MK73", False),  # S is excluded
    ("1EG4TE5MK7", False),  # too short
    ("1EG4-TE5MK73", False),  # one hyphen only
    ("1eg4te5mk73", False),  # printed in capitals
    ("1EGATE5MK73", False),  # position 4 must be a digit
    ("1EG4TB5MK73", False),  # B is excluded
]


@pytest.mark.parametrize(("candidate", "expected"), MBI_CASES)
def test_mbi(candidate: str, expected: bool) -> None:
    assert v.mbi_valid(candidate) is expected


CARD_CASES = [
    ("4111 1111 1111 1111", True),  # Visa test number
    ("4111-1111-1111-1111", True),
    ("5555555555554444", True),  # Mastercard
    ("2223003122003222", True),  # Mastercard 2-series
    ("378282246310005", True),  # American Express
    ("6011111111111117", True),  # Discover
    ("3530111333300000", True),  # JCB
    ("4111111111111112", False),  # Luhn fails
    ("1234567812345670", False),  # Luhn passes, no issuer starts with 1
    ("7111111111111114", False),  # no issuer
    ("411111111111", False),  # too short
    ("0000000000000000", False),
    ("1700000000004", False),  # 13-digit epoch milliseconds that pass Luhn
]


NHS_CASES = [
    ("943 476 5919", True),  # the NHS's published example
    ("9434765919", True),
    ("943-476-5919", True),
    ("943 476 5918", False),  # wrong check digit
    ("401 023 2137", True),
    ("123 456 7890", False),  # remainder 10: never issued
    ("943 476 591", False),  # too short
]


@pytest.mark.parametrize(("candidate", "expected"), NHS_CASES)
def test_nhs_number(candidate: str, expected: bool) -> None:
    assert v.nhs_number_valid(candidate) is expected


AUSTRALIAN_MEDICARE_CASES = [
    ("2123 45670 1", True),  # check digit 0 over 2,1,2,3,4,5,6,7
    ("2123456701", True),
    ("21234567011", True),  # with the person's position on the card
    ("2123 45671 1", False),  # wrong check digit
    ("7123 45670 1", False),  # first digit must be 2-6
    ("2123 4567 1", False),  # too short
]


@pytest.mark.parametrize(("candidate", "expected"), AUSTRALIAN_MEDICARE_CASES)
def test_australian_medicare(candidate: str, expected: bool) -> None:
    assert v.australian_medicare_valid(candidate) is expected


ONTARIO_CASES = [
    ("1234567897", True),  # Luhn check digit 7
    ("1234-567-897", True),
    ("1234567890", False),
    ("123456789", False),  # too short
]


@pytest.mark.parametrize(("candidate", "expected"), ONTARIO_CASES)
def test_ontario_health_number(candidate: str, expected: bool) -> None:
    assert v.ontario_health_number_valid(candidate) is expected


@pytest.mark.parametrize(("candidate", "expected"), CARD_CASES)
def test_card(candidate: str, expected: bool) -> None:
    assert v.card_valid(candidate) is expected


def test_luhn_passes_for_timestamp_fixture() -> None:
    assert v.luhn_valid("1700000000004")


EPOCH_CASES = [
    ("1700000000", True),
    ("1700000000004", True),
    ("1700000000000000", True),
    ("4111111111111111", False),
    ("0946684799", False),
    ("12345", False),
]


@pytest.mark.parametrize(("digits", "expected"), EPOCH_CASES)
def test_epoch(digits: str, expected: bool) -> None:
    assert v.looks_like_epoch(digits) is expected


NPI_CASES = [
    ("1234567893", True),  # CMS example
    ("1245319599", True),
    ("1234567890", False),  # check digit
    ("3234567893", False),  # must start with 1 or 2
    ("123456789", False),
]


@pytest.mark.parametrize(("candidate", "expected"), NPI_CASES)
def test_npi(candidate: str, expected: bool) -> None:
    assert v.npi_valid(candidate) is expected


DEA_CASES = [
    ("AB1234563", True),  # 1+3+5 + 2*(2+4+6) = 33, check 3
    ("BJ6125341", True),
    ("AB1234564", False),  # check digit
    ("IB1234563", False),  # I is not a registrant type
    ("A11234563", False),  # second character must be a letter or 9
    ("A91234563", True),
    ("AB123456", False),
]


@pytest.mark.parametrize(("candidate", "expected"), DEA_CASES)
def test_dea(candidate: str, expected: bool) -> None:
    assert v.dea_valid(candidate) is expected


IBAN_CASES = [
    ("DE89 3704 0044 0532 0130 00", True),
    ("GB82WEST12345698765432", True),
    ("GB82 WEST 1234 5698 7654 32", True),
    ("FR1420041010050500013M02606", True),
    ("DE89 3704 0044 0532 0130 01", False),  # mod 97
    ("GB82WEST1234569876543", False),  # length for GB
    ("XX82WEST12345698765432", False),  # unknown country
]


@pytest.mark.parametrize(("candidate", "expected"), IBAN_CASES)
def test_iban(candidate: str, expected: bool) -> None:
    assert v.iban_valid(candidate) is expected


ICD_CASES = [
    ("E11.9", True),
    ("E119", True),
    ("I10", True),
    ("C50.911", True),
    ("J45.909", True),
    ("Z99.89", True),
    ("B12", False),  # no such category: the vitamin and grid references stay out
    ("E11.99999", False),
    ("U99.9", False),
    ("A0.01", False),
    ("A00-A09", False),  # a block, not a code
    ("E1", False),
]


@pytest.mark.parametrize(("candidate", "expected"), ICD_CASES)
def test_icd10cm(candidate: str, expected: bool) -> None:
    assert v.icd10cm_exists(candidate) is expected


NDC_CASES = [
    ("0002-3227-30", True),  # 4-4-2
    ("50090-347-01", True),  # 5-3-2
    ("00093-7146-5", True),  # 5-4-1
    ("00093-7146-56", True),  # 5-4-2
    ("00093714656", True),  # 11-digit billing form
    ("0002-322-30", False),  # 4-3-2
    ("123-4567-89", False),
    ("00093-7146-567", False),
]


@pytest.mark.parametrize(("candidate", "expected"), NDC_CASES)
def test_ndc(candidate: str, expected: bool) -> None:
    assert v.ndc_shape_valid(candidate) is expected


DATE_CASES = [
    ("03/14/1962", True),
    ("14.03.1962", True),
    ("1962-03-14", True),
    ("02/29/2000", True),
    ("02/29/1900", False),  # 1900 was not a leap year
    ("13/13/1962", False),
    ("1962-02-30", False),
    ("04/31/1980", False),
    ("3/4/62", True),
    ("10.0.19045", False),  # version number
    ("2020-1-9999999999999", False),  # a part too large for datetime.date
    ("2020-9999999999999-1", False),
]


@pytest.mark.parametrize(("candidate", "expected"), DATE_CASES)
def test_numeric_date(candidate: str, expected: bool) -> None:
    assert v.numeric_date_valid(candidate) is expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("March", 3),
        ("mar", 3),
        ("Sept", 9),
        ("September", 9),
        ("Sep.", 9),
        ("Marchy", None),
        ("Ma", None),
    ],
)
def test_month_number(name: str, expected: int | None) -> None:
    assert v.month_number(name) == expected


def test_icd10cm_code_list_matches_the_package() -> None:
    """The code list read from the package's text file accepts exactly the items that
    the package's own lookup accepts, with and without dots."""
    codes = v._icd10cm_codes()
    assert codes is not None
    module = v._icd10cm_module()
    for code in sorted(codes)[::7]:
        if "-" in code or not 3 <= len(code) <= 7:
            continue
        dotted = code if len(code) == 3 else f"{code[:3]}.{code[3:]}"
        assert module.is_valid_item(code), code
        assert module.is_valid_item(dotted), dotted
    for near_miss in ("E119X", "Z00009", "A00.00", "U071A", "B1", "E11.", "C50.9191X"):
        assert v.icd10cm_exists(near_miss) == module.is_valid_item(near_miss), near_miss
