"""Split-half low-rank analysis (python -m corp.analyze) on synthetic populations with known structure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from corp.analyze import Settings, analyse, load_population
from corp.analyze.__main__ import main as analyze_main
from corp.analyze.population import SavedPopulation
from corp.analyze.split_half import cloud_shape, overlaps, reward_weights, top_subspaces
from corp.perturb.direction import Direction
from corp.scores import PopulationScores, Scores
from corp.store import save_scored

FAST = Settings(splits=50, null_draws=100, null_splits=10)  # p can reach 1/101, well under alpha = 0.05


def synthetic(kind: str, seed: int = 0, n: int = 240, n_seeds: int = 12, n_examples: int = 24) -> SavedPopulation:
    """A population whose rewards are planted on a rank-2 subspace, or pure noise.

    ``planted``: members are Gaussian vectors on a shared pool of seeds; example j is solved
    when the member moves far enough along its own direction b_j inside a planted 2-D
    subspace U of seed space. ``isotropic``: each member owns its seed (as in round 0 of a
    run) and the same reward model acts on a hidden 2-D latent. ``noise``: shared seeds,
    rewards independent of the members and across examples (rates differ per example)."""
    rng = np.random.default_rng(seed)
    if kind == "isotropic":
        members = [Direction.from_seed(10_000 + i, s) for i, s in enumerate(rng.choice([1.0, 2.0, 3.0], n))]
        latent = rng.standard_normal((n, 2))
    else:
        coeffs = rng.standard_normal((n, n_seeds))
        members = [Direction(np.arange(1000, 1000 + n_seeds), c) for c in coeffs]
        planted, _ = np.linalg.qr(rng.standard_normal((n_seeds, 2)))
        latent = coeffs @ planted
    if kind == "noise":
        rewards = (rng.random((n, n_examples)) < rng.uniform(0.1, 0.6, n_examples)).astype(float)
    else:
        b = rng.standard_normal((n_examples, 2))
        b /= np.linalg.norm(b, axis=1, keepdims=True)
        rewards = (latent @ b.T + 0.5 * rng.standard_normal((n, n_examples)) > 1.0).astype(float)
    return SavedPopulation(Path(f"{kind}.npz"), 0, "support", members, rewards)


def by_space(result) -> dict:
    return {s.space: s for s in result.spaces}


def test_planted_low_rank_structure_is_detected_in_both_spaces():
    spaces = by_space(analyse(synthetic("planted", seed=1), FAST))
    for name in ("seed", "behaviour"):
        res = spaces[name]
        assert res.detected, (name, res.verdict)
        assert res.verdict.startswith("DETECTED") and 2 in res.detected_ranks
        assert res.overlap[1] > res.null_band[1][1]  # the planted rank: above the null's 95th percentile
        assert res.p_min_corrected <= 0.05
    assert spaces["seed"].dimension == 12 and spaces["behaviour"].dimension == 23


@pytest.mark.parametrize("seed", [0, 1, 3])  # a level-0.05 test rejects ~5% of noise seeds (seed 2 is one)
def test_pure_noise_is_not_detected(seed):
    for res in analyse(synthetic("noise", seed), FAST).spaces:
        assert res.detected is False, (res.space, res.verdict)
        assert res.verdict.startswith("not detected")
        assert len(res.overlap) == 8 and res.p_min_corrected > 0.05


def test_isotropic_population_is_degenerate_in_seed_space_but_tested_in_behaviour_space():
    spaces = by_space(analyse(synthetic("isotropic"), FAST))
    seed = spaces["seed"]
    assert seed.degenerate and "disjoint seed coordinates" in seed.degenerate
    assert seed.detected is None and seed.overlap == [] and seed.verdict.startswith("not testable (degenerate)")
    assert seed.cloud is not None and seed.cloud.effective_rank > 1  # still described, never tested
    assert "only reflect the elite's weights and sigmas" in seed.note
    assert spaces["behaviour"].detected is True


def test_too_small_an_elite_is_not_testable():
    pop = synthetic("planted", n=6)  # elite of 3: halves of 1
    for res in analyse(pop, FAST).spaces:
        assert res.detected is None and "need at least 4 members" in res.verdict


def test_overlap_is_one_for_the_same_subspace_and_zero_for_orthogonal_ones():
    rng = np.random.default_rng(0)
    vectors = np.zeros((8, 6))
    vectors[:4, :2] = rng.standard_normal((4, 2))  # members 0-3 live in span(e0, e1)
    vectors[4:, :2] = rng.standard_normal((4, 2))  # members 4-7 too
    weights = np.full(8, 1 / 8)
    same = overlaps(top_subspaces(vectors, weights, np.array([[0, 1, 2, 3]]), 2),
                    top_subspaces(vectors, weights, np.array([[4, 5, 6, 7]]), 2))[0]  # fmt: skip
    assert np.allclose(same, [[same[0, 0], 1.0]]) and 0 <= same[0, 0] <= 1
    vectors[4:, :2], vectors[4:, 2:4] = 0.0, rng.standard_normal((4, 2))  # now span(e2, e3)
    apart, angles = overlaps(top_subspaces(vectors, weights, np.array([[0, 1, 2, 3]]), 2),
                             top_subspaces(vectors, weights, np.array([[4, 5, 6, 7]]), 2))  # fmt: skip
    assert np.allclose(apart, 0.0) and np.allclose(angles, 90.0)


def test_cloud_effective_rank_and_kappa_follow_their_definitions():
    rng = np.random.default_rng(0)
    mean = np.array([3.0, 0.0, 0.0])
    spread = np.array([[2.0, 0, 0], [-2.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0]])
    eff, kappa, spectrum = cloud_shape(mean + spread, np.zeros(4), 4, rng)  # equal rewards: equal weights
    # covariance diag(2, 0.5, 0): shares 0.8 / 0.2; trace 2.5
    assert eff == pytest.approx(np.exp(-(0.8 * np.log(0.8) + 0.2 * np.log(0.2))))
    assert kappa == pytest.approx(9.0 / 2.5)
    assert spectrum[:2] == pytest.approx([0.8, 0.2])


def test_reward_weights_follow_reward_rank_and_ties_share_it():
    w = reward_weights(np.array([0.1, 0.5, 0.5, 0.9]))
    assert w == pytest.approx(np.array([1.0, 2.5, 2.5, 4.0]) / 10.0)


# -- the command line ---------------------------------------------------------------------------


def _save(path: Path, pop: SavedPopulation) -> None:
    rows = [Scores(r, r > 0, [None] * len(r)) for r in pop.rewards]
    save_scored(path, "identity", Direction.zero(), pop.members, PopulationScores.stack(rows), "support")


@pytest.fixture
def run_dir(tmp_path) -> Path:
    run = tmp_path / "run"
    _save(run / "populations" / "round_000.npz", synthetic("isotropic", n=40))
    _save(run / "populations" / "round_001.npz", synthetic("planted", n=40))
    np.savez(run / "populations" / "round_002.rank0.partial.npz", rewards=np.zeros((2, 2)))  # still being scored
    return run


def test_cli_analyses_every_round_and_writes_json_and_png(run_dir, tmp_path, capsys):
    out = tmp_path / "out"
    args = [str(run_dir), "--splits", "20", "--null", "40", "--null-splits", "5", "--rank", "3", "--out", str(out)]
    assert analyze_main(args) == 0
    text = capsys.readouterr().out
    assert "round 0: 40 members x 24 support examples" in text and "round 1:" in text
    assert "not testable (degenerate)" in text and "verdict:" in text and "python -m corp.analyze" in text
    report = json.loads((out / "analysis.json").read_text())
    assert report["settings"]["rank"] == 3 and [p["round"] for p in report["populations"]] == [0, 1]
    seed, behaviour = report["populations"][1]["spaces"]
    assert seed["space"] == "seed" and len(seed["overlap"]) == 3 and len(behaviour["null_band"]) == 3
    assert (out / "analysis.png").stat().st_size > 20_000


def test_cli_picks_one_round_and_defaults_to_the_run_folder(run_dir, capsys):
    assert analyze_main([str(run_dir / "populations" / "round_001.npz"), "--splits", "5", "--null", "5"]) == 0
    assert analyze_main([str(run_dir), "--round", "1", "--splits", "5", "--null", "5"]) == 0
    report = json.loads((run_dir / "analysis.json").read_text())
    assert [p["round"] for p in report["populations"]] == [1]
    assert load_population(run_dir / "populations" / "round_001.npz").rewards.shape == (40, 24)


@pytest.mark.parametrize(
    "args, message",
    [
        (["{missing}"], "no such file or folder"),
        (["{foreign}"], "not a corp population file (missing keys: members"),
        (["{run}", "--rank", "0"], "--rank 0: must be >= 1"),
        (["{run}", "--quantile", "1.0"], "--quantile 1.0: must be in [0, 1)"),
        (["{run}", "--round", "7"], "--round 7: no such round"),
        (["{empty}"], "no populations/round_XXX.npz here"),
    ],
)
def test_cli_bad_input_is_a_clear_error(run_dir, tmp_path, capsys, args, message):
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.zeros(3))
    (tmp_path / "empty").mkdir()
    paths = {"missing": tmp_path / "nope", "foreign": foreign, "run": run_dir, "empty": tmp_path / "empty"}
    assert analyze_main([a.format(**paths) for a in args]) == 2
    assert message in capsys.readouterr().err


def test_a_raced_population_is_analysed_on_its_complete_rows_and_says_how_many():
    pop = synthetic("planted", seed=1)
    raced = pop.rewards.copy()
    raced[::3, 8:] = np.nan  # every third member raced out after 8 examples
    result = analyse(SavedPopulation(pop.path, 0, "support", pop.members, raced), FAST)
    assert (result.members, result.partial) == (160, 80) and np.isfinite(result.mean_reward)
    assert by_space(result)["seed"].detected  # the complete rows still carry the planted structure
