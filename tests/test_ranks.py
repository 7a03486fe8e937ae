"""Many ranks on one machine: 2, 3 and 4 CPU processes, a rank killed mid-round, and two "nodes".

Every case must end exactly where one uninterrupted single-process run ends: the same
direction, the same per-member scores in every round, the same results (test accuracy
included). The tiny random model on the vowel-share task of test_resilience, 4 members per
round: 3 ranks get uneven shares (2, 1, 1), 2 and 4 ranks even ones.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.rank_scaling import rank_pid
from tests.conftest import ROOT
from tests.test_resilience import assert_same_run, cli, reference, task_args  # noqa: F401 (fixtures)


def assert_same_scores(out: Path, reference: Path) -> None:  # noqa: F811
    """Every round's population: the same members, rewards and correctness, bit for bit."""
    rounds = sorted(p.name for p in (reference / "populations").glob("round_*.npz"))
    assert rounds and rounds == sorted(p.name for p in (out / "populations").glob("round_*.npz"))
    for name in rounds:
        got, want = np.load(out / "populations" / name), np.load(reference / "populations" / name)
        for key in ("seeds", "sigmas", "rewards", "correct"):
            assert np.array_equal(got[key], want[key]), (name, key)


@pytest.mark.slow
@pytest.mark.parametrize("ranks", [2, 3, 4])
def test_several_processes_give_the_same_run_as_one(tiny_model_dir, task_args, tmp_path, reference, ranks):  # noqa: F811
    out = tmp_path / f"ddp{ranks}"
    cmd = cli(tiny_model_dir, out, task_args, [f"trainer.devices={ranks}", "trainer.strategy=ddp"])
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_run(out, reference)
    assert_same_scores(out, reference)


@pytest.mark.slow
def test_a_rank_killed_mid_round_then_the_same_command_gives_the_same_run(
    tiny_model_dir,
    task_args,  # noqa: F811
    tmp_path,
    reference,  # noqa: F811
):
    out = tmp_path / "run"
    cmd = cli(tiny_model_dir, out, task_args, ["trainer.devices=3", "trainer.strategy=ddp"])
    pops = out / "populations"
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    try:
        victim = _wait_for(lambda: rank_pid(proc.pid, 1), proc)
        # rank 1 has saved a member and the round is not gathered yet: kill rank 1 alone. Rank 0
        # then fails in the all-gather ("connection closed by peer") and exits with an error.
        _wait_for(lambda: (pops / "round_000.rank1.partial.npz").exists() and not (pops / "round_000.npz").exists(),
                  proc)  # fmt: skip
        os.kill(victim, signal.SIGKILL)
        assert proc.wait(timeout=300) != 0 and not (out / "results.json").exists()
    finally:
        _kill_group(proc)
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "continuing the run" in (out / "train.log").read_text()
    assert_same_run(out, reference)
    assert_same_scores(out, reference)


@pytest.mark.slow
def test_two_nodes_under_torchrun_give_the_same_run_as_one(tiny_model_dir, task_args, tmp_path, reference):  # noqa: F811
    """Two launcher processes on localhost, as on two machines sharing a file system: one
    ``torchrun --nnodes=2 --node_rank=i`` each, with ``trainer.num_nodes=2``."""
    out = tmp_path / "nodes"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    train = cli(tiny_model_dir, out, task_args, ["trainer.num_nodes=2", "trainer.devices=1", "trainer.strategy=ddp"])
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes=2",
                f"--node_rank={i}",
                "--nproc_per_node=1",
                "--master_addr=127.0.0.1",
                f"--master_port={port}",
                *train[1:],
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )  # fmt: skip
        for i in range(2)
    ]
    try:
        logs = [node.communicate(timeout=900)[0] for node in nodes]
    finally:
        for node in nodes:
            _kill_group(node)
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(log[-2000:] for log in logs)
    assert "MEMBER: 2/2" in logs[1]  # node 1 was rank 1 of a world of 2
    assert_same_run(out, reference)
    assert_same_scores(out, reference)


def _wait_for(ready, proc: subprocess.Popen, timeout: float = 600):
    """``ready()``'s first true value, polled until ``proc`` ends (a failure) or ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (value := ready()):
        assert proc.poll() is None, "the run finished before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return value


def _kill_group(proc: subprocess.Popen) -> None:
    """Whatever this test started and is still running (its own session), killed."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
