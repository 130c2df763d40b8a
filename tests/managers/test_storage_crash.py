"""Acknowledged writes survive kill -9: a child writes in a loop, the parent kills it at random moments."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from aios.managers.storage import SQLiteStorage

pytestmark = pytest.mark.slow

KILLS = 20
OWNER = "crash"

# The child prints a line only after append() returned, i.e. after the commit: each line is an
# acknowledged write. Values vary in size so that a kill often lands inside a transaction.
CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from aios.managers.storage import SQLiteStorage

    def value(run, i):
        return f"{run}:{i}:".encode() + b"x" * ((i * 7919) % 20000)

    async def main(path, run):
        store = SQLiteStorage(path)
        i = 0
        while True:
            key = f"k{i % 37}"
            info = await store.append("crash", key, value(run, i), writer="child", time=float(i))
            sys.stdout.write(f"{key} {info.version} {run} {i}\\n")
            sys.stdout.flush()
            i += 1

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


def value(run: int, i: int) -> bytes:
    """The value the child writes at step ``i`` of ``run`` (same formula as the child)."""
    return f"{run}:{i}:".encode() + b"x" * ((i * 7919) % 20000)


def run_child_and_kill(script: Path, db: Path, run: int, rng: random.Random, stderr_path: Path) -> list[str]:
    """Start the writer, let it acknowledge a random number of writes, SIGKILL it; its output lines."""
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(script), str(db), str(run)], stdout=subprocess.PIPE, stderr=stderr
        )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        for _ in range(rng.randint(0, 60)):
            line = proc.stdout.readline().decode()
            if not line:
                break
            lines.append(line)
        # Half the kills come right after an acknowledgement, while the next write starts; the
        # others at a random moment up to a few writes later (or during start-up if no line was read).
        if rng.random() < 0.5:
            time.sleep(rng.uniform(0, 0.02))
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        # Everything printed before the kill was acknowledged too.
        lines += [line.decode() for line in proc.stdout.readlines()]
        proc.stdout.close()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, f"writer exited by itself: {stderr_path.read_text()}"
    # A line cut by the kill (no newline) was never fully announced; it is not counted.
    return [line for line in lines if line.endswith("\n")]


def check_database(db: Path, acked: dict[tuple[str, int], bytes]) -> None:
    """The file passes integrity_check and holds every acknowledged write, versions without gaps."""
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        if not acked:
            return
        rows = conn.execute("SELECT key, version, value FROM versions WHERE owner = ?", (OWNER,)).fetchall()
    finally:
        conn.close()
    stored = {(key, version): bytes(v) for key, version, v in rows}
    missing = [kv for kv in acked if kv not in stored]
    assert not missing, f"acknowledged writes lost: {missing[:5]}"
    wrong = [kv for kv, v in acked.items() if stored[kv] != v]
    assert not wrong, f"acknowledged writes changed: {wrong[:5]}"
    for key in {k for k, _ in stored}:
        assert sorted(v for k, v in stored if k == key) == list(
            range(1, 1 + sum(k == key for k, _ in stored))
        )


def test_acknowledged_writes_survive_repeated_kill_9(tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(CHILD)
    db = tmp_path / "crash.sqlite"
    rng = random.Random(0xA105)
    acked: dict[tuple[str, int], bytes] = {}
    kills_with_writes = 0
    for run in range(KILLS):
        lines = run_child_and_kill(script, db, run, rng, tmp_path / f"stderr{run}.txt")
        for line in lines:
            key, version, run_s, i = line.split()
            assert (key, int(version)) not in acked, f"version {version} of {key} acknowledged twice"
            acked[(key, int(version))] = value(int(run_s), int(i))
        kills_with_writes += bool(lines)
        check_database(db, acked)
    assert kills_with_writes >= KILLS // 2
    assert len(acked) >= 200

    async def read_back() -> list[bool]:
        async with SQLiteStorage(db) as store:
            found = [await store.get(OWNER, key, version) for key, version in sorted(acked)]
        return [f is not None and f[1] == acked[kv] for f, kv in zip(found, sorted(acked), strict=True)]

    # And through the backend's own API, after the last crash.
    assert all(asyncio.run(read_back()))
