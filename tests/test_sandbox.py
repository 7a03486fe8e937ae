"""The code sandbox against hostile programs: each must fail or be contained, fast, and leave this process unharmed."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from corp.tasks.sandbox import RESULT_FD, UID_BASE, Limits, isolation, run_python

FAST = Limits(timeout_s=2.0, cpu_s=2, memory_mb=256, output_kb=256)
pytestmark = pytest.mark.skipif(isolation() is not None, reason=f"no isolation here: {isolation()}")


def sandbox_processes() -> list[int]:
    """Processes of any sandbox uid still alive on this machine."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                uid_line = next(
                    x for x in Path(f"/proc/{entry}/status").read_text().splitlines() if x.startswith("Uid:")
                )
            except (OSError, StopIteration):
                continue
            if int(uid_line.split()[1]) >= UID_BASE:
                pids.append(int(entry))
    return pids


def test_a_clean_program_runs_and_its_output_comes_back() -> None:
    result = run_python("import math\nprint(math.factorial(5))\n", FAST)
    assert result.ok and result.stdout == "120\n" and result.stderr == ""


def test_a_failing_program_reports_its_exit_status_and_traceback() -> None:
    result = run_python("assert 1 + 1 == 3\n", FAST)
    assert not result.ok and result.returncode == 1 and "AssertionError" in result.stderr


def test_the_result_channel_is_a_pipe_the_parent_reads() -> None:
    result = run_python(f"import os\nos.write({RESULT_FD}, b'[1, 2]')\n", FAST)
    assert result.ok and result.data == b"[1, 2]"


def test_it_runs_unprivileged_in_a_private_scratch_folder_with_stdin_closed() -> None:
    source = (
        "import os, sys, tempfile\nprint(os.getcwd()); print(os.environ['HOME']); print(tempfile.gettempdir())\n"
        "print(repr(sys.stdin.read())); print(os.getuid(), os.getgid(), os.getppid())\n"
        "open('scratch.txt', 'w').write('ok')\nprint(sorted(os.listdir('/proc')[:0]), len([p for p in os.listdir('/proc') if p.isdigit()]))\n"
    )
    first, second = run_python(source, FAST), run_python(source, FAST)
    assert first.ok and second.ok, first.stderr
    cwd, home, tmp, stdin, ids, procs = first.stdout.splitlines()
    assert cwd == home == tmp and stdin == "''"
    uid, gid, ppid = map(int, ids.split())
    if os.geteuid() == 0:
        assert uid >= UID_BASE and gid >= UID_BASE  # never root
    assert ppid == 0  # its parent is outside its PID namespace
    assert procs.endswith(" 1")  # it sees only itself
    assert second.stdout.splitlines()[0] != cwd  # a new folder per run
    assert not Path(cwd).exists()  # and it is gone afterwards


def test_infinite_loop_is_killed_at_the_wall_clock_limit() -> None:
    start = time.monotonic()
    result = run_python("while True:\n    pass\n", Limits(timeout_s=1.0, cpu_s=5))
    assert result.timed_out and not result.ok
    assert time.monotonic() - start < 5


def test_memory_hog_hits_the_memory_limit() -> None:
    # a generous clock: zeroing 256 MB on a loaded machine must end at the memory limit, not the deadline
    limits = Limits(timeout_s=20.0, cpu_s=20, memory_mb=256)
    result = run_python("blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 2**20))\n", limits)
    assert not result.ok and not result.timed_out and "MemoryError" in result.stderr


@pytest.mark.parametrize(
    "write",
    [
        "open({target!r}, 'w').write('escaped')",
        "import os\nfd = os.open({target!r}, os.O_WRONLY | os.O_CREAT)\nos.write(fd, b'escaped')",
        "import os\nfd = os.open('/proc/self/root/tmp', os.O_RDONLY)\nos.open(os.path.basename({target!r}), os.O_WRONLY | os.O_CREAT, dir_fd=fd)",
        "import os\nos.mkfifo({target!r})",
        "import sqlite3\nsqlite3.connect({target!r}).execute('create table t (x)')",
        "import readline\nreadline.write_history_file({target!r})",
        "import os\nclass P:\n    n = 0\n    def __fspath__(self):\n        P.n += 1\n        return 'inside' if P.n % 2 else {target!r}\nopen(P(), 'w').write('escaped')\nopen(P(), 'w').write('escaped')",
        "import ctypes\nfd = ctypes.CDLL(None).open({target!r}.encode(), 0o101, 0o644)\nassert fd >= 0",
    ],
)
def test_writing_outside_the_scratch_folder_fails(write: str) -> None:
    target = f"/tmp/corp-escape-{uuid.uuid4().hex}"
    result = run_python(write.format(target=target), FAST)
    assert not result.ok
    assert not os.path.exists(target)


def test_deleting_outside_the_scratch_folder_fails(tmp_path: Path) -> None:
    victim = tmp_path / "keep.txt"
    victim.write_text("precious")
    for attack in (f"import os\nos.remove({str(victim)!r})", f"import shutil\nshutil.rmtree({str(tmp_path)!r})"):
        assert not run_python(attack, FAST).ok
    assert victim.read_text() == "precious"


def test_scratch_space_is_capped_in_total_not_per_file() -> None:
    source = "for i in range(2000):\n    open(f'f{i}', 'wb').write(b'x' * 2**20)\n"
    result = run_python(source, Limits(timeout_s=5.0, scratch_kb=8192))
    assert not result.ok and "No space left" in result.stderr


def test_secrets_of_the_parent_and_the_host_are_out_of_reach(monkeypatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "corp-secret-9f2c")
    source = (
        "import os\nfor p in [f'/proc/{os.getppid()}/environ', '/proc/1/environ', '/etc/shadow']:\n"
        "    try:\n        print(open(p).read())\n    except OSError as e:\n        print('refused', p)\n"
        "print(dict(os.environ))\n"
    )
    result = run_python(source, FAST)
    assert "corp-secret-9f2c" not in result.stdout + result.stderr
    if os.geteuid() == 0:
        assert "refused /etc/shadow" in result.stdout


@pytest.mark.parametrize(
    "kill",
    [
        "import os, signal\nos.kill(-1, signal.SIGKILL)",
        "import ctypes\nctypes.CDLL(None).kill(-1, 9)",
        "import os, signal\nsignal.pidfd_send_signal(os.pidfd_open(os.getppid()), 9)",
        "import ctypes\nctypes.CDLL(None).kill({parent}, 9)",
        "import ctypes\nctypes.CDLL(None).kill({outside}, 9)",  # past the audit hook that stops os.kill
    ],
    ids=["kill-all", "libc-kill-all", "pidfd-parent", "libc-kill-parent", "kill-outside"],
)
def test_it_cannot_signal_anything_outside(kill: str) -> None:
    """A process of this user outside the sandbox survives every attempt (and so does this one, the parent)."""
    outside = subprocess.Popen(["sleep", "60"])
    try:
        run_python(kill.format(parent=os.getpid(), outside=outside.pid), FAST)
        assert outside.poll() is None, f"the sandboxed program killed a process outside it: {outside.returncode}"
    finally:
        outside.kill()
        outside.wait()


def test_printing_gigabytes_is_cut_at_the_output_limit() -> None:
    start = time.monotonic()
    result = run_python(
        f"import os\nwhile True:\n    print('x' * 2**20)\n    os.write({RESULT_FD}, b'y' * 2**20)\n", FAST
    )
    assert not result.ok and len(result.stdout) <= FAST.output_kb * 1024 and len(result.data) <= FAST.output_kb * 1024
    assert time.monotonic() - start < 5


def test_threads_and_processes_are_capped() -> None:
    source = "import threading, time\nfor _ in range(1000):\n    threading.Thread(target=time.sleep, args=(5,), daemon=True).start()\n"
    result = run_python(source, Limits(timeout_s=5.0, processes=16))
    assert not result.ok and "can't start new thread" in result.stderr


def test_nothing_outlives_a_run() -> None:
    # C-level fork, a new session, a grandchild that sleeps: the PID namespace takes them all.
    source = (
        "import ctypes, os, time\nlibc = ctypes.CDLL(None)\nif libc.fork() == 0:\n    libc.setsid()\n"
        "    if libc.fork() == 0:\n        time.sleep(60)\n    os._exit(0)\nprint('parent done')\n"
    )
    result = run_python(source, FAST)
    assert result.ok and "parent done" in result.stdout
    time.sleep(0.2)
    assert sandbox_processes() == []


def test_it_cannot_regain_privileges_or_remount() -> None:
    source = "import ctypes\nlibc = ctypes.CDLL(None)\nprint(libc.setuid(0), libc.umount2(b'/', 2), libc.mount(b'none', b'/', None, 32 | 4096, None))\n"
    result = run_python(source, FAST)
    assert result.ok and result.stdout.split() == ["-1", "-1", "-1"]


def test_correct_programs_that_the_old_guard_broke_now_run() -> None:
    source = (
        "import dataclasses, inspect, typing, collections, dis, pprint, doctest, unittest, io\n"
        "@dataclasses.dataclass\nclass A:\n    x: int = 1\n"
        "class P(typing.NamedTuple):\n    a: int\n    b: int = 2\n"
        "N = collections.namedtuple('N', 'a b', defaults=[1])\n"
        "def f():\n    return 1\n"
        "dis.dis(f, file=io.StringIO()); pprint.pformat({'a': [1]}); doctest.testmod()\n"
        "print(A(), P(1), N(0), inspect.getsource(f).strip())\n"
    )
    result = run_python(source, FAST)
    assert result.ok, result.stderr
    assert result.stdout.startswith("A(x=1) P(a=1, b=2) N(a=0, b=1) def f():")


def test_the_unsafe_opt_in_path_runs_with_rlimits_and_hooks() -> None:
    unsafe = Limits(timeout_s=2.0, isolate=False)
    assert run_python("print(sum(range(4)))\n", unsafe).stdout == "6\n"
    result = run_python("import os\nos.fork()\n", unsafe)
    assert not result.ok and "os.fork is not allowed" in result.stderr
    assert run_python("while True:\n    pass\n", Limits(timeout_s=0.5, isolate=False)).timed_out
