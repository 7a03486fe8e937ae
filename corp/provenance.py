"""What produced a run, recorded in ``results.json`` under ``provenance``: the code (git commit and
whether the work tree had uncommitted changes), the packages, the task's version, a fingerprint of
each split's examples and one of the loaded weights. With them a run folder alone says which code,
packages, data and weights gave its numbers.

The model fingerprint hashes the weights as loaded (fp32, before any perturbation), so a hub id, a
folder and a converted GGUF file are fingerprinted alike. Hashing a large model takes seconds, so a
local model's digest is cached by its files' paths, sizes and modification times
(``<model cache>/fingerprints.json``); changed files are hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from corp.tasks.base import Example, Task

ROOT = Path(__file__).resolve().parents[1]  # the checkout corp is imported from
FINGERPRINTS = "fingerprints.json"


def git_state(root: Path = ROOT) -> dict[str, Any]:
    """The commit checked out at ``root`` and whether tracked or new files differ from it
    (``{}`` outside a git checkout, e.g. an installed package)."""
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()  # fmt: skip
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=True).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": commit, "dirty": bool(status.strip())}


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    return {"python": platform.python_version(), "corp": _version("corp"), "torch": torch.__version__,
            "transformers": _version("transformers")}  # fmt: skip


def example_id(example: Example) -> str:
    """A stable id of one example: the digest of its prompt and answer (the same in every run that draws it)."""
    return hashlib.blake2b(json.dumps([example.prompt, example.answer]).encode(), digest_size=8).hexdigest()


def data_fingerprint(examples: list[Example]) -> str:
    """The digest of a split's examples, in order."""
    return hashlib.blake2b(json.dumps([example_id(ex) for ex in examples]).encode(), digest_size=16).hexdigest()


def _hash_weights(model: torch.nn.Module) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _file_key(source: Path) -> str:
    files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
    return json.dumps([str(source.resolve()), [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files]])


def model_fingerprint(model: torch.nn.Module, source: Path | str, cache_dir: Path | None) -> str:
    """Digest of the loaded weights; cached in ``cache_dir`` when ``source`` is a local file or folder."""
    local = Path(source).exists()
    if not local or cache_dir is None:
        return _hash_weights(model)
    cache = cache_dir / FINGERPRINTS
    key = _file_key(Path(source))
    try:
        known = json.loads(cache.read_text()) if cache.exists() else {}
    except ValueError:  # a torn write by another process: start the cache again
        known = {}
    if key not in known:
        known[key] = _hash_weights(model)
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known))
        os.replace(tmp, cache)
    return known[key]


def provenance(task: Task, splits: dict[str, list[Example]], model_digest: str) -> dict[str, Any]:
    """The ``provenance`` block of results.json."""
    return {
        "git": git_state(),
        "versions": versions(),
        "task_version": task.version,
        "data": {split: data_fingerprint(examples) for split, examples in splits.items()},
        "model": model_digest,
    }
