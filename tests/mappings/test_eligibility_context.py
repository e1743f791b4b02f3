"""The ConText implementation (``context.py``): trigger categories, scopes and pseudo-triggers."""

from __future__ import annotations

import pytest

from mappings.eligibility.context import context


def _of(text: str, target: str, last: bool = True) -> set[str]:
    i = text.rfind(target) if last else text.find(target)
    return set(context(text).of(i, i + len(target)))


@pytest.mark.parametrize(
    ("text", "target", "expected"),
    [
        ("no history of diabetes or hypertension", "hypertension", {"negated", "historical"}),
        ("history of stroke but no diabetes", "stroke", {"historical"}),
        ("history of stroke but no diabetes", "diabetes", {"negated"}),
        ("family history of breast cancer", "breast cancer", {"family", "historical"}),
        ("first degree relative with schizophrenia", "schizophrenia", {"family"}),
        ("including but not limited to asthma", "asthma", set()),
        ("suspected pulmonary embolism", "pulmonary embolism", {"hypothetical"}),
        ("asthma is suspected", "asthma", {"hypothetical"}),
        ("asthma is ruled out", "asthma", {"negated"}),
        ("no diabetes; hypertension", "hypertension", set()),
    ],
)
def test_categories(text: str, target: str, expected: set[str]) -> None:
    assert _of(text, target) == expected


def test_pregnant_before_a_hypothetical_is_a_fact() -> None:
    assert _of("pregnant or planning to become pregnant", "pregnant", last=False) == set()
    assert "hypothetical" in _of("pregnant or planning to become pregnant", "pregnant")
