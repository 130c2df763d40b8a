"""Read-only views of a repository at one commit, and the "does this patch apply" check, through git.

Nothing here checks a commit out: files are read from git's object store (``git show``,
``ls-tree``, ``grep`` at the commit) and a patch is checked against the commit's tree in a
temporary index (``GIT_INDEX_FILE`` + ``git apply --cached --check``), so the local clone's
working tree is never touched and many tasks can share one clone. Arguments go to git as an
argument list (no shell); every call has a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from aios.errors import ToolError

GIT_TIMEOUT_S = 60.0
MAX_LIST = 300
MAX_MATCHES = 60


@dataclass(frozen=True, slots=True)
class GitResult:
    """Exit status and output of one git command."""

    code: int
    stdout: str
    stderr: str


async def git(
    repo: Path,
    *args: str,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = GIT_TIMEOUT_S,
) -> GitResult:
    """Run ``git -C repo args...`` and wait at most ``timeout`` seconds."""
    proc = await asyncio.create_subprocess_exec(
        "git",
        "-C",
        str(repo),
        *args,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})},
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise ToolError(f"git {args[0]} took longer than {timeout:g} s", tool="git") from None
    return GitResult(proc.returncode or 0, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


@dataclass(frozen=True, slots=True)
class RepoAtCommit:
    """A local clone seen at ``commit``."""

    path: Path
    commit: str

    async def has_commit(self) -> bool:
        """Whether the clone has the commit."""
        r = await git(self.path, "cat-file", "-e", f"{self.commit}^{{commit}}")
        return r.code == 0

    async def list_files(self, prefix: str = "") -> list[str]:
        """Paths under ``prefix`` at the commit (at most ``MAX_LIST``)."""
        r = await git(self.path, "ls-tree", "-r", "--name-only", self.commit)
        if r.code != 0:
            raise ToolError(f"cannot list files: {r.stderr.strip()}", tool="list_files")
        prefix = prefix.strip().lstrip("./")
        return [p for p in r.stdout.splitlines() if p.startswith(prefix)][:MAX_LIST]

    async def read_file(self, path: str, start: int = 1, end: int | None = None) -> str:
        """Lines ``start``..``end`` (1-based, inclusive) of ``path`` at the commit, numbered."""
        if ".." in Path(path).parts or path.startswith("/"):
            raise ToolError(f"{path!r} is not a path inside the repository", tool="read_file")
        r = await git(self.path, "show", f"{self.commit}:{path.lstrip('./')}")
        if r.code != 0:
            raise ToolError(f"no file {path!r} at this commit", tool="read_file")
        lines = r.stdout.splitlines()
        start = max(1, start)
        stop = len(lines) if end is None else min(len(lines), end)
        return "\n".join(f"{i}: {lines[i - 1]}" for i in range(start, stop + 1))

    async def search(self, text: str) -> list[str]:
        """``path:line: text`` for lines containing ``text`` (fixed string) at the commit."""
        if not text:
            raise ToolError("search text must not be empty", tool="search")
        r = await git(self.path, "grep", "-n", "-I", "-F", "-e", text, self.commit)
        if r.code not in (0, 1):
            raise ToolError(f"search failed: {r.stderr.strip()}", tool="search")
        strip = f"{self.commit}:"
        return [line.removeprefix(strip) for line in r.stdout.splitlines()[:MAX_MATCHES]]

    async def patch_applies(self, patch: str) -> tuple[bool, str]:
        """Whether ``patch`` applies cleanly to the commit's tree; git's message if not."""
        if not patch.strip():
            return False, "the patch is empty"
        with tempfile.TemporaryDirectory(prefix="aios-swe-index-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            r = await git(self.path, "read-tree", self.commit, env=env)
            if r.code != 0:
                return False, f"cannot read the commit's tree: {r.stderr.strip()}"
            r = await git(self.path, "apply", "--cached", "--check", "-", stdin=patch, env=env)
        return r.code == 0, r.stderr.strip()
