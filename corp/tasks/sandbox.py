"""Run untrusted Python (generated code) in a sandbox that holds as root.

Layers, from the one that matters most:

1. **OS isolation** (``Limits.isolate``, on by default). A trusted prologue (passed with ``-c``,
   so nothing on disk can be swapped under it) creates new mount, PID, network, IPC and UTS
   namespaces (plus a user namespace when not root) and forks; the fork is PID 1 of the new PID
   namespace and runs the program:

   - the program sees a new root built from nothing (``pivot_root`` onto an empty tmpfs), holding
     only what it needs, bound read-only (``view``): the standard library (the base interpreter's,
     with its own ``site-packages`` covered), each shared library the interpreter and the allowed
     packages load, ``/etc/ld.so.cache``, ``/dev/null`` and the random devices, and under ``SITE``
     the packages of ``Limits.packages`` (each with its compiled ``<name>.libs`` and metadata).
     No task data, run folder, home, cache, repository or working directory exists in there, so no
     answer key can be read, whatever path or walk the program tries. The only writable place is
     the scratch folder, a fresh tmpfs capped at ``Limits.scratch_kb`` that is the working
     directory, ``HOME`` and ``TMPDIR``, and that vanishes with the namespace;
   - a new ``/proc`` shows only the sandbox's own processes, so no other process can be seen,
     signalled or have its ``environ`` read; the network namespace has no interfaces;
   - as root the program runs under an unprivileged uid and gid (``UID_BASE`` + the prologue's
     pid, unique among live sandboxes, owning no file), so ``/etc/shadow`` and root's files are
     unreadable and ``RLIMIT_NPROC`` (processes and threads) counts this sandbox only; without
     root the user namespace's capabilities are dropped, and RLIMIT_NPROC is counted per user
     namespace by the kernel;
   - ``no_new_privs``, rlimits on CPU, memory, file size, open files, core dumps and processes;
   - when PID 1 dies, the kernel kills every process in its namespace, so nothing outlives a run.

   The prologue's first process stays outside as a watchdog: it kills PID 1 at the wall-clock
   limit, reaps it and reports how it ended on a pipe that only it holds. Where the kernel refuses
   the namespaces, a run with ``isolate=True`` fails closed (``Result.error``); ``isolation()``
   probes once per process, and the code tasks refuse to start without isolation unless
   ``task.allow_unsafe_code=true`` (see ``corp.tasks.code``); such unsafe runs keep only the
   rlimits and the audit hooks, as the caller's uid, in a scratch folder on the real disk, seeing
   the whole host (the allowed packages' site-packages folders included).

2. **The parent owns every channel.** stdout, stderr and the result channel (``RESULT_FD`` in the
   child, where a harness writes its answers) are pipes the parent reads with ``select``, each
   capped at ``Limits.output_kb`` (the pipe is closed past it, so a flood ends with EPIPE) and
   all under one deadline. The program never learns a path the parent will open, and nothing it
   does can make ``run_python`` hang, raise or kill its caller.

3. **Audit hooks, a second layer.** Process creation, signals and sockets raise PermissionError
   early with a readable message. They are not a boundary (C code can skip them) and refuse
   nothing a correct solution needs: ``dataclasses``, ``inspect``, ``namedtuple``, ``doctest``,
   NumPy and friends work.

``run_python`` returns a ``Result``. Rewards are not decided here: ``corp.tasks.judge`` reads the
result channel and compares in the parent.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import re
import select
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache

RESULT_FD = 3  # in the child: where a harness writes its answers (a pipe the parent reads)
UID_BASE = 1_000_000  # sandboxed programs run as UID_BASE + pid when started as root
_GRACE_S = 3.0  # the parent's deadline past the watchdog's, for start-up under load
SITE = "/site"  # in the sandbox: the folder holding the allowed packages
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}  # the syscall's number (glibc has no wrapper)

# The trusted prologue. argv: payload path, status fd, result fd. Runs as the caller until it
# drops privileges; every step that fails fails the run (never silently less isolation).
PROLOGUE = r"""
import json, os, resource, signal, sys

def main():
    payload_path, status_fd, result_fd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with open(payload_path, "rb") as f:
        cfg = json.loads(f.read())
    status = os.fdopen(status_fd, "w")

    def fail(message):
        status.write(json.dumps({"error": message})); status.flush()
        os._exit(125)

    scratch, root_user = cfg["scratch"], os.geteuid() == 0
    # Unprivileged only with isolation: without a mount namespace, Python itself may be out of its reach.
    uid = gid = cfg["uid_base"] + os.getpid() if root_user and cfg["isolate"] else None
    libc = None
    if cfg["isolate"]:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        flags = 0x00020000 | 0x20000000 | 0x40000000 | 0x08000000 | 0x04000000  # NS, PID, NET, IPC, UTS
        if not root_user:
            flags |= 0x10000000  # NEWUSER
            real_uid, real_gid = os.getuid(), os.getgid()
        if libc.unshare(flags) != 0:
            fail(f"unshare failed: {os.strerror(ctypes.get_errno())}")
        if not root_user:
            for name, text in (("setgroups", "deny"), ("uid_map", f"0 {real_uid} 1"), ("gid_map", f"0 {real_gid} 1")):
                with open(f"/proc/self/{name}", "w") as f:
                    f.write(text)
    pid = os.fork() if cfg["isolate"] else 0
    if pid:
        watch(pid, status, cfg["timeout_s"])
    os.close(status_fd)
    if cfg["isolate"]:
        isolate(libc, scratch, cfg, uid)
    os.chdir(scratch)  # before dropping: the folders above it stay closed to the program's uid
    drop(libc, uid, gid, cfg)
    for name, text in cfg["files"].items():
        with open(name, "w", encoding="utf-8") as f:
            f.write(text)
    os.environ.clear()
    os.environ.update({"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": scratch, "TMPDIR": scratch, "LANG": "C.UTF-8"})
    if result_fd != cfg["result_fd"]:
        os.dup2(result_fd, cfg["result_fd"]); os.close(result_fd)
    os.closerange(cfg["result_fd"] + 1, 65536)
    hooks()
    sys.argv = ["main.py"]
    sys.path[0:0] = [scratch]
    sys.path += cfg["view"]["path"]
    import site  # -S skipped it: only the builtins it adds (exit, quit, help), not its search for packages
    site.setquit(); site.setcopyright(); site.sethelper()

def watch(pid, status, timeout_s):
    # Outside the namespaces: nothing of the program can reach this process.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.closerange(3, status.fileno())
    os.closerange(status.fileno() + 1, 65536)
    timed_out = []
    def expire(*_):
        timed_out.append(True)
        os.kill(pid, signal.SIGKILL)  # still our unreaped child: the pid cannot be reused yet
    signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    while True:
        try:
            _, code = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal_number = os.WTERMSIG(code) if os.WIFSIGNALED(code) else 0
    returncode = -signal_number if signal_number else os.WEXITSTATUS(code)
    status.write(json.dumps({"returncode": returncode, "timed_out": bool(timed_out)})); status.flush()
    os._exit(0)

def isolate(libc, scratch, cfg, uid):
    # A new root, built from nothing: an empty tmpfs holding only the binds of the view (the
    # standard library, the libraries the interpreter loads, the allowed packages under SITE),
    # a few device nodes, /proc and the scratch folder. Everything else of the host is gone.
    import ctypes
    def check(ok, what):
        if not ok:
            raise OSError(ctypes.get_errno(), f"{what}: {os.strerror(ctypes.get_errno())}")
    mount = libc.mount
    mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
    check(mount(None, b"/", None, 0x4000 | 0x40000, None) == 0, "private /")  # MS_REC | MS_PRIVATE
    root, view = cfg["root"], cfg["view"]
    check(mount(b"tmpfs", root.encode(), b"tmpfs", 0x2 | 0x4, b"size=64k,nr_inodes=4096,mode=0755") == 0, "new root")
    for name, target in view["symlinks"]:
        os.symlink(target, root + name)
    for source, target in view["binds"]:
        inside = root + target
        if os.path.isdir(source):
            os.makedirs(inside, 0o755, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(inside), 0o755, exist_ok=True)
            os.close(os.open(inside, os.O_WRONLY | os.O_CREAT, 0o644))
        check(mount(source.encode(), inside.encode(), None, 0x1000 | 0x4000, None) == 0, f"bind {source}")  # MS_BIND|MS_REC
    for target in view["covers"]:  # e.g. the base interpreter's own site-packages inside the standard library
        check(mount(b"tmpfs", (root + target).encode(), b"tmpfs", 0x2 | 0x4, b"size=4k,nr_inodes=16,mode=0755") == 0,
              f"cover {target}")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{root}/dev/{name}")
    for path in ("/proc", scratch):
        os.makedirs(root + path, 0o755, exist_ok=True)
    libc.syscall.restype = ctypes.c_long
    os.chdir(root)
    check(libc.syscall(cfg["pivot_root"], b".", b".") == 0, "pivot_root")
    check(libc.umount2(b".", 2) == 0, "detach the old root")  # MNT_DETACH
    os.chdir("/")
    class MountAttr(ctypes.Structure):
        _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                    ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]
    attr = MountAttr(0x1 | 0x2, 0, 0, 0)  # MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID
    check(libc.syscall(442, -100, b"/", 0x8000, ctypes.byref(attr), ctypes.sizeof(attr)) == 0,
          "read-only /")  # mount_setattr(AT_FDCWD, "/", AT_RECURSIVE, ...)
    owner = 0 if uid is None else uid
    options = f"size={cfg['scratch_kb']}k,nr_inodes=4096,mode=0700,uid={owner},gid={owner}".encode()
    check(mount(b"tmpfs", scratch.encode(), b"tmpfs", 0x2 | 0x4, options) == 0, "scratch tmpfs")  # NOSUID|NODEV
    check(mount(b"proc", b"/proc", b"proc", 0x2 | 0x4 | 0x8, None) == 0, "/proc")  # NOSUID|NODEV|NOEXEC

def drop(libc, uid, gid, cfg):
    import ctypes
    if libc is None:
        libc = ctypes.CDLL(None, use_errno=True)
    if uid is not None:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)  # every capability goes with uid 0
    elif cfg["isolate"]:  # root of our own user namespace: give up its capabilities too
        for cap in range(64):
            libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)
        data = (ctypes.c_uint32 * 6)()
        if libc.capset(header, data) != 0:
            raise OSError(ctypes.get_errno(), "capset")
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "no_new_privs")
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: dies with the watchdog (cleared by setuid, so set after)
    for res, limit in ((resource.RLIMIT_CPU, cfg["cpu_s"]), (resource.RLIMIT_AS, cfg["memory"]),
                       (resource.RLIMIT_FSIZE, cfg["fsize"]), (resource.RLIMIT_CORE, 0),
                       (resource.RLIMIT_NOFILE, 256), (resource.RLIMIT_NPROC, cfg["processes"])):
        resource.setrlimit(res, (limit, limit))
    for name in [m for m in sys.modules if m.split(".")[0] in ("ctypes", "_ctypes")]:
        del sys.modules[name]  # the program gets a fresh import, not our handle to libc

def hooks():
    refused = frozenset((
        "os.fork", "os.forkpty", "os.system", "os.exec", "os.spawn", "os.posix_spawn", "subprocess.Popen",
        "os.kill", "os.killpg", "signal.pthread_kill", "socket.__new__", "socket.connect", "socket.bind",
        "socket.getaddrinfo", "socket.gethostbyname", "sys.addaudithook",
    ))
    def hook(event, args):
        if event in refused:
            raise PermissionError(f"sandbox: {event} is not allowed")
    sys.addaudithook(hook)

try:
    main()
except BaseException as err:  # a setup failure: report it on stderr and fail the run
    sys.stderr.write(f"sandbox setup failed: {type(err).__name__}: {err}\n")
    os._exit(125)
del main, watch, isolate, drop, hooks
import runpy
runpy.run_path("main.py", run_name="__main__")
"""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed run."""

    timeout_s: float = 5.0  # wall clock, then every process of the run is killed
    cpu_s: int = 5  # CPU seconds (RLIMIT_CPU)
    memory_mb: int = 1024  # address space (RLIMIT_AS)
    output_kb: int = 1024  # kept of stdout, of stderr and of the result channel, each; a pipe is closed past it
    scratch_kb: int = 16384  # the writable scratch folder, all files together (tmpfs size)
    processes: int = 32  # processes and threads of the run (RLIMIT_NPROC)
    packages: tuple[str, ...] = ()  # importable besides the standard library (top-level names in site-packages)
    isolate: bool = True  # namespaces required; False: rlimits, uid drop and audit hooks only (unsafe)


@dataclass(frozen=True)
class Result:
    """How a sandboxed program ended."""

    returncode: int | None  # negative: killed by that signal; None: timed out or never started
    timed_out: bool
    stdout: str  # at most Limits.output_kb
    stderr: str
    data: bytes = b""  # what the program wrote to RESULT_FD, at most Limits.output_kb
    error: str | None = field(default=None)  # the sandbox could not be set up (never the program's doing)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and self.error is None


def run_python(source: str, limits: Limits = Limits(), files: dict[str, str] | None = None) -> Result:
    """Run ``source`` as ``__main__`` (``main.py`` in the scratch folder, next to ``files``) in a
    fresh sandbox. Never raises and never hangs past ``limits.timeout_s`` plus a short grace."""
    try:
        return _run(source, limits, files or {})
    except Exception as err:  # e.g. out of file descriptors: a failed run, not a failed trainer
        return Result(None, False, "", "", b"", f"{type(err).__name__}: {err}")


def _run(source: str, limits: Limits, files: dict[str, str]) -> Result:
    try:
        seen = view(tuple(limits.packages)) if limits.isolate else {"path": host_path(tuple(limits.packages))}
    except ValueError as err:  # fails closed: never a wider view
        return Result(None, False, "", "", b"", f"sandbox setup failed: {err}")
    with tempfile.TemporaryDirectory(prefix="corp-sandbox-") as tmp:
        scratch = os.path.join(os.path.realpath(tmp), "scratch")
        os.mkdir(scratch, 0o700)
        os.mkdir(os.path.join(tmp, "root"), 0o700)  # where the new root is mounted (in the namespace only)
        payload = {
            "scratch": scratch, "root": os.path.join(os.path.realpath(tmp), "root"), "view": seen,
            "pivot_root": PIVOT_ROOT.get(platform.machine(), -1),
            "files": {**files, "main.py": source}, "isolate": limits.isolate,
            "timeout_s": limits.timeout_s, "cpu_s": limits.cpu_s, "memory": limits.memory_mb * 2**20,
            "fsize": limits.scratch_kb * 1024, "scratch_kb": limits.scratch_kb, "processes": limits.processes,
            "uid_base": UID_BASE, "result_fd": RESULT_FD,
        }  # fmt: skip
        os.chmod(tmp, 0o711)  # the program's uid may pass through to the scratch folder, not list it
        payload_path = os.path.join(tmp, "payload.json")  # owner-only: read before privileges drop
        with os.fdopen(os.open(payload_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as f:
            json.dump(payload, f)
        status_r, status_w = os.pipe()
        result_r, result_w = os.pipe()
        try:
            # -S: site-packages is not on sys.path and no .pth file runs; the prologue adds the view's path.
            cmd = [
                sys.executable,
                "-I",
                "-S",
                "-B",
                "-X",
                "utf8",
                "-c",
                PROLOGUE,
                payload_path,
                str(status_w),
                str(result_w),
            ]
            proc = subprocess.Popen(
                cmd, cwd=tmp, env={"LANG": "C.UTF-8"}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, pass_fds=(status_w, result_w), start_new_session=True,
            )  # fmt: skip
        except BaseException:
            for fd in (status_r, status_w, result_r, result_w):
                os.close(fd)
            raise
        os.close(status_w)
        os.close(result_w)
        # With isolation the watchdog keeps the time and the grace covers start-up; without it, we do.
        deadline = time.monotonic() + limits.timeout_s + (_GRACE_S if limits.isolate else 0.0)
        cap, out_fd, err_fd = limits.output_kb * 1024, proc.stdout.fileno(), proc.stderr.fileno()
        out = _drain({out_fd: cap, err_fd: cap, result_r: cap, status_r: 4096}, deadline)
        killed = _finish(proc, deadline)
        for stream in (proc.stdout, proc.stderr):
            stream.close()
    try:
        status = json.loads(out[status_r] or b"{}")
    except ValueError:
        status = {}
    stdout, stderr = (out[fd].decode("utf-8", errors="replace") for fd in (out_fd, err_fd))
    if "error" in status:
        return Result(None, False, stdout, stderr, b"", f"sandbox setup failed: {status['error']}")
    if limits.isolate and "returncode" not in status:  # the watchdog did not report: treat as killed
        return Result(None, True, stdout, stderr, out[result_r], None if killed else "the sandbox did not report")
    timed_out = bool(status.get("timed_out")) or killed
    returncode = status.get("returncode", proc.returncode)
    if returncode == 125 and stderr.startswith("sandbox setup failed"):
        return Result(None, False, stdout, stderr, b"", stderr.strip().splitlines()[-1])
    return Result(None if timed_out else returncode, timed_out, stdout, stderr, out[result_r])


def _drain(caps: dict[int, int], deadline: float) -> dict[int, bytes]:
    """Read every pipe until it closes, its cap is reached (then it is closed, so the writer gets
    EPIPE) or the deadline passes. Closes all the descriptors except the Popen-owned ones."""
    chunks: dict[int, list[bytes]] = {fd: [] for fd in caps}
    left = dict(caps)
    open_fds = set(caps)
    owned = set(list(caps)[2:])  # result and status pipes; stdout/stderr are closed by their file objects
    while open_fds:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        ready, _, _ = select.select(list(open_fds), [], [], remaining)
        for fd in ready:
            data = os.read(fd, min(65536, max(left[fd], 1)))
            if data:
                data = data[: left[fd]]
                chunks[fd].append(data)
                left[fd] -= len(data)
            if not data or left[fd] <= 0:
                open_fds.discard(fd)
                if fd in owned:
                    os.close(fd)
                    owned.discard(fd)
                else:
                    _shut(fd)
    for fd in owned:
        os.close(fd)
    return {fd: b"".join(parts) for fd, parts in chunks.items()}


def _shut(fd: int) -> None:
    """Stop reading a Popen-owned pipe: point its descriptor at /dev/null, so the writer sees EPIPE
    while the file object keeps a valid descriptor to close later."""
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


def _finish(proc: subprocess.Popen, deadline: float) -> bool:
    """Wait for the prologue (the watchdog) to exit; kill its group past the deadline. True if killed."""
    try:
        proc.wait(max(0.0, deadline - time.monotonic()))
        return False
    except subprocess.TimeoutExpired:
        pass
    try:  # the watchdog outlived its own timer: kill it; PID 1 of the sandbox dies with it (PDEATHSIG)
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    return True


def stdlib_dirs() -> list[str]:
    """The standard library's folders: the base interpreter's (a venv has none of its own)."""
    paths = {sysconfig.get_path(key, vars={"base": sys.base_prefix, "platbase": sys.base_exec_prefix,
                                           "installed_base": sys.base_prefix, "installed_platbase": sys.base_exec_prefix})
             for key in ("stdlib", "platstdlib")}  # fmt: skip
    return _outermost(os.path.realpath(p) for p in paths if os.path.isdir(p))


def _outermost(paths) -> list[str]:
    """Sorted, without the paths that lie inside another one."""
    paths = sorted(set(paths))
    return [p for i, p in enumerate(paths) if not any(_inside(p, q) for q in paths[:i])]


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def site_dirs() -> list[str]:
    """Where an allowed package may come from: this interpreter's (or venv's) site-packages."""
    import site

    found = [sysconfig.get_path(key) for key in ("purelib", "platlib")] + site.getsitepackages()
    return _outermost(os.path.realpath(p) for p in found if os.path.isdir(p))


def package_paths(name: str) -> list[str]:
    """The folders and files that make up the installed package ``name`` (its module or package, its
    auditwheel ``<name>.libs`` folder of compiled dependencies, its ``.dist-info``). ValueError
    when ``name`` is not a top-level package installed in ``site_dirs()``."""
    if not name.isidentifier():
        raise ValueError(f"package {name!r}: expected a top-level import name such as 'numpy'")
    spec = importlib.util.find_spec(name)  # a top-level name: nothing is imported
    if spec is None:
        raise ValueError(f"package {name!r} is not installed")
    found = [os.path.realpath(p) for p in (spec.submodule_search_locations or [spec.origin]) if p]
    homes = {os.path.dirname(p) for p in found}
    if not found or not homes <= set(site_dirs()):
        raise ValueError(f"package {name!r} lives in {', '.join(sorted(homes)) or 'no folder'}, not in site-packages "
                         f"({', '.join(site_dirs())}); the standard library is always visible")  # fmt: skip
    from importlib.metadata import packages_distributions

    dists = {re.sub(r"[-_.]+", "_", d).lower() for d in packages_distributions().get(name, [])}
    for home in homes:
        for entry in os.listdir(home):
            if entry == f"{name}.libs" or (entry.endswith(".dist-info") and entry.split("-")[0].lower() in dists):
                found.append(os.path.join(home, entry))
    return sorted(set(found))


def host_path(packages: tuple[str, ...]) -> list[str]:
    """Without isolation: the site-packages folders that hold the allowed packages, whole."""
    return sorted({os.path.dirname(p) for name in packages for p in package_paths(name)})


@lru_cache(maxsize=8)
def view(packages: tuple[str, ...]) -> dict:
    """What an isolated program sees besides its scratch folder and /proc, computed once per
    process and allow-list: ``binds`` (host path, path inside), ``covers`` (folders hidden under
    an empty tmpfs), ``symlinks`` (the host's top-level ones the library paths go through) and
    ``path`` (added to ``sys.path``). ValueError for a package that cannot be allowed, or a
    folder to bind that holds what must stay hidden (the working directory, home, caches)."""
    binds = [(p, p) for p in stdlib_dirs()]
    covers = [os.path.join(p, sub) for p in stdlib_dirs() for sub in ("site-packages", "dist-packages")
              if os.path.isdir(os.path.join(p, sub))]  # fmt: skip
    shown = [p for name in packages for p in package_paths(name)]
    binds += [(p, f"{SITE}/{os.path.basename(p)}") for p in shown]
    libraries = sorted({lib for p in [sys.executable, *(p for p, _ in binds)] for lib in _libraries(p, tuple(covers))})
    libraries = [lib for lib in libraries if not any(_inside(os.path.realpath(lib), p) for p, _ in binds)]
    binds += [(lib, os.path.join(os.path.realpath(os.path.dirname(lib)), os.path.basename(lib))) for lib in libraries]
    binds += [(p, p) for p in ("/etc/ld.so.cache", *DEVICES) if os.path.exists(p)]
    hidden = [
        os.getcwd(),
        os.path.expanduser("~"),
        os.path.expanduser("~/.cache"),
        os.environ.get("XDG_CACHE_HOME", ""),
        os.environ.get("HF_HOME", ""),
    ]
    for source, _ in binds:
        bad = [h for h in hidden if h and _inside(os.path.realpath(h), source)]
        if source == "/" or bad:
            raise ValueError(f"the sandbox would show {source}, which holds {bad[0] if bad else 'everything'}")
    tops = {lib.split("/")[1] for lib in libraries}
    symlinks = [(f"/{t}", os.readlink(f"/{t}")) for t in sorted(tops) if os.path.islink(f"/{t}")]
    return {"binds": binds, "covers": covers, "symlinks": symlinks, "path": [SITE] if packages else []}


@lru_cache(maxsize=64)
def _libraries(path: str, skip: tuple[str, ...]) -> list[str]:
    """The shared libraries that the executable ``path``, or the extension modules in the folder
    ``path`` (not under ``skip``), load, as the dynamic loader resolves them (``ldd``)."""
    objects = [path] if path == sys.executable or path.endswith(".so") else []
    if os.path.isdir(path):
        for parent, subs, names in os.walk(path):
            subs[:] = [d for d in subs if os.path.join(parent, d) not in skip]
            objects += [os.path.join(parent, n) for n in names if n.endswith(".so") or ".so." in n]
    if not objects:
        return []
    try:
        out = subprocess.run(["ldd", *objects], capture_output=True, text=True, check=False).stdout
    except OSError as err:
        raise ValueError(f"cannot list the shared libraries to show: ldd: {err}") from None
    return sorted({os.path.normpath(m) for m in re.findall(r"^\s+(?:\S+ => )?(/\S+) \(0x", out, re.MULTILINE)})


@lru_cache(maxsize=1)
def isolation() -> str | None:
    """None when this machine can isolate a program (probed once per process), else why not."""
    result = run_python("import os\nopen('probe', 'w').write('x')\n", Limits(timeout_s=10.0, cpu_s=10))
    if result.ok:
        return None
    return result.error or (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
