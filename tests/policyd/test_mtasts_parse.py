"""RFC 8461 TXT and policy parsing, from the table in data/mtasts_parse_cases.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from postveil.policyd.mtasts import StsParseError, parse_policy, parse_txt_records

CASES = yaml.safe_load((Path(__file__).parent / "data" / "mtasts_parse_cases.yaml").read_text())


@pytest.mark.parametrize("case", CASES["txt"], ids=[case["name"] for case in CASES["txt"]])
def test_txt_case(case: dict) -> None:
    records = [record.encode("ascii") for record in case["records"]]
    if case["expect"] == "invalid":
        with pytest.raises(StsParseError):
            parse_txt_records(records)
        return
    result = parse_txt_records(records)
    if case["expect"] == "none":
        assert result is None
    else:
        assert result is not None
        assert result.policy_id == case["expect"]


@pytest.mark.parametrize("case", CASES["policy"], ids=[case["name"] for case in CASES["policy"]])
def test_policy_case(case: dict) -> None:
    body = case["body"].encode("latin-1" if case.get("latin1") else "utf-8")
    if case["expect"] == "invalid":
        with pytest.raises(StsParseError):
            parse_policy(body)
        return
    policy = parse_policy(body)
    assert policy.mode == case["expect"]["mode"]
    assert list(policy.mx) == case["expect"]["mx"]
    assert policy.max_age == case["expect"]["max_age"]
