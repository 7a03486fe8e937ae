"""Standard errors of the numbers a run reports (as lm-eval's ``acc_stderr``).

Every SE here is the standard error of a mean: the sample standard deviation (``ddof=1``) over
the square root of the count. Accuracy is the mean of 0/1 outcomes, so its SE follows from the
accuracy and the count alone (``binary_se``), which is how the report gives one for runs saved
before SEs were recorded. The gain's SE is *paired*: base and final answer the same examples, so
it is the SE of the per-example differences, usually much smaller than either model's SE.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from corp.scores import Scores


def mean_se(values: Sequence[float] | np.ndarray) -> float:
    """SE of the mean of ``values``; 0 for fewer than two (no spread to measure)."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0


def binary_se(accuracy: float, n: int) -> float:
    """SE of an accuracy over ``n`` examples; equal to ``mean_se`` of the 0/1 outcomes."""
    return math.sqrt(max(accuracy * (1.0 - accuracy), 0.0) / (n - 1)) if n > 1 else 0.0


def split_se(base: Scores, final: Scores) -> dict[str, float]:
    """SEs of the base's and the final model's accuracy and mean reward on one split, and the paired
    SE of each gain (final minus base, example by example)."""
    b_correct, f_correct = base.correct.astype(np.float64), final.correct.astype(np.float64)
    b_reward, f_reward = base.rewards.astype(np.float64), final.rewards.astype(np.float64)
    return {
        "base": mean_se(b_correct),
        "final": mean_se(f_correct),
        "gain": mean_se(f_correct - b_correct),
        "base_reward": mean_se(b_reward),
        "final_reward": mean_se(f_reward),
        "gain_reward": mean_se(f_reward - b_reward),
    }
