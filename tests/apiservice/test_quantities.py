"""Quantity strings exactly as Kubernetes writes them (canonical DecimalSI, milli-rounded up)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, strategies as st

from adapter import MetricValue
from apiservice.quantities import format_quantity

CASES = [
    (0, "0"),
    (7, "7"),
    (1.5, "1500m"),
    (0.5, "500m"),
    (1.08, "1080m"),
    (3000, "3k"),
    (1234.5678, "1234568m"),
    (0.0001, "1m"),  # rounded up to a milli, as Kubernetes parses 0.1m
    (1.1, "1100m"),  # not 1100.0000000000002m
    (100, "100"),
    (1000, "1k"),
    (1500, "1500"),
    (2_000_000, "2M"),
    (12_300_000, "12300k"),
    (10**15, "1P"),
    (0.001, "1m"),
    (0.01, "10m"),
    (0.1, "100m"),
    (-1.5, "-1500m"),
]


@pytest.mark.parametrize(("number", "text"), CASES, ids=[c[1] for c in CASES])
def test_known_quantities(number: float, text: str) -> None:
    assert format_quantity(MetricValue.decimal(number)) == text


def test_refuses_what_the_hpa_cannot_read() -> None:
    with pytest.raises(ValueError, match="finite"):
        format_quantity(Decimal("NaN"))
    with pytest.raises(ValueError, match="overflows"):
        format_quantity(Decimal("1e16"))


def parse_milli(text: str) -> int:
    """The milli-value Kubernetes reads from a DecimalSI quantity."""
    scale = {"m": 1, "": 1000, "k": 10**6, "M": 10**9, "G": 10**12, "T": 10**15, "P": 10**18}
    digits = text.rstrip("mkMGTP")
    return int(digits) * scale[text[len(digits) :]]


@given(st.decimals(min_value=0, max_value=Decimal("9e15"), allow_nan=False, places=6))
def test_value_read_back_is_the_value_rounded_up_to_a_milli(value: Decimal) -> None:
    text = format_quantity(value)
    read = Decimal(parse_milli(text)) / 1000
    assert value <= read < value + Decimal("0.001")
    # canonical: no trailing zeros that a larger suffix could absorb
    digits = text.rstrip("mkMGTP")
    assert text == "0" or not digits.endswith("000")
