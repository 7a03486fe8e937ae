"""lightning-hydra-template's pieces: the paths group, debug=limit, debug=profiler, the config tree
printed at start, and a --help without internal groups."""

from __future__ import annotations

import json

from corp.config import validate
from corp.help import config_groups
from tests.conftest import compose_config, compose_with_hydra, tiny_run


def test_paths_log_dir_moves_every_default_folder():
    cfg = compose_with_hydra(["paths.log_dir=/data/corp"])
    assert cfg.hydra.run.dir.startswith("/data/corp/runs/") and cfg.hydra.sweep.dir.startswith("/data/corp/multiruns/")
    assert compose_with_hydra(["paths.log_dir=/d", "debug=smoke"]).hydra.run.dir.startswith("/d/smoke/")
    assert compose_with_hydra(["debug=limit"]).hydra.run.dir.startswith("outputs/debug/")
    typed = validate(compose_config(["output_dir=/tmp/run-x"]))
    assert typed.paths.output_dir == "/tmp/run-x" and typed.paths.log_dir == "outputs"


def test_debug_limit_keeps_the_run_and_cuts_the_splits():
    plain, limited = (validate(compose_config(["output_dir=/tmp/x", *extra])) for extra in ([], ["debug=limit"]))
    assert (limited.task.support_size, limited.task.probe_size, limited.task.test_size) == (4, 4, 4)
    assert limited.model == plain.model and limited.consolidation == plain.consolidation
    assert limited.perturbation == plain.perturbation and not limited.profile


def test_help_lists_the_groups_a_user_picks():
    text = config_groups()
    assert "debug: limit, profiler, smoke" in text.splitlines() and "paths: default" in text.splitlines()
    assert "debug/consolidation" not in text and "hydra" not in text


def test_debug_profiler_saves_one_members_trace_and_print_config_prints_the_tree(tiny_model_dir, tmp_path, capsys):
    tiny_run(tiny_model_dir, tmp_path, ["debug=profiler", "print_config=true", "consolidation=soup",
                                        "perturbation.sigmas=[0.5]", "export_model=false"],
             budget=["task=arithmetic", "perturbation.population_size=4"])  # fmt: skip
    out = capsys.readouterr().out
    assert (
        out.startswith("config\n")
        and "├── task\n│   ├── name: 'arithmetic'\n│   ├── support_size: 4" in out
        and "├── profile: True" in out
    )
    trace = json.loads((tmp_path / "profiler" / "member_trace.json").read_text())
    names = {e.get("name", "") for e in trace["traceEvents"]}
    assert any("aten::" in n for n in names)  # the member's forward passes, op by op
    assert "Self CPU" in (tmp_path / "profiler" / "member_ops.txt").read_text()
