"""The kernel's error hierarchy: every failure a caller can see is one of these.

Foreign exceptions (HTTP errors, llama.cpp errors, bugs in a policy) are translated into this
hierarchy at one boundary, the dispatcher, so a caller's future is always resolved with an
``AIOSError``; nobody hangs and nobody has to catch ``httpx`` or ``openai`` exceptions.
"""

from __future__ import annotations


class AIOSError(Exception):
    """Base of every error the kernel hands to a caller."""

    #: Whether the same request may succeed if sent again (used by retry logic and clients).
    retryable: bool = False

    def __init__(self, message: str, *, syscall_id: str | None = None, agent: str | None = None):
        super().__init__(message)
        self.message = message
        self.syscall_id = syscall_id
        self.agent = agent

    def __str__(self) -> str:
        where = []
        if self.agent:
            where.append(f"agent={self.agent}")
        if self.syscall_id:
            where.append(f"syscall={self.syscall_id}")
        return f"{self.message} ({', '.join(where)})" if where else self.message


class InvalidRequestError(AIOSError, ValueError):
    """A syscall, message list or argument is malformed; ``field`` names the offending part."""

    def __init__(self, message: str, *, field: str | None = None, **kw: str | None):
        super().__init__(message, **kw)
        self.field = field


class ConfigError(AIOSError, ValueError):
    """The kernel configuration is invalid; ``field`` names the offending setting."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


class UnknownBackendError(ConfigError):
    """A backend (core) or backend kind that is not registered was asked for."""


class KernelNotRunningError(AIOSError):
    """A syscall was submitted to a kernel that is not started or already stopped."""


class QueueFullError(AIOSError):
    """The kernel's queue is at its bound; the call was refused rather than queued forever."""

    retryable = True


class DeadlineExceededError(AIOSError, TimeoutError):
    """The syscall's deadline passed before it finished."""


class CancelledError(AIOSError):
    """The syscall was cancelled (by its caller or by kernel shutdown)."""


class BackendError(AIOSError):
    """The LLM backend failed; ``backend`` names it and ``status_code`` is the HTTP status if any."""

    def __init__(
        self,
        message: str,
        *,
        backend: str | None = None,
        status_code: int | None = None,
        retryable: bool = False,
        **kw: str | None,
    ):
        super().__init__(message, **kw)
        self.backend = backend
        self.status_code = status_code
        self.retryable = retryable


class RateLimitedError(BackendError):
    """The backend answered 429 (after the retries it was allowed)."""


class BackendTimeoutError(BackendError, TimeoutError):
    """The backend did not answer within the configured timeout."""


class StreamInterruptedError(BackendError):
    """A streaming response was cut before it finished."""


class KernelInternalError(AIOSError):
    """A bug inside the kernel (a policy or manager raised); the caller gets this instead of a hang."""


class AccessDeniedError(AIOSError, PermissionError):
    """The access manager refused the operation."""


class ToolError(AIOSError):
    """A tool raised, timed out or returned something unusable; ``tool`` names it."""

    def __init__(self, message: str, *, tool: str | None = None, **kw: str | None):
        super().__init__(message, **kw)
        self.tool = tool


class KeyNotFoundError(AIOSError, KeyError):
    """The key (or the asked version of it) does not exist or is deleted."""

    def __init__(
        self, message: str, *, owner: str, key: str, version: int | None = None, agent: str | None = None
    ):
        super().__init__(message, agent=agent)
        self.owner = owner
        self.key = key
        self.version = version


class StorageError(AIOSError):
    """The storage backend failed (I/O error, database locked past its timeout, closed store)."""

    def __init__(self, message: str, *, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable


class VersionConflictError(StorageError):
    """An append expected a head version that is no longer the head (another writer came first)."""

    def __init__(self, message: str, *, owner: str, key: str, expected: int, actual: int):
        super().__init__(message, retryable=True)
        self.owner = owner
        self.key = key
        self.expected = expected
        self.actual = actual


class MemoryEntryNotFoundError(InvalidRequestError, KeyError):
    """The agent has no memory entry with that id (``field`` is ``"entry_id"``)."""
