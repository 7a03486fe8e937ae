"""Noise streams, the Direction algebra and exact restore, checked against dense tensors."""

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from corp.perturb.dense import MAX_SLOTS
from corp.perturb.direction import Direction, weighted_svd
from corp.perturb.noise import CHUNK, TABLE_SEED, TABLE_SIZE, NoiseSource, cpu_table, table_offset, tensor_seed
from corp.perturb.space import ParameterSpace


def tiny_llama(dtype=torch.float32, vocab_size=256) -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
    )  # fmt: skip
    return LlamaForCausalLM(cfg).to(dtype)


MODES = ["independent", "chunked", "table"]
BLOCK_MODES = ["chunked", "table"]  # noise defined per 64K-element block


def tiny(mode: str, dtype=torch.float32) -> LlamaForCausalLM:
    """The tiny model; in the block modes with an embedding of several noise blocks."""
    return tiny_llama(dtype, vocab_size=3000 if mode in BLOCK_MODES else 256)


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


@pytest.fixture
def torch_threads():
    """Set torch's thread count inside a test; the previous count comes back afterwards."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.mark.parametrize("mode", BLOCK_MODES)
def test_block_noise_is_the_same_for_any_thread_count(torch_threads, mode):
    n = 3 * CHUNK + 17
    torch_threads(1)
    one = NoiseSource(mode).noise(5, "w", (n,))
    torch_threads(2)
    two = NoiseSource(mode).noise(5, "w", (n,))
    assert torch.equal(one, two)
    blocks = one[: 3 * CHUNK].view(3, CHUNK)
    corr = torch.corrcoef(blocks).fill_diagonal_(0)
    assert corr.abs().max() < 0.02  # each block is its own stream / window, not a copy of the first
    assert abs(one.mean()) < 0.01 and abs(one.std() - 1) < 0.01
    assert not torch.equal(one, NoiseSource("independent").noise(5, "w", (n,)))


def test_table_noise_is_windows_of_one_table_and_members_are_uncorrelated():
    src = NoiseSource("table")
    eps = src.noise(7, "layer.weight", (2 * CHUNK,))
    starts = [table_offset(7, "layer.weight", b) for b in range(2)]
    table = torch.from_numpy(cpu_table().ensure(starts, CHUNK, src))
    assert table.numel() == TABLE_SIZE
    for b, start in enumerate(starts):
        assert torch.equal(eps[b * CHUNK : (b + 1) * CHUNK], table[start : start + CHUNK])
    # the table's blocks are the chunked noise of one fixed seed, drawn when first touched
    first = starts[0] // CHUNK
    want = NoiseSource("chunked").noise(TABLE_SEED, "corp/noise-table", ((first + 1) * CHUNK,))
    assert torch.equal(table[first * CHUNK : (first + 1) * CHUNK], want[first * CHUNK :])
    members = torch.stack([src.noise(seed, "layer.weight", (CHUNK,)) for seed in range(8)])
    assert torch.corrcoef(members).fill_diagonal_(0).abs().max() < 0.02
    assert not torch.equal(eps[:CHUNK], src.noise(7, "other.weight", (CHUNK,)))  # per-tensor windows


@pytest.mark.parametrize("mode", BLOCK_MODES)
def test_block_modes_build_the_same_model_at_any_thread_count(torch_threads, mode):
    d = Direction.from_pairs([(11, 0.01), (12, -0.02)])
    committed = []
    for threads in (1, 2):
        torch_threads(threads)
        space = ParameterSpace(tiny(mode), NoiseSource(mode))
        base = live_flat(space)
        space.commit(d)
        committed.append(live_flat(space))
        assert torch.allclose(committed[-1], base + dense(space, d), atol=1e-6)
    assert torch.equal(committed[0], committed[1])


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


@pytest.mark.parametrize("mode", MODES)
def test_apply_sets_centre_plus_direction(mode):
    model = tiny(mode)
    space = ParameterSpace(model, NoiseSource(mode))
    base = live_flat(space)
    d = Direction.from_pairs([(11, 0.01), (12, -0.02)])
    with space.perturbed(d):
        assert torch.allclose(live_flat(space), base + dense(space, d), atol=1e-6)
    assert torch.equal(live_flat(space), base)


@pytest.mark.parametrize("mode", MODES)
def test_commit_is_rebuildable_bit_exactly_from_the_saved_direction(mode):
    model = tiny(mode)
    space = ParameterSpace(model, NoiseSource(mode))
    space.commit(Direction.from_pairs([(1, 0.01), (2, 0.02)]))
    space.commit(Direction.from_pairs([(2, -0.005), (3, 0.01)]))
    centre = live_flat(space)
    with space.perturbed(Direction.from_seed(99, 0.05)):
        pass
    assert torch.equal(live_flat(space), centre)

    fresh = ParameterSpace(tiny(mode), NoiseSource(mode))
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


@pytest.mark.parametrize("mode", MODES)
def test_rescaled_direction_reuses_the_dense_cache_without_new_noise(mode):
    model = tiny(mode)
    space = ParameterSpace(model, NoiseSource(mode))
    base = live_flat(space)
    d = Direction.from_pairs([(1, 0.01), (2, -0.02), (3, 0.005)])
    space.apply(d)
    draws = space.noise.tensor_draws
    space.apply(4.0 * d)
    assert space.noise.tensor_draws == draws  # no seed regenerated
    assert torch.allclose(live_flat(space), base + 4.0 * dense(space, d), atol=1e-6)
    space.restore()
    assert torch.equal(live_flat(space), base)
    uncached = ParameterSpace(tiny(mode), NoiseSource(mode), dense_cache=False)
    uncached.apply(4.0 * d)
    assert torch.allclose(live_flat(uncached), base + 4.0 * dense(space, d), atol=1e-6)


def draws(space: ParameterSpace) -> float:
    return space.noise.tensor_draws / len(space.params)


@pytest.mark.parametrize("mode", MODES)
def test_announced_directions_are_built_in_one_pass_over_their_seeds(mode):
    """Stage 1: every (q, beta) merge of one elite, each tried at several step sizes."""
    rng = np.random.default_rng(0)
    seeds = np.arange(10, 20)
    candidates = [Direction(seeds, rng.normal(size=10) * 0.01) for _ in range(3)]
    budget = 4 * 4 * sum(p.numel() for p in tiny(mode).parameters()) / 2**20  # four rows
    plain = ParameterSpace(tiny(mode), NoiseSource(mode), dense_cache=False)
    fast = ParameterSpace(tiny(mode), NoiseSource(mode), noise_cache_mb=budget)
    assert fast.dense.slots == 4
    fast.prefetch(candidates)
    for d in candidates:
        for s in (0.5, 2.0):
            plain.apply(s * d)
            fast.apply(s * d)
            assert torch.allclose(live_flat(fast), live_flat(plain), rtol=1e-5, atol=1e-7)
    assert draws(plain) == 6 * 10 and draws(fast) == 10  # each seed drawn once for all candidates
    fast.restore()
    plain.restore()
    assert torch.equal(live_flat(fast), live_flat(plain))


@pytest.mark.parametrize("mode", MODES)
def test_members_on_a_cached_basis_cost_one_draw_each(mode):
    """Stage 2: a member is one fresh seed plus a combination of r principal directions."""
    rng = np.random.default_rng(1)
    cloud = [Direction(np.arange(100, 112), rng.normal(size=12)) for _ in range(6)]
    components, _, _ = weighted_svd(cloud, rank=3, center=False)
    budget = 5 * 4 * sum(p.numel() for p in tiny(mode).parameters()) / 2**20
    plain = ParameterSpace(tiny(mode), NoiseSource(mode), dense_cache=False)
    fast = ParameterSpace(tiny(mode), NoiseSource(mode), noise_cache_mb=budget)
    fast.prefetch(components, basis=True)
    assert draws(fast) == 12  # the basis: one pass over its seeds
    members = [
        Direction.combine([Direction.from_seed(500 + i), *components], [0.01, *rng.normal(size=3) * 0.01])
        for i in range(4)
    ]
    for m in members:
        with plain.perturbed(m), fast.perturbed(m):
            assert torch.allclose(live_flat(fast), live_flat(plain), rtol=1e-5, atol=1e-7)
    assert draws(fast) == 12 + 4 and draws(plain) == 4 * 13
    # A merge of members (a stage-2 proposal) needs only the members' fresh seeds.
    merged = Direction.combine(members, [0.5, 0.3, 0.2, 0.0]).pruned()
    before = draws(fast)
    fast.apply(merged)
    plain.apply(merged)
    assert torch.allclose(live_flat(fast), live_flat(plain), rtol=1e-5, atol=1e-7)
    assert draws(fast) - before == 3


@pytest.mark.parametrize("mode", MODES)
def test_dense_rows_never_change_commits_or_restore(mode):
    d = Direction.from_pairs([(1, 0.01), (2, -0.02), (3, 0.005)])
    for dtype in (torch.float32, torch.bfloat16):
        plain = ParameterSpace(tiny(mode, dtype), NoiseSource(mode), dense_cache=False)
        fast = ParameterSpace(tiny(mode, dtype), NoiseSource(mode), noise_cache_mb=1.0)
        fast.prefetch([d])
        fast.apply(2.0 * d)
        centre = live_flat(plain)
        fast.restore()
        assert torch.equal(live_flat(fast), centre)
        for space in (plain, fast):
            space.commit(d)
        assert torch.equal(live_flat(fast), live_flat(plain))


def test_dense_rows_stay_within_their_budget():
    space = ParameterSpace(tiny_llama(), NoiseSource(), noise_cache_mb=1.0)
    slots = space.dense.slots
    assert 1 < slots < 20
    for k in range(slots + 3):
        space.apply(Direction.from_pairs([(2 * k, 0.01), (2 * k + 1, 0.01)]))
    assert sum(key is not None for key in space.dense.keys) == slots
    assert space.dense.find_scaled(Direction.from_pairs([(0, 1.0), (1, 1.0)])) is None  # least recent evicted
    assert space.dense.find_scaled(Direction.from_pairs([(2 * slots + 4, 1.0), (2 * slots + 5, 1.0)])) is not None


def test_a_small_selection_caps_the_rows_instead_of_filling_the_budget():
    """4 GiB over one 64-weight norm would be millions of rows; the cap keeps the rows few and working."""
    model = tiny_llama()
    space = ParameterSpace(model, NoiseSource(), include=["model.norm.weight"], noise_cache_mb=4096.0)
    assert space.dim == 64 and space.dense.slots == MAX_SLOTS
    assert len(space.dense.keys) == MAX_SLOTS and space.dense.data.shape == (MAX_SLOTS, 64)
    plain = ParameterSpace(tiny_llama(), NoiseSource(), include=["model.norm.weight"], dense_cache=False)
    for k in range(MAX_SLOTS + 2):  # more multi-seed directions than rows: the oldest are evicted
        d = Direction.from_pairs([(2 * k, 0.01), (2 * k + 1, -0.02)])
        with space.perturbed(d), plain.perturbed(d):
            assert torch.allclose(model.model.norm.weight, plain.model.model.norm.weight, rtol=1e-6, atol=1e-7)
    assert sum(key is not None for key in space.dense.keys) == MAX_SLOTS
    assert space.dense.find_scaled(Direction.from_pairs([(0, 1.0), (1, -2.0)])) is None


def test_basis_rows_need_not_be_adjacent():
    """Rows are reused least-recently-used first, so a basis can land on rows 4 and 0."""
    rng = np.random.default_rng(2)
    budget = 5 * 4 * sum(p.numel() for p in tiny_llama().parameters()) / 2**20
    plain = ParameterSpace(tiny_llama(), NoiseSource(), dense_cache=False)
    fast = ParameterSpace(tiny_llama(), NoiseSource(), noise_cache_mb=budget)
    for k in range(4):
        fast.apply(Direction.from_pairs([(900 + 2 * k, 0.01), (901 + 2 * k, 0.01)]))
    components = [Direction(np.arange(100, 104), v) for v in np.linalg.qr(rng.normal(size=(4, 2)))[0].T]
    fast.prefetch(components, basis=True)
    assert sorted(fast.dense.basis) == [0, 4]
    member = Direction.combine([Direction.from_seed(7), *components], [0.01, 0.02, -0.03])
    with plain.perturbed(member), fast.perturbed(member):
        assert torch.allclose(live_flat(fast), live_flat(plain), rtol=1e-5, atol=1e-7)
