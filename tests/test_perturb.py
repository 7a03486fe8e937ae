"""Noise streams, the Direction algebra and exact restore, checked against dense tensors."""

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from corp.perturb.direction import Direction, weighted_svd
from corp.perturb.noise import NoiseSource, tensor_seed
from corp.perturb.space import ParameterSpace


def tiny_llama(dtype=torch.float32) -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
    )  # fmt: skip
    return LlamaForCausalLM(cfg).to(dtype)


def dense(space: ParameterSpace, direction: Direction) -> torch.Tensor:
    """The direction as one flat fp32 vector, built naively from the noise source."""
    parts = []
    for name, p in space.params:
        acc = torch.zeros(p.shape)
        for s, c in zip(direction.seeds.tolist(), direction.coeffs.tolist()):
            acc += c * space.noise.noise(s, name, p.shape)
        parts.append(acc.flatten())
    return torch.cat(parts)


def live_flat(space: ParameterSpace) -> torch.Tensor:
    return torch.cat([p.detach().float().flatten() for _, p in space.params])


def test_noise_is_deterministic_and_independent_across_tensors():
    src = NoiseSource()
    a = src.noise(7, "layers.0.q.weight", (256, 256))
    b = src.noise(7, "layers.0.q.weight", (256, 256))
    c = src.noise(7, "layers.1.q.weight", (256, 256))
    d = src.noise(8, "layers.0.q.weight", (256, 256))
    assert torch.equal(a, b)
    for other in (c, d):
        corr = torch.corrcoef(torch.stack([a.flatten(), other.flatten()]))[0, 1]
        assert abs(corr) < 0.02
    assert abs(a.mean()) < 0.02 and abs(a.std() - 1) < 0.02
    assert src.tensor_draws == 4


def test_shared_mode_reproduces_upstream_same_seed_per_tensor():
    src = NoiseSource("shared")
    assert torch.equal(src.noise(3, "a", (64,)), src.noise(3, "b", (64,)))
    assert tensor_seed(3, "a") != tensor_seed(3, "b")
    with pytest.raises(ValueError, match="noise_mode"):
        NoiseSource("bogus")


def test_direction_algebra_on_coefficients():
    a = Direction.from_pairs([(1, 2.0), (5, -1.0)])
    b = Direction.from_pairs([(5, 3.0), (9, 4.0)])
    assert (a + b) == Direction.from_pairs([(1, 2.0), (5, 2.0), (9, 4.0)])
    assert a.dot(b) == -3.0
    assert a.norm() == pytest.approx(np.sqrt(5))
    assert (2 * a).coeffs.tolist() == [4.0, -2.0]
    p = b.project(a)
    assert p.dot(a) == pytest.approx(b.dot(a)) and (b - p).dot(a) == pytest.approx(0.0)
    assert Direction.from_pairs([(5, 1.0), (1, 1.0), (5, 1.0)]) == Direction.from_pairs([(1, 1.0), (5, 2.0)])
    assert Direction.from_json(a.to_json()) == a
    assert Direction.combine([a, b], [1.0, -1.0]) == a - b


def test_direction_algebra_matches_dense_tensors():
    model = tiny_llama()
    space = ParameterSpace(model, NoiseSource())
    rng = np.random.default_rng(0)
    a = Direction(np.arange(0, 6), rng.normal(size=6))
    b = Direction(np.arange(3, 9), rng.normal(size=6))
    da, db = dense(space, a), dense(space, b)
    D = space.dim
    tol = 4 / np.sqrt(D) * a.norm() * b.norm()  # cross terms of distinct seeds are O(1/sqrt(D))
    assert float(da @ db) / D == pytest.approx(a.dot(b), abs=tol)
    assert float(da.norm()) / np.sqrt(D) == pytest.approx(a.norm(), rel=0.02)
    assert torch.allclose(dense(space, a + b), da + db, atol=1e-5)
    assert torch.allclose(dense(space, 2.5 * a), 2.5 * da, atol=1e-5)


def test_weighted_svd_matches_numpy_on_the_coefficient_matrix():
    rng = np.random.default_rng(1)
    dirs = [Direction(rng.choice(50, 10, replace=False), rng.normal(size=10)) for _ in range(12)]
    w = rng.random(12)
    comps, eig, mean = weighted_svd(dirs, w, rank=3)
    basis = np.unique(np.concatenate([d.seeds for d in dirs]))
    X = np.stack([d.coefficient_vector(basis) for d in dirs])
    wn = w / w.sum()
    cov = (X - wn @ X).T @ np.diag(wn) @ (X - wn @ X)
    top = np.sort(np.linalg.eigvalsh(cov))[::-1][:3]
    assert np.allclose(eig, top)
    for i, c in enumerate(comps):
        v = c.coefficient_vector(basis)
        assert np.allclose(cov @ v, eig[i] * v, atol=1e-9)
        assert c.norm() == pytest.approx(1.0)
    assert np.allclose(mean.coefficient_vector(basis), wn @ X)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_apply_and_restore_are_exact_over_many_cycles(dtype):
    model = tiny_llama(dtype)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    space = ParameterSpace(model, NoiseSource())
    for k in range(20):
        space.apply(Direction.from_pairs([(k, 1e-2), (k + 100, -3e-3)]))
        assert not torch.equal(model.model.layers[0].mlp.up_proj.weight, before["model.layers.0.mlp.up_proj.weight"])
        space.restore()
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n


def test_apply_sets_centre_plus_direction():
    model = tiny_llama()
    space = ParameterSpace(model, NoiseSource())
    base = live_flat(space)
    d = Direction.from_pairs([(11, 0.01), (12, -0.02)])
    with space.perturbed(d):
        assert torch.allclose(live_flat(space), base + dense(space, d), atol=1e-6)
    assert torch.equal(live_flat(space), base)


def test_commit_is_rebuildable_bit_exactly_from_the_saved_direction():
    model = tiny_llama()
    space = ParameterSpace(model, NoiseSource())
    space.commit(Direction.from_pairs([(1, 0.01), (2, 0.02)]))
    space.commit(Direction.from_pairs([(2, -0.005), (3, 0.01)]))
    centre = live_flat(space)
    with space.perturbed(Direction.from_seed(99, 0.05)):
        pass
    assert torch.equal(live_flat(space), centre)

    fresh = ParameterSpace(tiny_llama(), NoiseSource())
    fresh.load_committed(Direction.from_json(space.committed.to_json()))
    assert torch.equal(live_flat(fresh), centre)


def test_include_exclude_patterns_select_parameters():
    model = tiny_llama()
    space = ParameterSpace(model, NoiseSource(), include=["*mlp*"], exclude=["*down_proj*"])
    assert space.names and all("mlp" in n and "down_proj" not in n for n in space.names)
    frozen = model.model.layers[0].self_attn.q_proj.weight.detach().clone()
    space.apply(Direction.from_seed(1, 0.1))
    assert torch.equal(model.model.layers[0].self_attn.q_proj.weight, frozen)
    with pytest.raises(ValueError, match="perturbation.include"):
        ParameterSpace(model, NoiseSource(), include=["nothing*"])


def test_rescaled_direction_reuses_the_dense_cache_without_new_noise():
    model = tiny_llama()
    space = ParameterSpace(model, NoiseSource())
    base = live_flat(space)
    d = Direction.from_pairs([(1, 0.01), (2, -0.02), (3, 0.005)])
    space.apply(d)
    draws = space.noise.tensor_draws
    space.apply(4.0 * d)
    assert space.noise.tensor_draws == draws  # no seed regenerated
    assert torch.allclose(live_flat(space), base + 4.0 * dense(space, d), atol=1e-6)
    space.restore()
    assert torch.equal(live_flat(space), base)
    uncached = ParameterSpace(tiny_llama(), NoiseSource(), dense_cache=False)
    uncached.apply(4.0 * d)
    assert torch.allclose(live_flat(uncached), base + 4.0 * dense(space, d), atol=1e-6)


def test_seed_noise_cache_gives_identical_weights_with_fewer_draws():
    d1 = Direction.from_pairs([(1, 0.01), (2, -0.02), (3, 0.005)])
    d2 = Direction.from_pairs([(2, 0.03), (3, 0.01), (4, -0.01)])
    plain = ParameterSpace(tiny_llama(), NoiseSource(), dense_cache=False)
    cached = ParameterSpace(tiny_llama(), NoiseSource(), dense_cache=False, noise_cache_mb=2.0)
    assert cached.seed_cache.slots >= 4
    for space in (plain, cached):
        space.apply(d1)
        space.apply(d2)
    assert torch.equal(live_flat(plain), live_flat(cached))
    per_seed = len(plain.params)
    assert plain.noise.tensor_draws == 6 * per_seed and cached.noise.tensor_draws == 4 * per_seed
    cached.commit(d2)  # commits read the cache too and stay exact
    plain.commit(d2)
    assert torch.equal(live_flat(plain), live_flat(cached))


def test_seed_noise_cache_evicts_least_recently_used_within_its_budget():
    space = ParameterSpace(tiny_llama(), NoiseSource(), dense_cache=False, noise_cache_mb=2.0)
    slots = space.seed_cache.slots
    for seed in range(slots + 3):
        space.apply(Direction.from_seed(seed, 0.01))
    assert len(space.seed_cache._store) == slots
    assert 0 not in space.seed_cache and slots + 2 in space.seed_cache
