"""Split-half test for reproducible low-rank structure in a rewarded population (docs/method.md §4.4).

The elite (top members by mean reward) is split into two random halves many times. Each
half's reward-weighted principal subspace is the top-k eigenspace of its weighted second
moment sum_i w_i a_i a_i^T (uncentred, so a shared mean shift of the elite counts as
structure). The halves agree by the normalised overlap ||U_A^T U_B||_F^2 / k, the mean
squared cosine of their principal angles: 1 for the same subspace, about k / dimension for
random ones. The statistic, per rank k, is the mean overlap over splits; its null is the
same statistic on unrewarded copies of the population (``spaces.Space.draw_null``). The null
averages fewer splits per draw than the real statistic, which widens it: p-values are
conservative. One verdict per space: the smallest p-value over the ranks tested, corrected
for testing several ranks by the max-statistic method, against ``alpha``.

Members are weighted by reward rank. A blind spot worth knowing: if reward is linear in a
member's projection on one direction, the top half (quantile 0.5) has the same second
moment along it as everyone (its mean shift and its narrower spread nearly cancel), so that
direction is only seen with a higher quantile, or in kappa (the coherence of the mean).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from corp.analyze.population import SavedPopulation
from corp.analyze.spaces import Space, behaviour_space, seed_space
from corp.consolidate.stage1 import cloud_spectrum, cloud_stats

SPECTRUM_SHOWN = 20  # eigenvalues kept for the report's spectrum plot


@dataclass(frozen=True)
class Settings:
    quantile: float = 0.5  # elite: members above this quantile of mean reward
    rank: int = 8  # ranks 1..rank are tested (capped by half size and dimension)
    splits: int = 200  # random splits of the real elite
    null_draws: int = 200  # unrewarded copies of the population
    null_splits: int = 20  # splits averaged per unrewarded copy
    alpha: float = 0.05  # level of the per-space verdict
    seed: int = 0

    def validate(self) -> None:
        checks = [
            (self.rank >= 1, f"--rank {self.rank}: must be >= 1"),
            (self.splits >= 1, f"--splits {self.splits}: must be >= 1"),
            (self.null_draws >= 1, f"--null {self.null_draws}: must be >= 1"),
            (self.null_splits >= 1, f"--null-splits {self.null_splits}: must be >= 1"),
            (0.0 <= self.quantile < 1.0, f"--quantile {self.quantile}: must be in [0, 1)"),
            (0.0 < self.alpha < 1.0, f"--alpha {self.alpha}: must be in (0, 1)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


@dataclass
class Cloud:
    """Shape of the weighted elite cloud: effective rank and kappa = ||mean||^2 / trace(cov)."""

    effective_rank: float
    kappa: float
    spectrum: list[float]  # normalised eigenvalues of the weighted covariance, largest first
    null_effective_rank: float  # median over null draws
    null_effective_rank_band: list[float]  # 5% and 95% over null draws
    null_kappa: float  # median (kappa is infinite for a cloud without spread)
    null_kappa_band: list[float]
    null_spectrum: list[float]  # mean over null draws
    effective_rank_p: float  # share of null draws with an effective rank <= the elite's (low: more concentrated)
    kappa_p: float  # share of null draws with kappa >= the elite's (low: more coherent mean)


@dataclass
class SpaceResult:
    space: str
    description: str
    null: str
    dimension: int
    degenerate: str | None
    verdict: str
    detected: bool | None = None  # None: not testable
    detected_ranks: list[int] = field(default_factory=list)
    p_min_corrected: float | None = None
    ranks: list[int] = field(default_factory=list)
    overlap: list[float] = field(default_factory=list)  # mean over real splits
    overlap_band: list[list[float]] = field(default_factory=list)  # 5%, 95% over real splits
    null_overlap: list[float] = field(default_factory=list)  # mean over null draws
    null_band: list[list[float]] = field(default_factory=list)  # 5%, 95% over null draws
    z: list[float | None] = field(default_factory=list)
    p: list[float] = field(default_factory=list)  # per rank, uncorrected
    p_corrected: list[float] = field(default_factory=list)  # per rank, corrected over ranks (max-statistic)
    principal_angles_deg: list[float] = field(default_factory=list)  # at the top rank, mean over splits
    null_principal_angles_deg: list[float] = field(default_factory=list)
    cloud: Cloud | None = None
    note: str | None = None


@dataclass
class PopulationResult:
    file: str
    round: int | None
    split: str
    members: int  # complete rows analysed
    partial: int  # raced-out members left out (partial rows)
    examples: int
    mean_reward: float
    elite_size: int
    half_size: int
    spaces: list[SpaceResult]


def elite_size(n_members: int, quantile: float) -> int:
    return n_members - int(np.floor(quantile * n_members + 1e-9))


def reward_weights(rewards: np.ndarray) -> np.ndarray:
    """Weights proportional to reward rank (1..n, ties share their mean rank).

    Ordered by reward but bounded (within the elite they differ by a factor of at most
    1 / quantile), so a few outlying rewards cannot make one or two members the whole
    subspace of a half, as softmax weights on z-scored rewards did in trials."""
    ranks = np.empty(len(rewards))
    ranks[np.argsort(rewards, kind="stable")] = np.arange(1, len(rewards) + 1)
    _, tie = np.unique(rewards, return_inverse=True)
    ranks = (np.bincount(tie, weights=ranks) / np.bincount(tie))[tie]
    return ranks / ranks.sum()


def draw_halves(
    rewards: np.ndarray, k: int, h: int, n_splits: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Member indices (n_splits x h) of halves A and B: elite = top k, ties broken at random per split."""
    a = np.empty((n_splits, h), dtype=np.int64)
    b = np.empty((n_splits, h), dtype=np.int64)
    for s in range(n_splits):
        elite = np.lexsort((rng.random(len(rewards)), -rewards))[:k]
        perm = rng.permutation(elite)
        a[s], b[s] = perm[:h], perm[h : 2 * h]
    return a, b


def top_subspaces(vectors: np.ndarray, weights: np.ndarray, idx: np.ndarray, rank: int) -> torch.Tensor:
    """Orthonormal bases (splits x dim x rank) of each half's weighted second moment.

    Eigen-decomposes whichever Gram matrix is smaller (half x half or dim x dim); directions
    of a zero eigenvalue (a half spanning fewer than ``rank`` dimensions) are left as zeros."""
    w = weights[idx]
    m = torch.from_numpy(np.sqrt(w / w.sum(axis=1, keepdims=True))[..., None] * vectors[idx])  # splits x half x dim
    half, dim = m.shape[1:]
    small_half = half <= dim
    lam, v = torch.linalg.eigh(m @ m.mT if small_half else m.mT @ m)  # ascending
    lam, v = lam.flip(-1)[:, :rank], v.flip(-1)[:, :, :rank]
    keep = lam > 1e-12 * lam[:, :1].clamp_min(1e-300)
    if not small_half:
        return v * keep[:, None, :]
    scale = torch.where(keep, lam.clamp_min(1e-300).rsqrt(), torch.zeros_like(lam))
    return (m.mT @ v) * scale[:, None, :]  # eigenvectors of m^T m from those of m m^T


def overlaps(ua: torch.Tensor, ub: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Normalised overlap for ranks 1..r (splits x r) and principal angles at rank r (splits x r, degrees)."""
    cross = ua.mT @ ub  # splits x r x r
    sq = (cross**2).numpy()
    r = cross.shape[1]
    curve = np.stack([sq[:, :k, :k].sum(axis=(1, 2)) / k for k in range(1, r + 1)], axis=1)
    cosines = np.clip(torch.linalg.svdvals(cross).numpy(), 0.0, 1.0)
    return curve, np.degrees(np.arccos(cosines))


def split_overlaps(
    vectors: np.ndarray, rewards: np.ndarray, k: int, h: int, rank: int, n_splits: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Overlap curves and principal angles of ``n_splits`` random splits of the elite (top ``k``) into halves of ``h``."""
    weights = reward_weights(rewards)
    a, b = draw_halves(rewards, k, h, n_splits, rng)
    return overlaps(top_subspaces(vectors, weights, a, rank), top_subspaces(vectors, weights, b, rank))


def cloud_shape(vectors: np.ndarray, rewards: np.ndarray, k: int, rng) -> tuple[float, float, np.ndarray]:
    """Effective rank, kappa and normalised spectrum of the weighted elite (top k, ties at random)."""
    elite = np.lexsort((rng.random(len(rewards)), -rewards))[:k]
    w, x = reward_weights(rewards)[elite], vectors[elite]
    eig = cloud_spectrum(x, w)
    eig = np.where(eig > 1e-12 * eig[0], eig, 0.0) if len(eig) else eig  # rounding noise is no variance
    stats = cloud_stats(x, w, eig)
    if stats is None:  # no spread: kappa is infinite unless the mean is zero too
        mean = (w / w.sum()) @ x
        return 0.0, float("inf") if mean @ mean > 0 else 0.0, np.zeros(0)
    return stats[0], stats[1], eig / eig.sum()


def max_t(stat: np.ndarray, null: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """z-scores per rank and p-values corrected over ranks by the max-statistic (Westfall-Young).

    Each rank is standardised by the null's mean and spread; a rank's corrected p is the share
    of null draws whose largest z over all ranks reaches its z. Neighbouring ranks are strongly
    correlated, so this is far less conservative than Bonferroni at the same family-wise level."""
    mean, sd = null.mean(axis=0), null.std(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 0, (stat - mean) / sd, np.where(stat > mean + 1e-12, np.inf, 0.0))
        null_z = np.where(sd > 0, (null - mean) / np.where(sd > 0, sd, 1.0), 0.0)
    null_max = null_z.max(axis=1)
    corrected = (1 + (null_max[None, :] >= z[:, None] - 1e-12).sum(axis=1)) / (1 + len(null))
    return z, corrected


def _band(values: np.ndarray) -> list[list[float]]:
    lo, hi = np.quantile(values, [0.05, 0.95], axis=0, method="nearest")  # nearest: kappa may be inf
    return [[float(a), float(b)] for a, b in zip(np.atleast_1d(lo), np.atleast_1d(hi))]


def _spectrum(p: np.ndarray) -> np.ndarray:
    out = np.zeros(SPECTRUM_SHOWN)
    out[: min(SPECTRUM_SHOWN, len(p))] = p[:SPECTRUM_SHOWN]
    return out


def _cloud(shape: tuple[float, float, np.ndarray], null_shapes: list[tuple[float, float, np.ndarray]]) -> Cloud:
    eff, kappa, spectrum = shape
    null_eff = np.array([s[0] for s in null_shapes])
    null_kappa = np.array([s[1] for s in null_shapes])
    return Cloud(
        effective_rank=eff,
        kappa=kappa,
        spectrum=_spectrum(spectrum).tolist(),
        null_effective_rank=float(np.median(null_eff)),
        null_effective_rank_band=_band(null_eff)[0],
        null_kappa=float(np.median(null_kappa)),
        null_kappa_band=_band(null_kappa)[0],
        null_spectrum=np.mean([_spectrum(s[2]) for s in null_shapes], axis=0).tolist(),
        effective_rank_p=float((1 + (null_eff <= eff + 1e-12).sum()) / (1 + len(null_eff))),
        kappa_p=float((1 + (null_kappa >= kappa - 1e-12).sum()) / (1 + len(null_kappa))),
    )


def _verdict(result: SpaceResult, alpha: float, null_draws: int) -> str:
    tested = f"p {result.p_min_corrected:.3g} corrected for {len(result.ranks)} ranks"
    if result.detected:
        ranks = ", ".join(map(str, result.detected_ranks))
        return f"DETECTED: the rewarded halves overlap more than the null at rank(s) {ranks} ({tested} <= {alpha})"
    verdict = f"not detected: the rewarded halves overlap no more than the null ({tested} > {alpha})"
    if 1 / (1 + null_draws) > alpha:
        verdict += f"; with {null_draws} null draws p cannot go below {1 / (1 + null_draws):.3g}: use more --null"
    return verdict


def analyse_space(space: Space, settings: Settings, k: int, h: int) -> SpaceResult:
    """The split-half test and the cloud's shape in one space, each against the same null draws."""
    rng = np.random.default_rng(settings.seed)
    result = SpaceResult(space.name, space.description, space.null_description, space.dimension, space.degenerate, "")
    rank = min(settings.rank, h, space.dimension)
    testable = not space.degenerate and h >= 2
    shape = cloud_shape(space.vectors, space.rewards, k, rng)
    if testable:
        real, angles = split_overlaps(space.vectors, space.rewards, k, h, rank, settings.splits, rng)
    null_shapes, null_curves, null_angles = [], [], []
    for _ in range(settings.null_draws):
        vectors, rewards = space.draw_null(rng)
        null_shapes.append(cloud_shape(vectors, rewards, k, rng))
        if testable:
            curve, ang = split_overlaps(vectors, rewards, k, h, rank, settings.null_splits, rng)
            null_curves.append(curve.mean(axis=0))
            null_angles.append(ang.mean(axis=0))
    result.cloud = _cloud(shape, null_shapes)  # descriptive: reported even where the split test is not
    result.note = space.note
    if space.degenerate:
        result.verdict = f"not testable (degenerate): {space.degenerate}"
        return result
    if not testable:
        result.verdict = f"not testable: an elite of {k} members gives halves of {h}; need at least 4 members"
        return result
    null = np.array(null_curves)  # draws x rank
    stat = real.mean(axis=0)
    z, corrected = max_t(stat, null)
    result.ranks = list(range(1, rank + 1))
    result.overlap = stat.tolist()
    result.overlap_band = _band(real)
    result.null_overlap = null.mean(axis=0).tolist()
    result.null_band = _band(null)
    result.z = [float(v) if np.isfinite(v) else None for v in z]
    result.p = ((1 + (null >= stat - 1e-12).sum(axis=0)) / (1 + len(null))).tolist()
    result.p_corrected = corrected.tolist()
    result.p_min_corrected = float(corrected.min())
    result.principal_angles_deg = angles.mean(axis=0).tolist()
    result.null_principal_angles_deg = np.mean(null_angles, axis=0).tolist()
    result.detected_ranks = [r for r, c in zip(result.ranks, corrected) if c <= settings.alpha]
    result.detected = bool(result.detected_ranks)
    result.verdict = _verdict(result, settings.alpha, len(null))
    return result


@contextmanager
def _one_thread():
    # Thousands of tiny decompositions: threads only contend (10x slower on a busy machine).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def analyse(pop: SavedPopulation, settings: Settings) -> PopulationResult:
    """The split-half test on one population, in seed space and in behaviour space, on its complete
    rows (a raced population's partial rows are left out and counted)."""
    settings.validate()
    whole, pop = len(pop.members), pop.complete()
    n = len(pop.members)
    k = elite_size(n, settings.quantile)
    h = k // 2
    with _one_thread():
        spaces = [analyse_space(space, settings, k, h) for space in (seed_space(pop), behaviour_space(pop))]
    return PopulationResult(
        file=str(pop.path),
        round=pop.round,
        split=pop.split,
        members=n,
        partial=whole - n,
        examples=int(pop.rewards.shape[1]),
        mean_reward=float(pop.rewards.mean()),
        elite_size=k,
        half_size=h,
        spaces=spaces,
    )
