"""Kubernetes Quantity strings, written the way the API server writes them.

The HPA reads a Quantity's `MilliValue()`, so anything finer than a thousandth is rounded up
(as Kubernetes' own parser rounds ``0.1m`` up to ``1m``). The canonical decimal form then has
no fractional digits and the largest SI suffix that loses nothing: 0.5 -> ``500m``,
1.08 -> ``1080m``, 3000 -> ``3k``, 7 -> ``7``, 0 -> ``0``. Binary suffixes (Ki, Mi) are never
used for metric values.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

_SUFFIXES = {-3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E"}
_INT64_MAX = 2**63 - 1


def format_quantity(value: Decimal) -> str:
    """The canonical DecimalSI text of `value`, rounded up to a thousandth."""
    if not value.is_finite():
        raise ValueError(f"a quantity must be finite, got {value}")
    milli = int((value * 1000).to_integral_value(rounding=ROUND_CEILING))
    if milli == 0:
        return "0"
    if abs(milli) > _INT64_MAX:
        raise ValueError(f"{value} overflows the HPA's 64-bit milli-value")
    sign = "-" if milli < 0 else ""
    amount, exponent = abs(milli), -3
    while amount % 10 == 0:
        amount //= 10
        exponent += 1
    # Bring the exponent down to a multiple of three, where the SI suffixes are.
    shift = exponent % 3
    amount *= 10**shift
    exponent -= shift
    return f"{sign}{amount}{_SUFFIXES[exponent]}"
