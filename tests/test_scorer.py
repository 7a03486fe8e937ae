"""The optimised scorer against plain ``model.generate``: same completions, rewards and answers.

All on the tiny random-weight Llama with the embedded model's tokenizer. Its greedy
outputs are arbitrary tokens, so stop strings are single letters that such text hits
at varying steps (rows finish at different times, some run to ``max_new_tokens``).
Tolerance: exact equality of every completion. Batching changes only floating-point
rounding, which flips a greedy choice only on a near-tie; on these fixed inputs there is
none (the real-model agreement is measured by benchmarks/scorer_throughput.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from corp.perturb.direction import Direction
from corp.perturb.noise import NoiseSource
from corp.perturb.space import ParameterSpace
from corp.scoring import kv
from corp.scoring.greedy import GreedyDecoder, shared_prefix_length
from corp.scoring.memory import auto_batch_size, row_bytes
from corp.scoring.plain import plain_generate
from corp.scoring.scorer import Scorer, cut
from corp.scoring.stops import StopChecker
from corp.tasks.arithmetic import ArithmeticConfig, ArithmeticTask
from corp.tasks.custom import CustomConfig, CustomTask

SHOTS = [{"prompt": "What is 3 + 4? Reply with only the number.", "response": "7"}]


class LetterStop(ArithmeticTask):
    """Arithmetic prompts; decoding stops at letters that random-weight text soon produces."""

    stop = ("e", "a")
    max_new_tokens = 8


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    model.requires_grad_(False)
    torch.manual_seed(0)
    with torch.no_grad():  # large random weights: varied text instead of one repeated token
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.normal_(0.0, 0.3)
    return model, tok


def make(tiny, few_shot=(), batch_size=4, n=6, task_cls=LetterStop):
    model, tok = tiny
    task = task_cls(ArithmeticConfig(support_size=n, probe_size=2, test_size=2, few_shot=list(few_shot)))
    splits = task.splits({"support": n, "probe": 2, "test": 2}, seed=0)
    return Scorer(model, tok, task, splits, chat_template=False, batch_size=batch_size), task


def plain(scorer: Scorer, task, indices=None) -> list[str]:
    prompts = scorer.prompt_ids("support", indices)
    texts, _ = plain_generate(
        scorer.model, scorer.tokenizer, prompts, task.max_new_tokens, task.stop, scorer.batch_size
    )
    return [cut(t, task.stop) for t in texts]


@pytest.mark.parametrize("few_shot", [(), SHOTS], ids=["no-prefix", "shared-prefix"])
def test_scorer_matches_plain_generate(tiny, few_shot):
    scorer, task = make(tiny, few_shot)
    if not few_shot:
        scorer.decoder.min_shared_prefix = 10**9  # every prompt runs whole
    prefix = scorer.decoder.encode_prefix(scorer.prompt_ids("support"))
    assert (prefix is not None) == bool(few_shot)  # the few-shot block is the shared prefix
    expected = plain(scorer, task)
    decoded = scorer.score("support")
    assert decoded.completions == expected
    ends = [len(scorer.tokenizer(c)["input_ids"]) for c in decoded.completions]
    assert len(set(ends)) > 1  # rows finished at different steps: the early-exit path ran
    exs = scorer.splits["support"]
    np.testing.assert_array_equal(decoded.rewards, [task.reward(c, e) for c, e in zip(expected, exs)])
    assert decoded.answers == [task.extract(c) for c in expected]
    assert scorer.examples_decoded == len(exs) and scorer.tokens_generated > 0


def test_subsets_and_batch_sizes_give_the_same_completions(tiny):
    reference, _ = make(tiny, SHOTS, batch_size=100)
    full = reference.score("support").completions
    scorer, _ = make(tiny, SHOTS, batch_size=1)
    assert scorer.score("support").completions == full
    idx = np.array([4, 1, 3])
    assert reference.score("support", idx).completions == [full[i] for i in idx]


def test_prefix_cache_is_rebuilt_for_each_member(tiny):
    """A perturbed model must never decode with keys/values computed by another one."""
    model, _ = tiny
    scorer, task = make(tiny, SHOTS)
    space = ParameterSpace(model, NoiseSource())
    base = scorer.score("support").completions
    with space.perturbed(Direction.from_seed(3, 0.5)):
        perturbed = scorer.score("support").completions
        assert perturbed == plain(scorer, task)
    assert perturbed != base
    assert scorer.score("support").completions == base


def test_swapping_the_model_scores_the_new_one(tiny, tiny_model_dir):
    scorer, task = make(tiny, SHOTS)
    before = scorer.score("support").completions
    other = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()  # unscaled weights
    scorer.model = other
    after = scorer.score("support").completions
    assert after != before and after == plain(scorer, task)


def test_preallocated_cache_matches_concatenating_cache(tiny):
    model, tok = tiny
    scorer, _ = make(tiny, SHOTS)
    prompts = scorer.prompt_ids("support")
    fwd = kv.Forward(model)
    if not isinstance(fwd.new_cache(64).layers[0], kv._Preallocated):
        pytest.skip("this transformers release has no per-layer caches")
    decoder = GreedyDecoder(model, scorer.stop, tok.pad_token_id, 8)
    fast = decoder.decode(prompts, decoder.encode_prefix(prompts))
    decoder.forward.new_cache = lambda capacity=None: kv.Forward.new_cache(fwd)  # no capacity: plain DynamicCache
    assert decoder.decode(prompts, decoder.encode_prefix(prompts)) == fast


class CountingRewards(LetterStop):
    """Records how the scorer asks for rewards: one batched call, or one call per example."""

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.batches: list[int] = []

    def rewards(self, completions, examples):
        self.batches.append(len(completions))
        return super().rewards(completions, examples)


def test_rewards_come_from_one_batched_call_and_equal_per_example_rewards(tiny):
    scorer, task = make(tiny, task_cls=CountingRewards)
    idx = np.array([5, 0, 2])
    decoded = scorer.score("support", idx)
    assert task.batches == [3]
    exs = [scorer.splits["support"][i] for i in idx]
    expected = [LetterStop.reward(task, c, e) for c, e in zip(decoded.completions, exs)]
    assert decoded.rewards.tolist() == expected
    assert decoded.correct.tolist() == [r >= 1.0 for r in expected]


def test_a_custom_reward_function_is_called_once_per_scored_batch(tiny):
    fixtures = Path(__file__).parent / "fixtures"
    cfg = CustomConfig(data_files=str(fixtures / "custom.jsonl"), prompt_field="question", answer_field="answer",
                       reward_fn=f"{fixtures / 'custom_rewards.py'}:contains_answer", max_new_tokens=4)  # fmt: skip
    task = CustomTask(cfg)
    splits = task.splits({"support": 4, "probe": 2, "test": 2}, seed=0)
    model, tok = tiny
    scorer = Scorer(model, tok, task, splits, chat_template=False, batch_size=2)
    calls = []
    (f,) = task.reward_fns
    fn = f.fn
    f.fn = lambda **kw: calls.append(len(kw["completions"])) or fn(**kw)
    decoded = scorer.score("support")
    assert calls == [4]  # the decoding batch size (2) does not split the reward call
    answers = [ex.answer.lower() for ex in splits["support"]]
    assert decoded.rewards.tolist() == [float(a in c.lower()) for c, a in zip(decoded.completions, answers)]


class WrongCount(LetterStop):
    def rewards(self, completions, examples):
        return [0.0]


def test_a_task_returning_the_wrong_number_of_rewards_is_named(tiny):
    scorer, _ = make(tiny, task_cls=WrongCount)
    with pytest.raises(ValueError, match=r"rewards\(\) returned shape \(1,\) for 6 completions"):
        scorer.score("support")


def test_stop_checker_finds_stop_strings_spanning_tokens(tiny):
    _, tok = tiny
    checker = StopChecker(tok, [tok.eos_token_id], ["</answer>"])
    ids = tok("<answer>4 * 7</answer> and more")["input_ids"]
    first = next(k for k in range(1, len(ids) + 1) if "</answer>" in tok.decode(ids[:k]))
    assert checker.finished([ids[: first - 1], ids[:first]]) == [False, True]
    assert checker.finished([[tok.eos_token_id], []]) == [True, False]
    assert cut("x</answer>y</answer>", ("</answer>",)) == "x</answer>"


def test_shared_prefix_length_leaves_each_prompt_a_token():
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5]]) == 3
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3, 4]]) == 2
    assert shared_prefix_length([[7, 1], [8, 1]]) == 0
    assert shared_prefix_length([]) == 0


def test_auto_batch_size_follows_memory(tiny):
    model, _ = tiny
    per_row = row_bytes(model.config, torch.float32, 40, 12)
    assert per_row > 0
    n = auto_batch_size(model.config, torch.float32, torch.device("cpu"), 40, 12, examples=500)
    assert 1 <= n <= 500
    scorer, _ = make(tiny, batch_size=0)
    assert 1 <= scorer.batch_size <= 6
