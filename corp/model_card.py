"""The exported model as an artifact: ``model/README.md``, a model card in the Hugging Face format (a
YAML header the hub reads, then plain markdown), and the optional upload to the hub
(``push_to_hub=<user>/<repo>``).

The card says what a reader of the hub page asks first: the base model, the task, the method, the
seed and the committed direction (seeds and coefficients; ``direction.json`` next to the model
rebuilds it from the base), the results with their standard errors, the packages and code that
made it, and the command that reruns it.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

from corp.results import Results

CARD = "README.md"
SHOWN_COMPONENTS = 20  # direction components listed in the card; direction.json has all of them


def run_command(out: Path) -> str:
    """The command that made the run: ``python train.py`` with Hydra's overrides as saved in the run
    folder (``.hydra/overrides.yaml``), else this process's own arguments."""
    saved = out / ".hydra" / "overrides.yaml"
    args = yaml.safe_load(saved.read_text()) if saved.exists() else sys.argv[1:]
    return " ".join(["python train.py", *(shlex.quote(str(a)) for a in args or [])])


def _is_hub_id(name: str) -> bool:
    return name.count("/") == 1 and not Path(name).exists() and not name.startswith((".", "/", "~"))


def _header(results: Results) -> str:
    meta: dict[str, Any] = {"library_name": "transformers",
                            "tags": ["corp", "gradient-free", str(results.method), results.task]}  # fmt: skip
    if _is_hub_id(results.model):  # the hub rejects a local path as base_model
        meta["base_model"] = results.model
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def _results_table(results: Results) -> list[str]:
    lines = ["| split | n | base | final | gain (paired SE) |", "|---|---|---|---|---|"]
    for split, r in results.splits.items():
        lines.append(f"| {split} | {r.n} | {r.with_se('base')} | {r.with_se('final')} | {r.with_se('gain')} |")
    return lines


def _direction_lines(direction: dict[str, Any]) -> list[str]:
    d = direction["direction"]
    seeds, coeffs = d.get("seeds", []), d.get("coeffs", [])
    lines = [f"The committed direction has {len(seeds)} components over {direction['perturbed_weights']:,} weights "
             f"(noise `{direction['noise_mode']}`, include {direction['include']}, exclude {direction['exclude']}): "
             "each a Gaussian noise tensor drawn from its seed, times its coefficient, added to the base weights. "
             "`direction.json` in the run folder holds every component."]  # fmt: skip
    if seeds:
        lines += ["", "| seed | coefficient |", "|---|---|"]
        lines += [f"| {s} | {c:.6g} |" for s, c in list(zip(seeds, coeffs))[:SHOWN_COMPONENTS]]
        if len(seeds) > SHOWN_COMPONENTS:
            lines.append(f"| … | {len(seeds) - SHOWN_COMPONENTS} more in direction.json |")
    return lines


def model_card(results: Results, direction: dict[str, Any], command: str) -> str:
    """The card's text."""
    p = results.provenance
    git = p.get("git") or {}
    code = f"{git['commit'][:12]}{' (uncommitted changes)' if git.get('dirty') else ''}" if git else "unknown"
    versions = ", ".join(f"{k} {v}" for k, v in (p.get("versions") or {}).items() if v)
    lines = [
        _header(results),
        f"# {results.model} post-trained on {results.task} with {results.method}",
        "",
        f"- Base model: `{results.model}` (weights fingerprint `{p.get('model', '?')}`)",
        f"- Task: `{results.task}` (version {p.get('task_version', '?')})",
        f"- Method: `{results.method}`, gradient-free post-training with corp; seed {results.seed}; "
        f"scored in {results.dtype}",
        f"- Code: corp at {code}; {versions}",
        "",
        "## Results",
        "",
        "Accuracy of the base and of this model on each split, ± the standard error over the split's examples; "
        "the gain's standard error is paired (the same examples).",
        "",
        *_results_table(results),
        "",
        "## How it was made",
        "",
        *_direction_lines(direction),
        "",
        "The command (run from a corp checkout):",
        "",
        "```bash",
        command,
        "```",
        "",
        "## Use",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "model = AutoModelForCausalLM.from_pretrained(path)  # this folder, or its hub repo",
        "tokenizer = AutoTokenizer.from_pretrained(path)",
        "```",
    ]
    return "\n".join(lines) + "\n"


def write_model_card(model_dir: Path, results: Results, direction: dict[str, Any], out: Path) -> Path:
    path = model_dir / CARD
    path.write_text(model_card(results, direction, run_command(out)))
    return path


def push_to_hub(model_dir: Path, repo_id: str) -> str:
    """Upload ``model_dir`` (weights, tokenizer, card) to the hub repo ``repo_id``, creating it if needed;
    returns the commit's URL. Needs a hub token (``huggingface-cli login`` or ``HF_TOKEN``)."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, repo_type="model", exist_ok=True)
    info = api.upload_folder(folder_path=str(model_dir), repo_id=repo_id, repo_type="model",
                             commit_message="corp: upload the consolidated model and its card")  # fmt: skip
    return str(getattr(info, "commit_url", info))
