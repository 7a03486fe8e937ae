"""Score one completion on one example of any task: for debugging rewards and custom tasks.

    python -m corp.tasks.score --task humaneval --index 0 --completion answer.py [key=value ...]

The task is composed from ``conf/task/<name>.yaml`` with the ``key=value`` overrides (``task.``
may be left out), exactly as a run would build it. ``--index I`` is the I-th example of the
task's test split in dataset order (HumanEval: problem ``HumanEval/I``; MBPP: the I-th problem
of the test split); tasks without data files number the examples they generate from
``task.data_seed``. Prints one JSON object (``reward``, ``solved``, ``answer``, and for the code
tasks ``error``: why the program earns 0, e.g. ``ModuleNotFoundError: No module named 'torch'``,
or null); bad input prints one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

CONF = Path(__file__).resolve().parents[2] / "conf"


def build(name: str, overrides: list[str]) -> Any:
    """The task ``name`` built from its config file and overrides. Only the task's own schema is
    registered: this program needs no other config group (and so nothing above the tasks)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from corp import tasks as _  # noqa: F401  (registers the built-in tasks)
    from corp.tasks.base import TASKS, build_task

    if name not in TASKS:
        raise ValueError(f"--task {name!r} is not a registered task; allowed: {', '.join(sorted(TASKS))}")
    ConfigStore.instance().store(name=f"task_{name}_schema", node=TASKS[name].config_class)
    keys = [o if o.startswith("task.") else f"task.{o}" for o in overrides]
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
            cfg = compose(config_name=f"task/{name}", overrides=keys)
        typed = OmegaConf.to_object(cfg.task)
    except (HydraException, OmegaConfBaseException) as err:
        raise ValueError(str(err).strip().splitlines()[0]) from None
    return build_task(typed)


def example_at(task: Any, index: int) -> Any:
    from corp.tasks.dataset import DatasetTask

    if isinstance(task, DatasetTask):
        split = task.test_split if task.has_test else task.train_split
        examples = task.data()[split]
    else:
        examples = task.examples(int(task.cfg.data_seed), index + 1)
    if not 0 <= index < len(examples):
        raise ValueError(f"--index {index}: task {task.name!r} has examples 0..{len(examples) - 1}")
    return examples[index]


def score(name: str, index: int, completion: str, overrides: list[str]) -> dict[str, Any]:
    task = build(name, overrides)
    example = example_at(task, index)
    reward = float(task.rewards([completion], [example])[0])
    out = {"task": name, "index": index, "reward": reward, "solved": bool(task.is_correct(completion, example)),
           "answer": task.extract(completion)}  # fmt: skip
    if hasattr(task, "failure"):  # the code tasks say why a program earns 0 (a traceback's last line, a failed check)
        out["error"] = task.failure(completion, example)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m corp.tasks.score", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--index", required=True, type=int)
    parser.add_argument("--completion", required=True, help="a file holding the completion ('-': stdin)")
    parser.add_argument("overrides", nargs="*", help="task options as key=value")
    args = parser.parse_args(argv)
    try:
        bad = [o for o in args.overrides if "=" not in o]
        if bad:
            raise ValueError(f"override {bad[0]!r}: expected key=value")
        if args.completion == "-":
            completion = sys.stdin.read()
        else:
            completion = Path(args.completion).read_text(encoding="utf-8")
        out = score(args.task, args.index, completion, args.overrides)
    except (ValueError, OSError) as err:
        print(f"error: {str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}", file=sys.stderr)
        return 2
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
