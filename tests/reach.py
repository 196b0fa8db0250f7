"""How often generated examples reach the branch a property test is named for.

A property test whose strategy almost never produces the interesting case passes whatever the
code does there. Each such test records its branch with ``hypothesis.event`` (shown by
``pytest --hypothesis-show-statistics``), and a companion test asserts the share with
:func:`reach_share`: the same strategy, run derandomized, so that the share is the same on
every run and the assertion cannot flake.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

T = TypeVar("T")


def reach_share(
    strategy: st.SearchStrategy[T], reached: Callable[[T], bool], *, examples: int = 500
) -> float:
    """The share of ``strategy``'s examples for which ``reached`` is true.

    A measurement, not a property: a fixed sample of ``examples``, generated only (no explicit
    examples, no database replay, no shrinking) from a fixed seed, whatever the profile. 500
    examples put a share near 75% within about 4 points.
    """
    outcomes: list[bool] = []

    @settings(
        max_examples=examples,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(strategy)
    def run(value: T) -> None:
        outcomes.append(reached(value))

    run()
    assert outcomes, "the strategy generated nothing"
    return sum(outcomes) / len(outcomes)
