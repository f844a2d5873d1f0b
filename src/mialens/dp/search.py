"""The one search of the DP audits: the edge of a monotone predicate, approached from below.

Every bound here is "the largest parameter still rejected" (an epsilon, a Gaussian-DP mu)
or the inverse of a monotone privacy relation, and it must never land above the true
edge, or a lower bound would stop being one.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from mialens.errors import DataError


def largest_where(
    holds: Callable[[float], bool],
    *,
    tol: float,
    relative: bool = False,
    limit: float = math.inf,
) -> float:
    """The edge x* of ``holds`` on [0, inf), which holds on [0, x*) and fails above, from
    below: 0 when it fails at 0; else the lower end of a bracket around x* found by doubling
    from 1 and then bisecting until it is at most ``tol`` wide (``tol * max(1, high)`` when
    ``relative``). A DataError when it still holds beyond ``limit``."""
    if not holds(0.0):
        return 0.0
    low, high = 0.0, 1.0
    while holds(high):
        low, high = high, 2.0 * high
        if high > limit:
            raise DataError(f"the audit rejected every privacy parameter up to {limit:g}.")
    while high - low > (tol * max(1.0, high) if relative else tol):
        middle = 0.5 * (low + high)
        if holds(middle):
            low = middle
        else:
            high = middle
    return low
