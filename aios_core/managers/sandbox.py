"""Untrusted Python in a limited subprocess: rlimits, an unprivileged uid, a pid and network namespace.

How each limit is made to hold:

- A tiny root-side bootstrap forks the program, sets ``RLIMIT_CPU/AS/NPROC/FSIZE/NOFILE`` and
  ``RLIMIT_CORE=0`` in the child, drops it to an unprivileged uid and ``exec``s ``python -I``
  in a fresh working directory with a minimal environment.
- Linux does not apply ``RLIMIT_NPROC`` to root, so when the kernel runs as root the program runs
  as a *fresh uid per run* (no passwd entry needed). A per-run uid, not ``nobody``, because
  ``RLIMIT_NPROC`` counts every process of a uid system-wide: with a shared uid, eight concurrent
  sandboxes would share one 16-process budget and one fork bomb would starve the others. It also
  makes "kill everything this run left behind" exact.
- When ``unshare`` (util-linux) works, the bootstrap runs as pid 1 of a new pid namespace and in
  a new network namespace (loopback down: no connection, not even to 127.0.0.1). When pid 1 exits
  the Linux kernel kills every process in the namespace, so background and ``setsid`` grandchildren
  die with the program. Without ``unshare`` the process group is killed and, as root, every
  process of the run's uid is swept from ``/proc``; network is then *not* isolated.
- Files the run's uid left in the world-writable ``/tmp``, ``/var/tmp`` and ``/dev/shm`` are
  deleted after the run (a bounded walk that never follows symlinks), so nothing outlives it there.
- As a non-root kernel nothing can drop privileges: rlimits still hold (``RLIMIT_NPROC`` is set
  to the user's current task count plus ``max_processes``), but file-system protection is only
  what the user's own permissions give. ``SandboxResult.uid`` is None then.

The interpreter, as root, is the first of the kernel's own, its base interpreter,
``/usr/local/bin/python3`` and ``/usr/bin/python3`` that the run's uid can execute (a venv under
``/root``, mode 0700, is not), so the kernel's installed packages may not be importable there.
A process that outlives the kernel process itself is bounded by ``RLIMIT_CPU`` only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aios.errors import ConfigError, InvalidRequestError

#: Per-run uids are drawn from here (above the ranges distributions and container runtimes use).
UID_BASE = 1_900_000_000
UID_SPAN = 100_000_000
#: World-writable directories a program can leave files in; the run's uid is swept from them.
SHARED_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm")
#: Bounds on that sweep (entries looked at per directory tree, depth) so that it always ends.
_SWEEP_MAX_ENTRIES = 100_000
_SWEEP_MAX_DEPTH = 16

_BOOTSTRAP = r"""
import json, os, resource, signal, sys
cfg = json.loads(sys.argv[1])
status_fd = cfg["status_fd"]
pid = os.fork()
if pid == 0:
    try:
        os.close(status_fd)
        for name, value in cfg["rlimits"]:
            resource.setrlimit(getattr(resource, name), tuple(value))
        if cfg["uid"] is not None:
            os.setgroups([])
            os.setgid(cfg["uid"])
            os.setuid(cfg["uid"])
        os.chdir(cfg["cwd"])
        os.execve(cfg["python"], [cfg["python"], "-I", cfg["script"]], cfg["env"])
    except BaseException as exc:
        os.write(2, ("sandbox: cannot start the program: %r\n" % (exc,)).encode())
    os._exit(127)
# Reap everything (orphans reparent to us when we are pid 1) until the program itself exits.
status = None
while status is None:
    try:
        done, st = os.waitpid(-1, 0)
    except InterruptedError:
        continue
    except ChildProcessError:
        break
    if done == pid:
        status = st
if cfg["uid"] is not None:
    # Kill what the program left behind: kill(-1) as the run's uid reaches exactly its processes.
    for _ in range(3):
        killer = os.fork()
        if killer == 0:
            try:
                os.setuid(cfg["uid"])
                os.kill(-1, signal.SIGKILL)
            except OSError:
                pass
            os._exit(0)
        os.waitpid(killer, 0)
code = os.waitstatus_to_exitcode(status) if status is not None else -9
os.write(status_fd, ("%d\n" % code).encode())
os._exit(0)
"""


@dataclass(frozen=True, slots=True)
class SandboxResult:
    """What a sandboxed run produced; ``exit_code`` is ``-N`` when signal ``N`` killed it."""

    stdout: str
    stderr: str
    exit_code: int
    timed_out: bool
    killed_by_signal: int | None
    #: The program died of MemoryError, or of a SIGKILL that was not our timeout (an OOM killer).
    oom: bool
    duration: float
    #: stdout or stderr was longer than ``max_output_bytes`` and was cut.
    truncated: bool = False
    #: The uid the program ran as (None when the kernel is not root and could not drop privileges).
    uid: int | None = None
    network_isolated: bool = False

    @property
    def ok(self) -> bool:
        """The program exited with status 0 in time."""
        return self.exit_code == 0 and not self.timed_out

    def to_dict(self) -> dict[str, Any]:
        """The result as a JSON-able dict."""
        return asdict(self)


class Sandbox:
    """Runs untrusted Python; holds what it probed about the machine (interpreter, ``unshare``)."""

    def __init__(self, *, python: str | None = None, namespaces: bool = True, isolate_network: bool = True):
        self._python = python
        self._namespaces = namespaces
        self._isolate_network = isolate_network
        self._unshare: list[str] | None = None
        self._probed = False

    async def run(
        self,
        code: str,
        *,
        timeout_s: float = 10.0,
        memory_mb: int = 256,
        cpu_s: float | None = None,
        max_processes: int = 16,
        max_output_bytes: int = 64 * 1024,
        max_file_mb: int = 16,
        workdir: Path | None = None,
        stdin: str | None = None,
    ) -> SandboxResult:
        """Run ``code`` with ``python -I`` under the limits; never raises for what the code does."""
        _check_limits(timeout_s, memory_mb, cpu_s, max_processes, max_output_bytes, max_file_mb)
        if not isinstance(code, str):
            raise InvalidRequestError("code must be a string", field="code")
        root = os.geteuid() == 0
        uid = _free_uid() if root else None
        python = self._interpreter(privileged=root)
        prefix = await self._unshare_prefix() if root and self._namespaces else []
        base = Path(tempfile.mkdtemp(prefix="aios-sbx-"))
        owners: dict[str, tuple[int, int]] = {}
        cwd = Path(workdir) if workdir is not None else base / "work"
        try:
            script = base / "main.py"
            script.write_text(code, encoding="utf-8")
            os.chmod(base, 0o755)
            os.chmod(script, 0o644)
            if workdir is None:
                cwd.mkdir(mode=0o700)
                if uid is not None:
                    os.chown(cwd, uid, uid)
            elif not cwd.is_dir():
                raise InvalidRequestError(f"workdir {str(cwd)!r} is not a directory", field="workdir")
            elif uid is not None and not all(p.stat().st_mode & stat.S_IXOTH for p in cwd.resolve().parents):
                raise InvalidRequestError(
                    f"workdir {str(cwd)!r} is inside a directory the sandbox user cannot enter",
                    field="workdir",
                )
            elif uid is not None:
                owners = await asyncio.to_thread(_chown_tree, cwd, uid, uid)
            nproc = max_processes if uid is not None else _own_task_count() + max_processes
            cpu = cpu_s if cpu_s is not None else math.ceil(timeout_s) + 1
            rlimits = [
                ("RLIMIT_CPU", [math.ceil(cpu), math.ceil(cpu) + 1]),
                ("RLIMIT_AS", [memory_mb << 20] * 2),
                ("RLIMIT_NPROC", [nproc] * 2),
                ("RLIMIT_FSIZE", [max_file_mb << 20] * 2),
                ("RLIMIT_NOFILE", [256, 256]),
                ("RLIMIT_CORE", [0, 0]),
            ]
            env = {
                "PATH": "/usr/local/bin:/usr/bin:/bin",
                "HOME": str(cwd),
                "TMPDIR": str(cwd),
                "LANG": "C.UTF-8",
                "LC_ALL": "C.UTF-8",
                # glibc reserves 64 MiB of address space per malloc arena; threads would hit RLIMIT_AS.
                "MALLOC_ARENA_MAX": "2",
            }
            return await _execute(
                prefix,
                python,
                {"uid": uid, "cwd": str(cwd), "script": str(script), "env": env, "rlimits": rlimits},
                timeout_s=timeout_s,
                max_output_bytes=max_output_bytes,
                stdin=stdin,
                uid=uid,
                network_isolated="--net" in prefix,
            )
        finally:
            await asyncio.shield(asyncio.to_thread(_cleanup, base, uid, cwd, owners))

    def _interpreter(self, *, privileged: bool) -> str:
        if self._python is not None:
            return self._python
        # The run's uid must be able to reach the interpreter; a venv under /root (0700) is not.
        candidates = [
            sys.executable,
            getattr(sys, "_base_executable", ""),
            "/usr/local/bin/python3",
            "/usr/bin/python3",
        ]
        for cand in candidates:
            if cand and os.path.exists(cand) and (not privileged or _world_executable(cand)):
                self._python = cand
                return cand
        raise ConfigError(
            "no Python interpreter that an unprivileged user can execute was found; pass python=",
            field="python",
        )

    async def _unshare_prefix(self) -> list[str]:
        if not self._probed:
            self._probed = True
            exe = shutil.which("unshare")
            if exe is not None:
                flags = ["--pid", "--fork", "--kill-child"] + (["--net"] if self._isolate_network else [])
                prefix = [exe, *flags, "--"]
                try:
                    proc = await asyncio.create_subprocess_exec(
                        *prefix, "true", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                    )
                except OSError:
                    ok = False
                else:
                    try:
                        async with asyncio.timeout(5):
                            ok = await proc.wait() == 0
                    except TimeoutError:
                        proc.kill()
                        ok = False
                self._unshare = prefix if ok else None
        return list(self._unshare or [])


async def run_python(
    code: str,
    *,
    timeout_s: float = 10.0,
    memory_mb: int = 256,
    cpu_s: float | None = None,
    max_processes: int = 16,
    max_output_bytes: int = 64 * 1024,
    max_file_mb: int = 16,
    workdir: Path | None = None,
    stdin: str | None = None,
    sandbox: Sandbox | None = None,
) -> SandboxResult:
    """Run untrusted ``code`` in a limited subprocess (see the module docstring for what holds)."""
    return await (sandbox or Sandbox()).run(
        code,
        timeout_s=timeout_s,
        memory_mb=memory_mb,
        cpu_s=cpu_s,
        max_processes=max_processes,
        max_output_bytes=max_output_bytes,
        max_file_mb=max_file_mb,
        workdir=workdir,
        stdin=stdin,
    )


def run_python_sync(code: str, **limits: Any) -> SandboxResult:
    """``run_python`` for synchronous callers (not from inside a running event loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run_python(code, **limits))
    raise RuntimeError("run_python_sync was called inside a running event loop; await run_python instead")


async def _execute(
    prefix: list[str],
    python: str,
    cfg: dict[str, Any],
    *,
    timeout_s: float,
    max_output_bytes: int,
    stdin: str | None,
    uid: int | None,
    network_isolated: bool,
) -> SandboxResult:
    read_fd, write_fd = os.pipe()
    cfg["status_fd"] = write_fd
    cfg["python"] = python
    start = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *prefix,
            python,
            "-I",
            "-S",
            "-c",
            _BOOTSTRAP,
            json.dumps(cfg),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(write_fd,),
            start_new_session=True,
            env={"PATH": "/usr/bin:/bin"},
        )
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    timed_out = False
    assert proc.stdout is not None and proc.stderr is not None
    tasks: list[asyncio.Task[Any]] = [
        asyncio.create_task(_read_capped(proc.stdout, max_output_bytes)),
        asyncio.create_task(_read_capped(proc.stderr, max_output_bytes)),
    ]
    if stdin is not None:
        assert proc.stdin is not None
        tasks.append(asyncio.create_task(_feed(proc.stdin, stdin.encode())))
    try:
        try:
            async with asyncio.timeout(timeout_s):
                await proc.wait()
        except TimeoutError:
            timed_out = True
        _kill_group(proc.pid)
        if uid is not None:
            await asyncio.to_thread(_kill_uid, uid)
        # Once every writer is dead the pipes reach EOF; the bounds are only a backstop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await proc.wait()
        await asyncio.wait(tasks[:2], timeout=5)
    finally:
        _kill_group(proc.pid)
        for task in tasks:
            task.cancel()
        status = _read_status(read_fd)
    stdout, out_cut = _outcome(tasks[0])
    stderr, err_cut = _outcome(tasks[1])
    duration = time.monotonic() - start
    exit_code = -signal.SIGKILL if timed_out or status is None else status
    sig = -exit_code if exit_code < 0 else None
    err_text = stderr.decode("utf-8", "replace")
    last = err_text.strip().splitlines()[-1:] if err_text.strip() else []
    oom = bool(last and last[0].startswith("MemoryError")) or (sig == signal.SIGKILL and not timed_out)
    return SandboxResult(
        stdout=stdout.decode("utf-8", "replace"),
        stderr=err_text,
        exit_code=exit_code,
        timed_out=timed_out,
        killed_by_signal=sig,
        oom=oom,
        duration=duration,
        truncated=out_cut or err_cut,
        uid=uid,
        network_isolated=network_isolated,
    )


async def _read_capped(stream: asyncio.StreamReader, limit: int) -> tuple[bytes, bool]:
    # Keep draining past the cap so a chatty program never blocks on a full pipe.
    kept = bytearray()
    cut = False
    while chunk := await stream.read(65536):
        room = limit - len(kept)
        if len(chunk) > room:
            cut = True
        kept += chunk[: max(room, 0)]
    return bytes(kept), cut


async def _feed(pipe: asyncio.StreamWriter, data: bytes) -> None:
    # A program that exits without reading its input is not an error.
    with contextlib.suppress(ConnectionError):
        pipe.write(data)
        await pipe.drain()
        pipe.close()


def _outcome(task: asyncio.Task[Any]) -> tuple[bytes, bool]:
    if task.done() and not task.cancelled() and task.exception() is None:
        data, cut = task.result()
        return bytes(data), bool(cut)
    return b"", True


def _read_status(fd: int) -> int | None:
    try:
        os.set_blocking(fd, False)
        data = os.read(fd, 64)
    except OSError:
        data = b""
    finally:
        os.close(fd)
    try:
        return int(data.decode().strip())
    except ValueError:
        return None


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _pids_of_uid(uid: int, *, zombies: bool = False) -> list[int]:
    """Processes whose real uid is ``uid`` (zombies are dead already and skipped unless asked)."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status", encoding="ascii", errors="replace") as fh:
                head = dict(line.split(":", 1) for line in fh if ":" in line)
            if int(head["Uid"].split()[0]) == uid and (zombies or not head["State"].strip().startswith("Z")):
                pids.append(int(entry.name))
        except (OSError, ValueError, KeyError, IndexError):
            continue
    return pids


def _kill_uid(uid: int) -> None:
    # Rounds, because a process listed alive may fork once more before its SIGKILL lands.
    for _ in range(100):
        pids = _pids_of_uid(uid)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def _own_task_count() -> int:
    # RLIMIT_NPROC counts threads too, so sum them over this user's processes.
    uid, total = os.getuid(), 0
    for pid in _pids_of_uid(uid):
        with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Threads:"):
                    total += int(line.split()[1])
                    break
    return total


def _free_uid() -> int:
    rng = random.SystemRandom()
    for _ in range(20):
        uid = UID_BASE + rng.randrange(UID_SPAN)
        if not _pids_of_uid(uid, zombies=True):
            return uid
    raise ConfigError("could not find an unused uid for the sandbox", field="uid")


def _world_executable(path: str) -> bool:
    real = Path(os.path.realpath(path))
    try:
        if not real.stat().st_mode & stat.S_IXOTH:
            return False
        return all(parent.stat().st_mode & stat.S_IXOTH for parent in real.parents)
    except OSError:
        return False


def _chown_tree(top: Path, uid: int, gid: int) -> dict[str, tuple[int, int]]:
    owners: dict[str, tuple[int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            st = os.lstat(name)
            owners[name] = (st.st_uid, st.st_gid)
            # follow_symlinks=False: a link planted by the program must never redirect a chown.
            os.chown(name, uid, gid, follow_symlinks=False)
    return owners


def _cleanup(base: Path, uid: int | None, workdir: Path, owners: dict[str, tuple[int, int]]) -> None:
    if uid is not None:
        _kill_uid(uid)
    if owners:
        # Give a caller's workdir back; files the program created go to the directory's owner.
        default = owners[str(workdir)]
        for dirpath, dirnames, filenames in os.walk(workdir):
            for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
                owner = owners.get(name, default)
                with contextlib.suppress(OSError):
                    os.chown(name, owner[0], owner[1], follow_symlinks=False)
    shutil.rmtree(base, ignore_errors=True)
    if uid is not None:
        # After the chown-back above, so that a caller's workdir under /tmp keeps its files.
        for top in SHARED_WRITABLE:
            _sweep_uid(top, uid, budget=[_SWEEP_MAX_ENTRIES])


def _sweep_uid(directory: str, uid: int, *, budget: list[int], depth: int = 0) -> None:
    """Delete what ``uid`` owns under ``directory``, never following a symlink.

    The run's processes are dead by now, so nothing it owns changes under us. Only directories
    that others may write into are entered: the uid cannot have created anything elsewhere,
    except inside its own directories, which are removed whole.
    """
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        budget[0] -= 1
        if budget[0] < 0:
            return
        try:
            st = entry.stat(follow_symlinks=False)
            if st.st_uid == uid:
                if stat.S_ISDIR(st.st_mode):
                    shutil.rmtree(entry.path)  # lstat-based: links inside are removed, not followed
                else:
                    os.unlink(entry.path)
            elif stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_IWOTH and depth < _SWEEP_MAX_DEPTH:
                _sweep_uid(entry.path, uid, budget=budget, depth=depth + 1)
        except OSError:
            continue


def _check_limits(
    timeout_s: float, memory_mb: int, cpu_s: float | None, procs: int, out: int, file_mb: int
) -> None:
    for field_name, value in (
        ("timeout_s", timeout_s),
        ("memory_mb", memory_mb),
        ("max_processes", procs),
        ("max_output_bytes", out),
        ("max_file_mb", file_mb),
    ):
        if not value > 0:
            raise InvalidRequestError(f"{field_name} must be positive, got {value!r}", field=field_name)
    if cpu_s is not None and not cpu_s > 0:
        raise InvalidRequestError(f"cpu_s must be positive, got {cpu_s!r}", field="cpu_s")
    if memory_mb < 32:
        raise InvalidRequestError(
            "memory_mb must be at least 32 (the interpreter needs it)", field="memory_mb"
        )
