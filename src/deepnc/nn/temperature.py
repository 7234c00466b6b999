"""The temperature of a DNC head's logits ``max_k cos(x, p_ck) / tau``: a number, or
``"auto"``, which follows the class count.

Cosine logits lie in ``[-1 / tau, 1 / tau]``, so tau sets how peaked the softmax can get;
the scale that keeps it informative grows with the class count. AdaCos (Zhang et al.,
CVPR 2019) fixes the scale at ``s = sqrt(2) * ln(C - 1)``; ``"auto"`` is ``tau = 1 / s``:
0.102 at C = 1000 (the paper's 0.1, tuned on ImageNet), 0.141 at C = 150, 0.245 at
C = 19 and 0.322 at C = 10. The formula has no finite value below C = 3; C = 2 takes
C = 3's (1.020). An ``"auto"`` head recomputes tau from its class count when classes are
added or removed: the scale should follow C, and the argmax does not depend on it.

>>> round(auto_tau(1000), 3), round(auto_tau(10), 3), auto_tau(2) == auto_tau(3)
(0.102, 0.322, True)
"""

from __future__ import annotations

import math

__all__ = ["AUTO", "auto_tau", "check_tau", "resolve_tau"]

AUTO = "auto"


def auto_tau(num_classes: int) -> float:
    """``1 / (sqrt(2) * ln(max(C, 3) - 1))``, AdaCos's fixed scale inverted."""
    return 1.0 / (math.sqrt(2.0) * math.log(max(num_classes, 3) - 1))


def check_tau(tau: object) -> float | str:
    """``tau`` as given, if it is a number > 0 or ``"auto"``.

    Raises:
        ValueError: anything else, naming what is allowed.
    """
    if tau == AUTO:
        return AUTO
    if isinstance(tau, bool) or not isinstance(tau, int | float) or not tau > 0:
        raise ValueError(f"tau must be a number > 0 or 'auto', got {tau!r}")
    return float(tau)


def resolve_tau(tau: float | str, num_classes: int) -> float:
    """The temperature in use: ``tau`` itself, or :func:`auto_tau` of ``num_classes``."""
    return auto_tau(num_classes) if tau == AUTO else float(tau)
