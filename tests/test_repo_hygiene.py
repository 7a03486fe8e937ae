"""The repository stands on its own: no tracked file points at the team's private notes or data
next to the checkout, which a fresh clone does not have, and the committed benchmark results carry no
trace of the machine they ran on (absolute paths, loose score caches, folder names made from paths)."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import shutil
import subprocess
import tarfile
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The forbidden names are assembled from pieces, so this file does not itself contain what it forbids.
FOLDER = "sh" + "ared"  # the team's folder beside the checkout
UP = "." * 2 + "/"
NOTES = [name + ".md" for name in ("METH" + "OD", "DES" + "IGN", "STY" + "LE")]
OUTSIDE = re.compile(
    re.escape(UP + FOLDER)  # a path out of the checkout into that folder
    + rf"|{FOLDER}/(?:docs|data)"
    + rf"""|["']{FOLDER}["']\s*/\s*["'](?:docs|data)["']"""  # the same path built with pathlib
    + r"|\b(?:"
    + "|".join(map(re.escape, NOTES))
    + ")"  # the private notes by name (docs/method.md is ours: case matters)
)


def tracked(*paths: str) -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "-z", *paths], cwd=ROOT, capture_output=True, check=True, text=True)
    return [name for name in out.stdout.split("\0") if name]


def tracked_text_files(*paths: str) -> list[Path]:
    files = []
    for name in tracked(*paths):
        path = ROOT / name
        if not path.is_file():
            continue
        head = path.read_bytes()[:8192]
        if b"\0" not in head:  # binary files (parquet, images) hold no references
            files.append(path)
    return files


def outside_references(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    rel = path.relative_to(ROOT)
    return [f"{rel}:{n}: {line.strip()}" for n, line in enumerate(text.splitlines(), 1) if OUTSIDE.search(line)]


def test_pattern_catches_what_it_must_and_spares_our_docs() -> None:
    method, design, style = NOTES
    for bad in (
        f"See [notes]({UP}{FOLDER}/docs/{method})",
        f"task.data_files={UP}{FOLDER}/data/gsm8k",
        f'ROOT / ".." / "{FOLDER}" / "data" / "gsm8k"',
        f"({design} section 2)",
        f"see {style}",
    ):
        assert OUTSIDE.search(bad), bad
    for good in (
        "docs/method.md §4.2",
        "[docs/architecture.md](docs/architecture.md)",
        "shared prefix",
        "shared noise",
    ):
        assert not OUTSIDE.search(good), good


def test_no_tracked_file_points_outside_the_repository() -> None:
    files = tracked_text_files()
    assert any(p.name == "README.md" for p in files)  # the listing works: the check is not vacuous
    found = [hit for path in files for hit in outside_references(path)]
    assert not found, "references outside the repository (cite docs/ instead):\n" + "\n".join(found)


# -- the committed benchmark results ---------------------------------------------------------------

RESULTS = "benchmarks/results"
# Top folders of this machine and the usual ones of others; a path under one of them, or slugged
# into a folder name (a folder name cannot hold "/"), is a trace of where a run happened.
TOPS = ["wo" + "rk", "t" + "mp", "ro" + "ot", "ho" + "me", "Us" + "ers", "m" + "nt"]
ABSOLUTE = re.compile(r"(?<![\w.:/~-])/(?:" + "|".join(TOPS) + r")/")
SLUGGED = re.compile(r"(?:^|[=_])_?(?:" + "|".join(TOPS) + r")_")
LOAD_KEY = "population" + ".load"
ARCHIVE, MANIFEST = "scores.tar.xz", "scores.sha256"
PACKED = ("populations", "evals", "checkpoints")
# Every sweep folder's archive of saved scores and checkpoints, and how many files it restores.
ARCHIVES = {
    "ablation/arithmetic/published_stage2": 81,
    "ablation/countdown/published_stage2": 120,
    "ablation/letter_counting/published_stage2": 57,
    "ablation_n32/arithmetic/stage1_only": 18,
    "ablation_n32/countdown/published_stage2": 117,
    "compare/arithmetic": 228,
    "default_run": 147,
    "compare/countdown": 244,
    "compare/letter_counting": 202,
    "n32/arithmetic": 209,
    "n32/countdown": 164,
    "n32/letter_counting": 101,
    "n32/needle_haystack": 249,
    "n32_antithetic/arithmetic": 48,
    "n32_antithetic/countdown": 48,
    "probe200/arithmetic": 125,
    "support128/arithmetic": 9,
    "support128/countdown": 9,
    "support128/letter_counting": 9,
}


def absolute_paths(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    rel = path.relative_to(ROOT)
    return [f"{rel}:{n}: {line.strip()[:160]}" for n, line in enumerate(text.splitlines(), 1) if ABSOLUTE.search(line)]


def test_path_patterns_catch_machine_paths_and_spare_relative_ones() -> None:
    work, tmp = TOPS[0], TOPS[1]
    for bad in (f'"load": "/{work}/main/{RESULTS}/compare"', f"cwd: /{tmp}/bench", f"- path: /{work}/bench/conf"):
        assert ABSOLUTE.search(bad), bad
    for good in (f"dir: {RESULTS}/n32", "stream: ext://sys.stdout", "https://hydra.cc", "a/tmp/b", "~/tmp/x"):
        assert not ABSOLUTE.search(good), good
    assert SLUGGED.search(f"2_consolidation=corp,{LOAD_KEY}=_{work}_main_be")
    assert not SLUGGED.search("0_consolidation=corp,experiment=compare,seed=0,task=arithmetic")


def test_no_benchmark_result_embeds_an_absolute_path() -> None:
    files = tracked_text_files(RESULTS)
    assert any(p.name == "results.json" for p in files)  # the listing works: the check is not vacuous
    found = [hit for path in files for hit in absolute_paths(path)]
    assert not found, "absolute paths in committed results (make them relative to the repository):\n" + "\n".join(
        found[:20]
    )


def test_no_loose_score_caches_are_tracked() -> None:
    names = tracked(RESULTS)
    loose = [n for n in names if n.endswith(".npz") or set(PurePosixPath(n).parts) & set(PACKED)]
    assert not loose, f"{len(loose)} loose files that belong in {ARCHIVE}, e.g. {loose[:3]}"


def test_no_result_folder_is_named_after_a_path_or_population_load() -> None:
    folders = {part for n in tracked(RESULTS) for part in PurePosixPath(n).parts[:-1]}
    assert len(folders) > len(ARCHIVES)
    bad = sorted(f for f in folders if LOAD_KEY in f or SLUGGED.search(f))
    assert not bad, f"folder names made from result-neutral keys or machine paths: {bad[:3]}"


def test_every_sweep_archive_is_listed_and_restores_its_manifest() -> None:
    names = tracked(RESULTS)
    assert sorted(n for n in names if n.endswith("/" + ARCHIVE)) == sorted(f"{RESULTS}/{s}/{ARCHIVE}" for s in ARCHIVES)
    for sweep, count in ARCHIVES.items():
        folder = ROOT / RESULTS / sweep
        expected = dict(reversed(line.split("  ", 1)) for line in (folder / MANIFEST).read_text().splitlines())
        with tarfile.open(folder / ARCHIVE) as tar:
            members = tar.getmembers()
            digests = {m.name: hashlib.sha256(tar.extractfile(m).read()).hexdigest() for m in members if m.isfile()}
        assert len(members) == len(digests) == count, sweep
        assert digests == expected, f"{sweep}: {ARCHIVE} differs from {MANIFEST}"
        for name in digests:  # each member lands in a committed run folder's packed sub-folder
            run, sub, *_ = PurePosixPath(name).parts
            assert sub in PACKED and not name.startswith("/") and ".." not in PurePosixPath(name).parts, name
            assert f"{RESULTS}/{sweep}/{run}/results.json" in names, name


def test_restored_caches_are_ignored_by_git() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    run = f"{RESULTS}/compare/arithmetic/0_consolidation=randopt_10x,experiment=compare,seed=0,task=arithmetic"
    for name in ("populations/round_000.npz", "evals/round_000/eval_000.npz", "checkpoints/last.json", "train.log"):
        check = subprocess.run(["git", "check-ignore", "-q", "--no-index", f"{run}/{name}"], cwd=ROOT)
        assert check.returncode == 0, f"{name} would be committed loose again"
    kept = subprocess.run(["git", "check-ignore", "-q", "--no-index", f"{run}/results.json"], cwd=ROOT)
    assert kept.returncode == 1


def _score_archive():
    spec = importlib.util.spec_from_file_location("score_archive", ROOT / "benchmarks" / "score_archive.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pack_then_unpack_restores_every_file_byte_for_byte(tmp_path: Path) -> None:
    archive = _score_archive()
    sweep = tmp_path / "sweep"
    files = {
        "0_seed=0/populations/round_000.npz": bytes(range(256)) * 4,
        "0_seed=0/evals/round_000/eval_000.npz": b"\x00\x01" * 50,
        "1_seed=1/checkpoints/last.json": b'{"round": 2}\n',
    }
    for name, data in files.items():
        (sweep / name).parent.mkdir(parents=True, exist_ok=True)
        (sweep / name).write_bytes(data)
    (sweep / "0_seed=0" / "results.json").write_text("{}")  # not packed: people read it loose
    assert archive.pack(sweep)[0] == len(files)
    first = (sweep / ARCHIVE).read_bytes()
    assert archive.pack(sweep)[0] == len(files) and (sweep / ARCHIVE).read_bytes() == first  # same bytes: no git churn
    for name in files:
        (sweep / name).unlink()
    assert archive.unpack(sweep) == len(files)
    assert {n: (sweep / n).read_bytes() for n in files} == files
    (sweep / MANIFEST).write_text((sweep / MANIFEST).read_text().replace("populations", "evals", 1))
    with pytest.raises(ValueError, match="members differ"):
        archive.unpack(sweep)
