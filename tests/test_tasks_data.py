"""Dataset-backed tasks (GSM8K, MATH, sentence ordering, Countdown from a file) and data loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corp.tasks import build_task
from corp.tasks.answers import canonical_number, last_tagged
from corp.tasks.base import SPLITS, Example
from corp.tasks.countdown import CountdownConfig
from corp.tasks.data import hub_rows, local_files, read_file
from corp.tasks.gsm8k import GSM8KConfig, final_number
from corp.tasks.latex import canonical, equivalent, last_boxed, normalize
from corp.tasks.math500 import MathConfig
from corp.tasks.ordering import OrderingConfig, order_reward, parse_order

FIXTURES = Path(__file__).parent / "fixtures"
TINY = {"support": 2, "probe": 2, "test": 2}


# --- loading ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["custom.jsonl", "custom.csv", "custom.parquet"])
def test_read_file_formats_agree(name: str) -> None:
    rows = read_file(FIXTURES / name)
    assert len(rows) == 8 and rows[0] == {"question": "Name the capital of France.", "answer": "Paris"}


def test_read_file_json_list_and_errors(tmp_path: Path) -> None:
    assert read_file(FIXTURES / "countdown.json")[0]["numbers"] == [3, 5, 2]
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\nnot json\n')
    with pytest.raises(ValueError, match=r"task\.data_files=.*bad\.jsonl.*line 2 is not JSON"):
        read_file(tmp_path / "bad.jsonl")
    (tmp_path / "list.jsonl").write_text("[1, 2]\n")
    with pytest.raises(ValueError, match="record 0 is list, not an object"):
        read_file(tmp_path / "list.jsonl")
    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(ValueError, match="unknown format; allowed suffixes: .jsonl, .json, .csv, .parquet"):
        read_file(tmp_path / "data.txt")
    with pytest.raises(ValueError, match=r"task\.data_files=.*nowhere\.jsonl.*: file not found"):
        read_file(tmp_path / "nowhere.jsonl")


def test_local_files_from_a_file_a_folder_or_a_mapping(tmp_path: Path) -> None:
    assert local_files(str(FIXTURES / "gsm8k"), "train", "test") == {
        "train": FIXTURES / "gsm8k" / "train.jsonl",
        "test": FIXTURES / "gsm8k" / "test.jsonl",
    }
    assert local_files(str(FIXTURES / "math.jsonl"), "test", None) == {"test": FIXTURES / "math.jsonl"}
    mapping = {"train": str(FIXTURES / "gsm8k" / "train.jsonl"), "test": str(FIXTURES / "gsm8k" / "test.jsonl")}
    assert set(local_files(mapping, "train", "test")) == {"train", "test"}
    with pytest.raises(ValueError, match=r"folder has no train\.<format> file"):
        local_files(str(tmp_path), "train", "test")
    with pytest.raises(ValueError, match=r"task\.data_files\.test=.*: file not found"):
        local_files({"train": mapping["train"], "test": str(tmp_path / "x.jsonl")}, "train", "test")


def test_hub_loading_goes_through_datasets_load_dataset(monkeypatch) -> None:
    """The hub path is the real ``datasets.load_dataset``; a local folder stands in for a hub id."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    calls = []
    real = datasets.load_dataset
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **kw: calls.append((a, kw)) or real(*a, **kw))
    rows = hub_rows(str(FIXTURES / "gsm8k"), None, ["train", "test"])
    assert calls and calls[0][0][0] == str(FIXTURES / "gsm8k")
    assert len(rows["train"]) == 6 and len(rows["test"]) == 3 and "question" in rows["train"][0]
    with pytest.raises(ValueError, match=r"has splits \['test', 'train'\]; missing \['validation'\]"):
        hub_rows(str(FIXTURES / "gsm8k"), None, ["validation"])


def test_an_unreachable_hub_dataset_is_a_config_error(monkeypatch) -> None:
    datasets = pytest.importorskip("datasets")

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    task = build_task(GSM8KConfig())
    with pytest.raises(ValueError, match=r"task\.dataset='openai/gsm8k'.*could not be loaded.*task\.data_files"):
        task.splits(TINY, 0)


# --- GSM8K --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("3 * 4 = 12\n#### 12", "12"),
        ("#### $1,234.50", "1234.5"),
        ("#### 18 dollars per 2 days", "18"),
        ("The answer is 7.\n#### 9\nso 7", "9"),  # strict #### wins over the last number
        ("She has 5 apples, then 8.", "8"),  # no ####: the last number
        ("#### none\nwe get 4", "4"),
        ("It costs $2,000.", "2000"),
        ("-3 degrees", "-3"),
        ("no numbers", None),
    ],
)
def test_final_number(text: str, number: str | None) -> None:
    assert final_number(text) == number


def test_gsm8k_reward_and_splits_on_fixture_files() -> None:
    task = build_task(GSM8KConfig(data_files=str(FIXTURES / "gsm8k")))
    splits = task.splits(TINY, 0)
    train_prompts = {ex.prompt for ex in task.data()["train"]}
    test_prompts = {ex.prompt for ex in task.data()["test"]}
    assert all(ex.prompt in train_prompts for s in ("support", "probe") for ex in splits[s])
    assert all(ex.prompt in test_prompts for ex in splits["test"])
    ex = next(e for e in task.data()["train"] if "1,200 hens" in e.prompt)
    assert ex.answer == "950" and ex.prompt.endswith('write the final answer after "####".')
    assert task.reward("1200 - 250 = 950\n#### 950", ex) == 1.0
    assert task.reward("#### 950 hens", ex) == 1.0
    assert task.reward("So 950.", ex) == 1.0
    assert task.reward("#### 1,450\nthen 950", ex) == 0.0
    assert task.reward("#### 949", ex) == 0.0
    assert task.reward("I don't know", ex) == 0.0
    assert task.extract("#### 950.00") == "950"


def test_gsm8k_a_record_without_a_number_answer_is_named(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text(json.dumps({"question": "q", "answer": "no number here"}) + "\n")
    with pytest.raises(ValueError, match=r"train record 0: answer 'no number here' has neither"):
        build_task(GSM8KConfig(data_files=str(tmp_path / "train.jsonl"))).splits(TINY, 0)
    (tmp_path / "q.jsonl").write_text(json.dumps({"prompt": "q", "answer": "#### 1"}) + "\n")
    with pytest.raises(ValueError, match=r"record 0: no column 'question' \(columns: answer, prompt\)"):
        build_task(GSM8KConfig(data_files=str(tmp_path / "q.jsonl"))).splits(TINY, 0)


def write_gsm8k(folder: Path) -> dict[str, list[dict[str, str]]]:
    """A GSM8K-shaped data set at the scale of a real run: ``train.jsonl`` and ``test.jsonl`` with
    ``question`` and a worked ``answer`` (calculator annotations, ``#### <n>`` with thousands
    separators). Train repeats 10 of its questions, and 20 test questions also appear in train."""
    train = []
    for i in range(290):
        a, b = 2 + i % 17, 25 * (3 + i // 17)  # distinct (a, b) pairs; products from 150 to 9,000
        train.append({"question": f"A crate holds {a} trays of {b} eggs. How many eggs are in the crate?",
                      "answer": f"{a} * {b} = <<{a}*{b}={a * b}>>{a * b} eggs.\n#### {a * b:,}"})  # fmt: skip
    train += train[:10]  # duplicates: a split never holds a question twice
    test = []
    for i in range(230):
        a, b = 1000 + 7 * i, 3 + i % 11
        test.append({"question": f"A farm has {a} hens and sells {b}. How many hens are left?",
                     "answer": f"{a} - {b} = <<{a}-{b}={a - b}>>{a - b} hens.\n#### {a - b:,}"})  # fmt: skip
    test += train[100:120]  # leaked into test: they must never reach support or probe
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", train), ("test", test)):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"train": train, "test": test}


def test_gsm8k_at_the_scale_of_a_run(tmp_path: Path) -> None:
    rows = write_gsm8k(tmp_path / "gsm8k")
    task = build_task(GSM8KConfig(data_files=str(tmp_path / "gsm8k")))
    data = task.data()
    assert len(data["train"]) == 300 and len(data["test"]) == 250  # every record read, in file order
    splits = task.splits({"support": 100, "probe": 100, "test": 200}, 0)
    keys = [task.dedup_key(ex) for s in SPLITS for ex in splits[s]]
    assert len(set(keys)) == 400
    test_prompts = {ex.prompt for ex in data["test"]}
    leaked = test_prompts & {ex.prompt for ex in data["train"]}
    assert len(leaked) == 20  # the leak is there to be excluded ...
    assert not test_prompts & {ex.prompt for s in ("support", "probe") for ex in splits[s]}  # ... and it is
    for ex, row in zip(data["test"], rows["test"], strict=True):  # references canonical; worked answers score 1
        assert canonical_number(ex.answer) == ex.answer
        assert task.reward(row["answer"], ex) == 1.0
        assert task.reward(f"The answer is\n#### {ex.answer}", ex) == 1.0
    assert data["test"][0].answer == "997" and data["test"][1].answer == "1003"  # "#### 1,003" read as 1003
    assert splits != task.splits({"support": 100, "probe": 100, "test": 200}, 1)  # data_seed reshuffles


# --- MATH ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "reference"),
    [
        ("\\frac{1}{2}", "0.5"),
        ("\\dfrac12", "1/2"),
        ("\\tfrac{1}{2}", "\\frac12"),
        ("\\frac 5 6", "\\frac{5}{6}"),
        ("\\left( 2, 2 \\right)", "(2,2)"),
        ("9 \\text{ cm}", "9"),
        ("9\\mbox{ square units}", "9"),
        ("90^\\circ", "90"),
        ("x = 4", "4"),
        ("\\$1,000", "1000"),
        ("2 \\sqrt 3", "2\\sqrt{3}"),
        ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt3}2"),
        ("-0.75", "-\\frac{3}{4}"),
        ("50\\%", "50"),
        ("\\text{(B)}", "(B)"),
    ],
)
def test_equivalent_answers(answer: str, reference: str) -> None:
    assert equivalent(answer, reference), (normalize(answer), normalize(reference))


@pytest.mark.parametrize(
    ("answer", "reference"),
    [("\\frac{1}{3}", "0.33"), ("2\\sqrt{3}", "\\sqrt{12}"), ("(2,3)", "(3,2)"), ("5", "-5"), ("", "0")],
)
def test_different_answers(answer: str, reference: str) -> None:
    assert not equivalent(answer, reference)


def test_last_boxed() -> None:
    assert last_boxed("first \\boxed{1}, then \\boxed{\\frac{1}{2}}.") == "\\frac{1}{2}"
    assert last_boxed("\\boxed{\\{1, 2\\}}") is not None
    assert last_boxed("so \\boxed 7$.") == "7"
    assert last_boxed("\\fbox{3}") == "3"
    assert last_boxed("\\boxed{unclosed") is None
    assert last_boxed("no box") is None


def test_math_reward_and_vote_key_on_fixture_file() -> None:
    task = build_task(MathConfig(data_files=str(FIXTURES / "math.jsonl")))
    data = task.data()["test"]
    assert len(data) == 7
    half = next(ex for ex in data if "frac{1}{2} + " in ex.prompt)
    assert half.prompt.endswith("Put your final answer within \\boxed{}.")
    assert task.reward("1/2 + 1/3 = \\boxed{\\dfrac{5}{6}}", half) == 1.0
    assert task.reward("\\boxed{0.8333}", half) == 0.0
    assert task.reward("The answer is 5/6.", half) == 0.0  # no box, no answer
    assert task.reward("\\boxed{5/6", half) == 0.0  # malformed
    quarter = next(ex for ex in data if "0.25" in ex.prompt)
    assert quarter.answer == "\\frac{1}{4}"  # taken from the solution's box
    assert task.extract("\\boxed{0.25}") == task.extract("\\boxed{\\frac14}") == "0.25"
    assert task.extract("\\boxed{ (2, 2) }") == canonical("(2,2)")
    splits = task.splits(TINY, 0)
    assert len({ex.prompt for s in SPLITS for ex in splits[s]}) == 6


# --- sentence ordering --------------------------------------------------------------------------


def test_order_reward_weights_positions_and_adjacent_pairs() -> None:
    truth = [3, 1, 5, 2, 4]
    assert order_reward(truth, truth) == pytest.approx(1.0)
    assert order_reward([4, 2, 5, 1, 3], truth) == pytest.approx(0.6 * 1 / 5 + 0.4 * 0)  # reversed: middle only
    assert order_reward([1, 5, 2, 4, 3], truth) == pytest.approx(0.6 * 0 + 0.4 * 3 / 4)  # rotated: pairs kept
    assert order_reward([3, 1, 2, 4, 5], truth) == pytest.approx(0.6 * 2 / 5 + 0.4 * 2 / 4)  # (3,1), (2,4) kept
    assert order_reward([3, 1], truth) == pytest.approx(0.6 * 2 / 5 + 0.4 * 1 / 4)  # a partial answer


def test_parse_order() -> None:
    assert parse_order("3 1 5 2 4", 5) == [3, 1, 5, 2, 4]
    assert parse_order("The order is [3], [1], [5], [2], [4].", 5) == [3, 1, 5, 2, 4]
    assert parse_order("3, 3, 1, 9, 5, 2, 4, 1", 5) == [3, 1, 5, 2, 4]  # repeats and out-of-range dropped
    assert parse_order("3", 5) is None
    assert parse_order("I cannot tell", 5) is None


def test_rocstories_examples_and_reward_on_fixture_stories() -> None:
    task = build_task(OrderingConfig(data_files=str(FIXTURES / "rocstories.csv")))
    data = task.data()["spring2016"]
    assert len(data) == 8
    for ex in data:
        order = ex.meta["order"]
        assert sorted(order) == [1, 2, 3, 4, 5] and order != [1, 2, 3, 4, 5]  # shuffled, never in order
        lines = [line.split("] ", 1)[1] for line in ex.prompt.splitlines() if line.startswith("[")]
        story = [lines[k - 1] for k in order]
        assert story[0].split()[0] in {"Maya", "Leo", "Nina", "Omar", "Grace", "Ken's", "Ava", "It"}
        assert task.reward(ex.answer, ex) == pytest.approx(1.0) and task.is_correct(ex.answer, ex)
        assert task.extract(f"The order: {ex.answer}.") == ex.answer
        assert task.reward("no idea", ex) == 0.0
    again = build_task(OrderingConfig(data_files=str(FIXTURES / "rocstories.csv"))).data()["spring2016"]
    assert [ex.prompt for ex in again] == [ex.prompt for ex in data]  # same shuffle in every run
    splits = task.splits(TINY, 0)
    assert len({ex.prompt for s in SPLITS for ex in splits[s]}) == 6


def test_rocstories_reads_text_and_list_layouts(tmp_path: Path) -> None:
    story = ["Ann lost her key.", "She searched the house.", "Her cat sat on the mat.", "The key was under it.",
             "Ann laughed and hugged the cat."]  # fmt: skip
    rows = [{"text": " ".join(story)}, {"sentences": story[::-1]}, {"text": "Too short. Only two."}]
    path = tmp_path / "stories.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = build_task(OrderingConfig(data_files=str(path))).data()["spring2016"]
    assert len(data) == 2  # the two-sentence story is skipped
    assert all(s in data[0].prompt for s in story)


# --- Countdown from a file ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["countdown.json", "countdown.jsonl"])
def test_countdown_reads_published_layouts(name: str) -> None:
    task = build_task(CountdownConfig(data_files=str(FIXTURES / name)))
    examples = task.examples(0, 100)
    keys = {(tuple(sorted(ex.meta["numbers"])), ex.meta["target"]) for ex in examples}
    assert len(keys) == len(examples)  # the repeated record in countdown.jsonl is dropped
    assert ((2, 3, 5), 16) in keys
    ex = next(e for e in examples if e.meta["target"] == 16)
    assert "3, 5, 2" in ex.prompt and "16" in ex.prompt
    assert task.reward("<answer>(3 + 5) * 2</answer>", ex) == pytest.approx(1.1)
    assert task.reward("<answer>3 + 5 + 2</answer>", ex) == pytest.approx(0.1)
    assert task.examples(0, 2) == examples[:2] and task.examples(1, 100) != examples


def test_countdown_file_errors_name_the_key(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text(json.dumps({"target": 5, "values": [1, 4]}) + "\n")
    with pytest.raises(ValueError, match=r"task\.data_files: record 0 needs .*'nums' or 'numbers'"):
        build_task(CountdownConfig(data_files=str(tmp_path / "bad.jsonl")))
    with pytest.raises(ValueError, match=r"task\.data_files=.*: file not found"):
        build_task(CountdownConfig(data_files=str(tmp_path / "missing.json")))


# --- shared helpers -----------------------------------------------------------------------------


def test_last_tagged_and_canonical_number() -> None:
    assert last_tagged("<answer>1</answer> <answer> 2 </answer>", "answer") == "2"
    assert last_tagged("<answer>3", "answer") == "3"
    assert last_tagged("none", "answer") is None
    assert canonical_number("1e999999999") is None  # never expanded
    assert canonical_number("3/6") == "0.5" and canonical_number("1/3") == "1/3"


def test_dataset_tasks_need_a_source() -> None:
    with pytest.raises(ValueError, match="task.dataset and task.data_files are both empty"):
        build_task(GSM8KConfig(dataset=None))


def test_splits_too_large_for_the_data_name_the_keys() -> None:
    task = build_task(GSM8KConfig(data_files=str(FIXTURES / "gsm8k")))
    with pytest.raises(ValueError, match=r"only 3 usable examples in split 'test'.*task\.test_size asks for 5"):
        task.splits({"support": 2, "probe": 2, "test": 5}, 0)
    with pytest.raises(ValueError, match=r"task\.support_size \+ task\.probe_size asks for 8"):
        task.splits({"support": 4, "probe": 4, "test": 2}, 0)


def test_example_meta_is_json_free_of_surprises() -> None:
    ex = Example(prompt="p", answer="a")
    assert ex.meta == {}
