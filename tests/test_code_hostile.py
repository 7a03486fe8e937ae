"""Hostile completions against the code rewards (issue 14): each earns 0, writes nothing outside
its scratch folder, leaves no process behind and leaves this process unharmed."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from corp.tasks import build_task
from corp.tasks.code import HumanEvalConfig, MBPPConfig
from corp.tasks.sandbox import isolation
from tests.test_sandbox import sandbox_processes

ROOT = Path(__file__).resolve().parents[1]
MARK = f"/tmp/corp-hostile-{os.getpid()}"
SITE = sysconfig.get_paths()["purelib"]
pytestmark = pytest.mark.skipif(isolation() is not None, reason=f"no isolation here: {isolation()}")

# Each is a whole completion for HumanEval/2 truncate_number(number: float) -> float.
HEAD = "def truncate_number(number: float) -> float:\n"
HOSTILE = {
    "sentinel_from_source": HEAD + "    print(open(__file__).read())\n    return 0.0\nprint(open(__file__).read())\n",
    "atexit_print": "import atexit\natexit.register(lambda: print('ok'))\n" + HEAD + "    return 0.0\n",
    "always_equal": (
        "class Any(float):\n    def __eq__(self, o): return True\n    __ne__ = lambda s, o: False\n"
        "    __lt__ = __le__ = __gt__ = __ge__ = __eq__\n    def __sub__(self, o): return self\n"
        "    __rsub__ = __add__ = __radd__ = __abs__ = __sub__\n    __hash__ = float.__hash__\n"
        + HEAD
        + "    return Any(0.0)\n"
    ),
    "shadowed_builtins": "abs = lambda x: 0\nlen = lambda x: 0\nset = list\n" + HEAD + "    return 0.0\n",
    # Answers forged on the result pipe: the program knows the docstring's example, not the hidden tests.
    "forged_answers": HEAD
    + '    import os\n    os.write(3, b\'[["ok", 0.5], ["ok", 0.5], ["ok", 0.5]]\')\n    os._exit(0)\n',
    "patched_json": "import json\njson.dumps = lambda *a, **k: '[[\"ok\", 0.5]]'\n" + HEAD + "    return 0.0\n",
    "closed_channel": "import os\nos.close(3)\n" + HEAD + "    return number % 1.0 + 1\n",
    "garbage_channel": HEAD + "    import os\n    os.write(3, b'\\x00' * 100)\n    return 0.0\n",
    "flood_channel": HEAD + "    import os\n    while True:\n        os.write(3, b'[' * 65536)\n",
    "flood_stdout": HEAD + "    while True:\n        print('x' * 2**20)\n",
    "exit_early": "import sys\nsys.exit(0)\n",
    "os_exit_early": "import os\nos._exit(0)\n",
    "system_exit_in_call": HEAD + "    raise SystemExit(0)\n",
    "keyboard_interrupt": HEAD + "    raise KeyboardInterrupt\n",
    "infinite_loop": HEAD + "    while True:\n        pass\n",
    "memory_hog": HEAD + "    x = [bytearray(2**26) for _ in range(10**4)]\n",
    "deep_output": HEAD + "    x = []\n    for _ in range(10**5):\n        x = [x]\n    return x\n",
    "unencodable_output": HEAD + "    return object()\n",
    "generator_output": HEAD + "    return (x for x in [0.5])\n",
    "fork_bomb_ctypes": "import ctypes\nlibc = ctypes.CDLL(None)\nwhile True:\n    libc.fork()\n",
    "thread_bomb": "import threading, time\nwhile True:\n    threading.Thread(target=time.sleep, args=(60,)).start()\n",
    "setsid_grandchild": (
        "import ctypes, os, time\nlibc = ctypes.CDLL(None)\nif libc.fork() == 0:\n    libc.setsid()\n"
        f"    if libc.fork() == 0:\n        time.sleep(3)\n        open('{MARK}-late', 'w').write('x')\n    os._exit(0)\n"
        + HEAD
        + "    return 0.0\n"
    ),
    "posixsubprocess_copy": (
        "import importlib.util, glob\npath = glob.glob('/**/_posixsubprocess*.so', recursive=False) or "
        "glob.glob(__import__('sysconfig').get_paths()['platstdlib'] + '/lib-dynload/_posixsubprocess*.so')\n"
        "spec = importlib.util.spec_from_file_location('_psp', path[0])\nm = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(m)\nimport os\nr, w = os.pipe()\n"
        f"m.fork_exec(['/bin/sh', '-c', 'sleep 3; touch {MARK}-psp'], [b'/bin/sh'], True, (), None, None, -1, -1, -1, -1, -1, -1, r, w, True, True, None, None, None, -1, None, False)\n"
        + HEAD
        + "    return 0.0\n"
    ),
    "write_tmp": f"open('{MARK}-tmp', 'w').write('x')\n" + HEAD + "    return 0.0\n",
    "write_repo": f"open('{ROOT}/corp/pwned.py', 'w').write('x')\n" + HEAD + "    return 0.0\n",
    "pth_file": f"open('{SITE}/corp-pwned.pth', 'w').write('import os')\n" + HEAD + "    return 0.0\n",
    "pathlike_swap": (
        "class P:\n    n = 0\n    def __fspath__(self):\n        P.n += 1\n"
        f"        return 'x' if P.n % 2 else '{MARK}-pathlike'\n"
        "for _ in range(2):\n    try:\n        open(P(), 'w').write('x')\n    except OSError:\n        pass\n"
        + HEAD
        + "    return 0.0\n"
    ),
    "dir_fd_root": (
        "import os\nfd = os.open('/proc/self/root/tmp', os.O_RDONLY)\n"
        f"os.open('{os.path.basename(MARK)}-dirfd', os.O_WRONLY | os.O_CREAT, dir_fd=fd)\n" + HEAD + "    return 0.0\n"
    ),
    "sqlite_outside": f"import sqlite3\nsqlite3.connect('{MARK}-db').execute('create table t (x)')\n"
    + HEAD
    + "    return 0.0\n",
    "readline_history": f"import readline\nreadline.write_history_file('{MARK}-hist')\n" + HEAD + "    return 0.0\n",
    "mkfifo_outside": f"import os\nos.mkfifo('{MARK}-fifo')\n" + HEAD + "    return 0.0\n",
    "delete_outside": f"import os\nos.remove('{ROOT}/pyproject.toml')\n" + HEAD + "    return 0.0\n",
    "pidfd_parent": "import os, signal\nsignal.pidfd_send_signal(os.pidfd_open(os.getppid()), 9)\n"
    + HEAD
    + "    return 0.0\n",
    "kill_everything": "import ctypes\nctypes.CDLL(None).kill(-1, 9)\n" + HEAD + "    return 0.0\n",
    "kill_trainer_by_pid": f"import ctypes\nctypes.CDLL(None).kill({os.getpid()}, 9)\n" + HEAD + "    return 0.0\n",
    "read_parent_environ": (
        "import os\nfor p in os.listdir('/proc'):\n    try:\n        s = open(f'/proc/{p}/environ').read()\n"
        "    except OSError:\n        continue\n    if 'WANDB' in s:\n        print(s)\n" + HEAD + "    return 0.0\n"
    ),
    "read_shadow": "print(open('/etc/shadow').read())\n" + HEAD + "    return 0.0\n",
    "socket_out": "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=1)\n"
    + HEAD
    + "    return number % 1.0\n",
    "many_files": "for i in range(5000):\n    open(f'f{i}', 'wb').write(b'x' * 2**20)\n" + HEAD + "    return 0.0\n",
    "setuid_root": "import ctypes\nassert ctypes.CDLL(None).setuid(0) == 0\n" + HEAD + "    return number % 1.0\n",
    "remount_rw": "import ctypes\nassert ctypes.CDLL(None).mount(b'none', b'/', None, 32 | 4096, None) == 0\n"
    + HEAD
    + "    return number % 1.0\n",
}


@pytest.fixture(scope="module")
def outcome():
    """Score every hostile program in one parallel batch (also through the CLI for a few)."""
    before = os.environ.get("WANDB_API_KEY")
    os.environ["WANDB_API_KEY"] = "corp-secret-5e1d"  # the secret a hostile program must not read; put back below
    site_before = set(os.listdir(SITE))
    task = build_task(HumanEvalConfig(timeout_s=2.0, memory_mb=256, workers=2))
    example = task.data()["test"][2]
    assert example.meta["entry_point"] == "truncate_number"
    rewards = task.rewards(list(HOSTILE.values()), [example] * len(HOSTILE))
    time.sleep(3.5)  # anything a program left behind would have acted by now
    if before is None:  # later tests start runs that would take a key as "go online"
        del os.environ["WANDB_API_KEY"]
    else:
        os.environ["WANDB_API_KEY"] = before
    return {
        "rewards": dict(zip(HOSTILE, rewards)),
        "marks": glob.glob(MARK + "*"),
        "site_new": set(os.listdir(SITE)) - site_before,
        "left": sandbox_processes(),
        "task": task,
        "example": example,
    }


def test_there_are_at_least_thirty_hostile_programs() -> None:
    assert len(HOSTILE) >= 30


@pytest.mark.slow  # the battery: every hostile program in the sandbox (the fixture above)
@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_program_earns_nothing(outcome, name: str) -> None:
    assert outcome["rewards"][name] == 0.0


@pytest.mark.slow
def test_nothing_was_written_outside_and_nothing_was_left_running(outcome) -> None:
    assert outcome["marks"] == []
    assert outcome["site_new"] == set()
    assert not (ROOT / "corp" / "pwned.py").exists() and (ROOT / "pyproject.toml").exists()
    assert outcome["left"] == []
    os.kill(os.getpid(), 0)  # and this process is alive


@pytest.mark.slow
def test_the_same_task_still_rewards_a_correct_solution(outcome) -> None:
    task, example = outcome["task"], outcome["example"]
    assert task.reward(HEAD + "    return number % 1.0\n", example) == 1.0


@pytest.mark.slow
@pytest.mark.parametrize(
    "solution",
    [
        "import dataclasses\n@dataclasses.dataclass\nclass Box:\n    v: float\n"
        + HEAD
        + "    return Box(number % 1.0).v\n",
        "import inspect\n"
        + HEAD
        + "    assert 'number' in inspect.signature(truncate_number).parameters\n    return number % 1.0\n",
        "import typing\nclass Pair(typing.NamedTuple):\n    i: int\n    f: float = 0.0\n"
        + HEAD
        + "    return Pair(int(number), number % 1.0).f\n",
        "import collections\nPair = collections.namedtuple('Pair', 'i f', defaults=[0.0])\n"
        + HEAD
        + "    return Pair(int(number), number % 1.0).f\n",
        "import pprint, dis, io\n"
        + HEAD
        + "    dis.dis(truncate_number, file=io.StringIO())\n    pprint.pformat([number])\n    return number % 1.0\n",
    ],
    ids=["dataclasses", "inspect", "typing.NamedTuple", "namedtuple-defaults", "dis-pprint"],
)
def test_correct_programs_using_introspection_pass(outcome, solution: str) -> None:
    assert outcome["task"].reward(solution, outcome["example"]) == 1.0


def test_always_equal_object_and_shadowed_builtin_fail_on_mbpp() -> None:
    task = build_task(MBPPConfig(data_files=str(ROOT / "tests/fixtures/mbpp"), timeout_s=5.0))
    ex = next(e for e in task.data()["test"] if "square" in e.prompt)
    cheat = "class A(int):\n    def __eq__(self, o): return True\n    __hash__ = int.__hash__\ndef square(x):\n    return A(0)\n"
    assert task.reward(cheat, ex) == 0.0
    assert task.reward("set = lambda *a: 0\nabs = set\ndef square(x):\n    return 0\n", ex) == 0.0
    assert task.reward("def square(x):\n    return x * x\n", ex) == 1.0


def score_cli(index: int, completion: Path) -> dict:
    """What ``python -m corp.tasks.score`` prints for HumanEval problem ``index`` (it must exit 0)."""
    cmd = [sys.executable, "-m", "corp.tasks.score", "--task", "humaneval", "--index", str(index),
           "--completion", str(completion)]  # fmt: skip
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.slow
def test_the_score_cli_prints_one_json_object_and_fails_with_status_2(tmp_path: Path) -> None:
    completion = tmp_path / "c.py"
    completion.write_text(HOSTILE["always_equal"])
    scored = score_cli(2, completion)
    assert scored["error"] == "test call 0 raised TypeError"  # why it earns 0: its output cannot cross the pipe
    assert scored | {"answer": None, "error": None} == {
        "task": "humaneval",
        "index": 2,
        "reward": 0.0,
        "solved": False,
        "answer": None,
        "error": None,
    }
    # bad input (one line, status 2) is checked on main() in this process: tests/test_tasks.py
