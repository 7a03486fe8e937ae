"""The two spaces the split-half test runs in, each with the null it is compared against.

A *space* gives every member a vector (rows of ``vectors``) and a mean reward, plus a way to
draw an *unrewarded* copy of the population: the same kind of vectors whose link to reward
has been destroyed. The elite of the copy is chosen and weighted by its own rewards, exactly
like the real elite, so whatever selection alone puts into the halves is in the null too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from corp.analyze.population import SavedPopulation
from corp.perturb.direction import stack

NullDraw = Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Space:
    name: str
    description: str
    null_description: str
    dimension: int  # of the space the vectors can span
    vectors: np.ndarray  # members x coordinates
    rewards: np.ndarray  # mean reward per member
    draw_null: NullDraw
    degenerate: str | None = None  # why the test cannot say anything here, if it cannot
    note: str | None = None  # how (not) to read the results in this space


def seed_space(pop: SavedPopulation) -> Space:
    """Members as coefficient vectors on their seeds (noise of distinct seeds ~ orthonormal)."""
    vectors, basis = stack(pop.members)
    rewards = pop.mean_rewards
    owners = (np.abs(vectors) > 0).sum(axis=0)
    degenerate = note = None
    if not len(basis):
        degenerate = "the members have no seeds (every direction is zero)"
    elif owners.max() <= 1:
        note = "one seed per member: effective rank and kappa only reflect the elite's weights and sigmas"
        # Isotropic members each own their seed: two disjoint halves then span disjoint
        # coordinates, so their overlap is exactly 0 for rewarded and null halves alike.
        degenerate = (
            "every member has its own seed(s), so two disjoint halves span disjoint seed coordinates and "
            "their overlap is exactly 0 for the rewarded halves and the null alike: no evidence either way"
        )

    def draw_null(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return vectors, rng.permutation(rewards)  # rewards shuffled across members

    return Space(
        name="seed",
        description=f"seed space: member directions on {len(basis)} seeds",
        null_description="member rewards shuffled across members (random elite, random weights)",
        dimension=len(basis),
        vectors=vectors,
        rewards=rewards,
        draw_null=draw_null,
        degenerate=degenerate,
        note=note,
    )


def behaviour_space(pop: SavedPopulation) -> Space:
    """Members as per-example reward profiles minus the population's mean profile.

    The elite is chosen by mean reward, i.e. along the all-ones direction of this space, so
    that direction is removed: otherwise both elite halves would share it by construction.
    """
    rewards = pop.rewards
    n_examples = rewards.shape[1]
    ones = np.full(n_examples, 1.0 / np.sqrt(n_examples))

    def profiles(matrix: np.ndarray) -> np.ndarray:
        centred = matrix - matrix.mean(axis=0)
        return centred - np.outer(centred @ ones, ones)

    def draw_null(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        # Each example's outcomes shuffled across members on its own: per-example rates and
        # the selection by mean reward stay, any co-variation between examples goes.
        shuffled = rng.permuted(rewards, axis=0)
        return profiles(shuffled), shuffled.mean(axis=1)

    degenerate = None
    if n_examples < 2:
        degenerate = "fewer than 2 examples: nothing is left once the mean-reward direction is removed"
    return Space(
        name="behaviour",
        description=(
            f"behaviour space: per-example reward profiles on {n_examples} {pop.split} examples, "
            "minus the population mean, mean-reward direction removed"
        ),
        null_description="each example's outcomes shuffled across members independently, elite re-chosen",
        dimension=max(0, n_examples - 1),
        vectors=profiles(rewards),
        rewards=pop.mean_rewards,
        draw_null=draw_null,
        degenerate=degenerate,
        note=(
            "structure here is agreement on which examples the elite gets right; members that stay close "
            "to the base model share its pattern, so it speaks of outcomes, not of directions in weight space"
        ),
    )
