"""The code sandbox against hostile programs: each must fail, fast, and leave this process unharmed."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from corp.tasks.sandbox import Limits, run_python

FAST = Limits(timeout_s=2.0, cpu_s=2, memory_mb=256, output_kb=256)


def test_a_clean_program_runs_and_its_output_comes_back() -> None:
    result = run_python("import math\nprint(math.factorial(5))\n", FAST)
    assert result.ok and result.stdout == "120\n" and result.stderr == ""


def test_a_failing_program_reports_its_exit_status_and_traceback() -> None:
    result = run_python("assert 1 + 1 == 3\n", FAST)
    assert not result.ok and result.returncode == 1 and "AssertionError" in result.stderr


def test_it_runs_in_a_fresh_private_directory_with_stdin_closed() -> None:
    source = "import os, sys, tempfile\nprint(os.getcwd()); print(os.environ['HOME']); print(tempfile.gettempdir())\nprint(repr(sys.stdin.read()))\nopen('scratch.txt', 'w').write('ok')\n"
    first, second = run_python(source, FAST), run_python(source, FAST)
    assert first.ok and second.ok
    cwd, home, tmp, stdin = first.stdout.splitlines()
    assert cwd == home == tmp and Path(cwd).name.startswith("corp-sandbox-")
    assert stdin == "''"
    assert second.stdout.splitlines()[0] != cwd  # a new directory per run
    assert not Path(cwd).exists()  # and it is deleted afterwards


def test_infinite_loop_is_killed_at_the_wall_clock_limit() -> None:
    start = time.monotonic()
    result = run_python("while True:\n    pass\n", Limits(timeout_s=1.0, cpu_s=5))
    assert result.timed_out and not result.ok
    assert time.monotonic() - start < 3


def test_sleeping_past_the_limit_is_killed_too() -> None:
    result = run_python("import time\ntime.sleep(60)\n", Limits(timeout_s=0.5))
    assert result.timed_out and not result.ok


def test_fork_bomb_is_refused() -> None:
    bomb = "import os\nwhile True:\n    os.fork()\n"
    result = run_python(bomb, FAST)
    assert not result.ok and "os.fork is not allowed" in result.stderr


@pytest.mark.parametrize(
    "spawn",
    [
        "import subprocess\nsubprocess.run(['sleep', '30'])",
        "import os\nos.system('sleep 30')",
        "import os\nos.execv('/bin/sleep', ['sleep', '30'])",
        "import multiprocessing\nmultiprocessing.Process(target=print).start()",
        "import pty\npty.fork()",
    ],
)
def test_starting_processes_is_refused(spawn: str) -> None:
    result = run_python(spawn, FAST)
    assert not result.ok and "not allowed" in result.stderr


def test_memory_hog_hits_the_memory_limit() -> None:
    hog = "blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 2**20))\n"
    result = run_python(hog, FAST)
    assert not result.ok and not result.timed_out and "MemoryError" in result.stderr


def test_one_huge_allocation_fails() -> None:
    result = run_python("x = bytearray(8 * 2**30)\n", FAST)
    assert not result.ok and "MemoryError" in result.stderr


@pytest.mark.parametrize(
    "write",
    [
        "open({target!r}, 'w').write('escaped')",
        "import pathlib\npathlib.Path({target!r}).write_text('escaped')",
        "import os\nfd = os.open({target!r}, os.O_WRONLY | os.O_CREAT)\nos.write(fd, b'escaped')",
        "import os\nos.chdir('/tmp')\nopen(os.path.basename({target!r}), 'w').write('escaped')",
        "open('../' + __import__('os').path.basename({target!r}), 'w').write('escaped')",
        "import shutil\nopen('inside.txt', 'w').write('escaped')\nshutil.copy('inside.txt', {target!r})",
        "import os\nopen('inside.txt', 'w').write('escaped')\nos.rename('inside.txt', {target!r})",
        "import os\nos.symlink({target!r}, 'link')\nopen('link', 'w').write('escaped')",
        "import os\nfd = os.open('/tmp', os.O_RDONLY)\nos.open(os.path.basename({target!r}), os.O_WRONLY | os.O_CREAT, dir_fd=fd)",
    ],
)
def test_writing_outside_its_directory_is_refused(write: str, tmp_path_factory) -> None:
    target = f"/tmp/corp-escape-{uuid.uuid4().hex}"
    result = run_python(write.format(target=target), FAST)
    assert not result.ok and "not allowed" in result.stderr
    assert not os.path.exists(target)


def test_deleting_outside_its_directory_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "keep.txt"
    victim.write_text("precious")
    for attack in (f"import os\nos.remove({str(victim)!r})", f"import shutil\nshutil.rmtree({str(tmp_path)!r})"):
        result = run_python(attack, FAST)
        assert not result.ok and "not allowed" in result.stderr
    assert victim.read_text() == "precious"


@pytest.mark.parametrize(
    "net",
    [
        "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_STREAM)",
        "import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)",
        "import socket\nsocket.getaddrinfo('localhost', 80)",
        "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:9', timeout=1)",
    ],
)
def test_opening_a_socket_is_refused(net: str) -> None:
    result = run_python(net, FAST)
    assert not result.ok and "not allowed" in result.stderr


@pytest.mark.parametrize(
    "kill",
    [
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
        "import os, signal\nos.killpg(os.getpgid(os.getppid()), signal.SIGKILL)",
        "import os, signal\nos.kill(-1, signal.SIGKILL)",
    ],
)
def test_killing_its_parent_is_refused_and_we_survive(kill: str) -> None:
    result = run_python(kill, FAST)
    assert not result.ok and "not allowed" in result.stderr
    os.kill(os.getpid(), 0)  # still here


def test_printing_gigabytes_is_cut_at_the_output_limit() -> None:
    start = time.monotonic()
    result = run_python("while True:\n    print('x' * 2**20)\n", FAST)
    assert not result.ok and not result.timed_out
    assert len(result.stdout) <= FAST.output_kb * 1024
    assert time.monotonic() - start < 3


@pytest.mark.parametrize(
    "escape",
    [
        "import ctypes\nctypes.CDLL(None).kill(0, 9)",
        "import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))",
        "import gc\ngc.get_objects()",
    ],
)
def test_ways_around_the_guard_are_refused(escape: str) -> None:
    result = run_python(escape, FAST)
    assert not result.ok and "not allowed" in result.stderr


def test_the_process_group_is_gone_after_a_timeout() -> None:
    source = "import os\nprint(os.getpid(), flush=True)\nwhile True:\n    pass\n"
    result = run_python(source, Limits(timeout_s=0.5))
    assert result.timed_out
    pid = int(result.stdout.split()[0])
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
