"""Run untrusted Python (generated code and its tests) in a subprocess sandbox.

What holds, and who enforces it:

- **OS, always.** A fresh ``python -I`` in its own session and process group, cwd a new
  temporary directory (also ``HOME`` and ``TMPDIR``), stdin ``/dev/null``, a minimal environment,
  no inherited file descriptors. ``setrlimit`` caps CPU seconds, address space (memory) and the
  size of any file it writes; stdout and stderr are files in that directory, so the file-size cap
  also caps output (printing gigabytes ends the process with SIGXFSZ). After a wall-clock
  timeout, and after every run, the whole process group is SIGKILLed, and the directory is
  deleted.
- **OS, where permitted.** The child tries ``unshare(CLONE_NEWNET)``: where that is allowed
  (root, or CAP_SYS_ADMIN) it has no network interfaces at all. Elsewhere only the hook below
  stands between it and the network.
- **Python audit hooks, in the child.** Installed before the program runs and not removable:
  socket creation and name lookups, process creation (fork, exec, spawn, ``subprocess``,
  ``os.system``), signals (``os.kill``, ``os.killpg``), ``ctypes``, raising rlimits, heap
  introspection (``gc.get_objects``), links and symlinks, chmod/chown, and any write, create,
  delete or rename of a path outside the directory are refused with PermissionError.
  These stop generated code that tries such things, not a determined attacker: code that can
  reach C without ``ctypes`` (a fresh copy of a C extension module, say) can get past them, and
  without root the process count (RLIMIT_NPROC is per user and ignored for root) and reads of
  other files are not limited. Run code you would not run on your own account in a container.

``run_python`` returns a ``Result``; the reward of a code task is 1 only when the program exits
0 within its limits and prints the random sentinel that the harness appends after the tests.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

# The child's prologue: limits, then (best effort) a private network namespace, then the hooks,
# then the program. It is passed with -c, so nothing on disk can be swapped under it.
GUARD = r"""
import os, resource, stat, sys

def _install(root, cpu, memory, fsize):
    for res, limit in ((resource.RLIMIT_CPU, cpu), (resource.RLIMIT_AS, memory),
                       (resource.RLIMIT_FSIZE, fsize), (resource.RLIMIT_CORE, 0)):
        try:
            resource.setrlimit(res, (limit, limit))
        except (ValueError, OSError):  # e.g. macOS refuses RLIMIT_AS; Linux takes all four
            pass
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).unshare(0x40000000)  # CLONE_NEWNET; fails harmlessly if not allowed
    except Exception:
        pass
    for name in [m for m in sys.modules if m.split(".")[0] in ("ctypes", "_ctypes")]:
        del sys.modules[name]  # so importing it again is an import event, refused below
    getcwd, fspath, fsdecode, lstat, sep = os.getcwd, os.fspath, os.fsdecode, os.lstat, os.sep
    is_dir, write = stat.S_ISDIR, os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
    refused = frozenset((
        "socket.__new__", "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr",
        "socket.gethostbyname_ex", "socket.getnameinfo", "socket.bind", "socket.connect",
        "os.fork", "os.forkpty", "os.system", "os.exec", "os.spawn", "os.posix_spawn", "subprocess.Popen",
        "os.kill", "os.killpg", "signal.pthread_kill", "os.link", "os.symlink",
        "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "ctypes.call_function", "ctypes.addressof",
        "resource.setrlimit", "resource.prlimit", "gc.get_objects", "gc.get_referrers", "gc.get_referents",
        "sys.addaudithook", "os.chmod", "os.chown", "os.chflags", "shutil.chown",  # so cleanup always works
    ))
    refused_imports = frozenset(("_ctypes", "ctypes", "_posixsubprocess", "_xxsubinterpreters"))
    path_events = frozenset(("os.remove", "os.rmdir", "os.mkdir", "os.rename", "os.truncate", "os.utime",
                             "os.setxattr", "os.removexattr", "shutil.rmtree"))

    def absolute(path):
        # Lexical: no links can be made, so no path inside the directory leads out of it.
        parts = []
        for part in (path if path.startswith(sep) else getcwd() + sep + path).split(sep):
            if part == "..":
                parts = parts[:-1]
            elif part and part != ".":
                parts.append(part)
        return sep + sep.join(parts)

    def outside(path):
        if isinstance(path, int):
            return False  # an open descriptor: checked when it was opened
        path = fsdecode(fspath(path))
        if not path.startswith(sep) and ".." in path.split(sep):
            return True  # relative to a dir_fd it could climb out, and the event does not say
        full = absolute(path)
        return not (full == root or full.startswith(root + sep) or full == "/dev/null")

    def hook(event, args):
        if event in refused:
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "import" and args[0].split(".")[0] in refused_imports:
            raise PermissionError(f"sandbox: importing {args[0]} is not allowed")
        if event == "open" and not isinstance(args[0], int) and outside(args[0]):
            if args[2] & write:
                raise PermissionError(f"sandbox: writing {args[0]!r} outside the sandbox is not allowed")
            try:  # a directory descriptor outside would let dir_fd-relative calls write there
                opens_dir = is_dir(lstat(args[0]).st_mode)
            except (OSError, ValueError, TypeError):
                opens_dir = False
            if opens_dir:
                raise PermissionError(f"sandbox: opening directory {args[0]!r} is not allowed")
        if event in path_events and any(outside(p) for p in (args[:2] if event == "os.rename" else args[:1])):
            raise PermissionError(f"sandbox: {event} outside the sandbox is not allowed")
        if event == "object.__setattr__" and args[1] in ("__code__", "__defaults__", "__kwdefaults__"):
            raise PermissionError("sandbox: rewriting functions is not allowed")

    sys.addaudithook(hook)

_root, _cpu, _memory, _fsize, _program = sys.argv[1], *map(int, sys.argv[2:5]), sys.argv[5]
_install(_root, _cpu, _memory, _fsize)
del _install
import runpy
runpy.run_path(_program, run_name="__main__")
"""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed run."""

    timeout_s: float = 5.0  # wall clock, then the process group is killed
    cpu_s: int = 5  # CPU seconds (RLIMIT_CPU)
    memory_mb: int = 1024  # address space (RLIMIT_AS)
    output_kb: int = 1024  # largest file it may write, stdout and stderr included (RLIMIT_FSIZE)


@dataclass(frozen=True)
class Result:
    """How a sandboxed program ended."""

    returncode: int | None  # negative: killed by that signal
    timed_out: bool
    stdout: str  # at most Limits.output_kb
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def run_python(source: str, limits: Limits = Limits()) -> Result:
    """Run ``source`` as ``__main__`` in a fresh sandbox; never raises for anything the program does."""
    root = os.path.realpath(tempfile.mkdtemp(prefix="corp-sandbox-"))
    try:
        program = os.path.join(root, "main.py")
        with open(program, "w", encoding="utf-8") as f:
            f.write(source)
        out_path, err_path = os.path.join(root, ".stdout"), os.path.join(root, ".stderr")
        env = {"PATH": os.defpath, "HOME": root, "TMPDIR": root, "LANG": "C.UTF-8"}
        args = [str(limits.cpu_s), str(limits.memory_mb * 2**20), str(limits.output_kb * 1024), program]
        cmd = [sys.executable, "-I", "-B", "-X", "utf8", "-c", GUARD, root, *args]
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(
                cmd, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True
            )
        timed_out = not _wait(proc, limits.timeout_s)
        try:  # the whole group: the program and anything it started
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        returncode = proc.wait()
        return Result(None if timed_out else returncode, timed_out, _read(out_path, limits), _read(err_path, limits))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _wait(proc: subprocess.Popen, timeout_s: float) -> bool:
    """Wait for the child to exit, True if it did in time. With ``os.waitid`` (Linux) it is left
    unreaped, so its process-group id cannot be reused before the group is killed."""
    if not hasattr(os, "waitid"):  # e.g. macOS: reaped here, a negligible window before killpg
        try:
            proc.wait(timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False
    deadline, delay = time.monotonic() + timeout_s, 0.0005
    while os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(2 * delay, 0.02)
    return True


def _read(path: str, limits: Limits) -> str:
    with open(path, "rb") as f:
        return f.read(limits.output_kb * 1024).decode("utf-8", errors="replace")
