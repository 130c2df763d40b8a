"""The llama.cpp side of the embedded backend: a loaded model and the token loop of one time slice.

Everything here runs in the backend's worker thread, never on the event loop. The loop is ours,
not ``Llama.generate``: we need to stop after any token, save the model state at the exact point
where resuming is bit-identical (a token sampled but not yet evaluated: sampling right after
``load_state`` diverges, see notes/local-models.md), and replay a grammar's progress on resume.

``llama_cpp`` is imported inside functions only, so ``import aios`` never loads the native library.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from aios.backends.base import SliceControl
from aios.backends.llamacpp_stream import StreamState, TextStream
from aios.errors import BackendError, InvalidRequestError

#: Used when a GGUF carries no chat template (ChatML, the most common convention).
FALLBACK_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}"
)


@dataclass(slots=True, frozen=True)
class LlamaCppSnapshotData:
    """The backend-private part of a snapshot: token ids, decoder state and (maybe) the KV cache."""

    prompt_ids: tuple[int, ...]
    #: Every generated token; the last one was sampled but not yet evaluated.
    generated_ids: tuple[int, ...]
    stream: StreamState
    #: llama.cpp sequence state (KV cache) of prompt + generated_ids[:-1]; None once downgraded.
    kv_state: bytes | None
    model_path: str

    @property
    def nbytes(self) -> int:
        """Approximate bytes held (the KV cache dominates: ~20 kB per token for SmolLM2-135M)."""
        ids = 4 * (len(self.prompt_ids) + len(self.generated_ids))
        return len(self.kv_state or b"") + ids + len(self.stream.text.encode()) + len(self.stream.pending)

    def downgrade(self) -> LlamaCppSnapshotData:
        """The same data without the KV cache: resumable by recomputation (context manager hook)."""
        return replace(self, kv_state=None)


@dataclass(slots=True)
class SliceJob:
    """Everything one time slice needs; built on the event loop, run in the worker thread."""

    prompt: str
    stream: TextStream
    control: SliceControl
    cancel: threading.Event
    emit: Callable[[str], None]
    max_tokens: int
    temperature: float
    seed: int
    grammar: str | None = None
    #: Resume: the prompt ids the snapshot was made for (checked against ``prompt``).
    prompt_ids: tuple[int, ...] | None = None
    #: Resume: generated ids to continue from; None with ``resume_text`` set means re-tokenize it.
    generated_ids: tuple[int, ...] | None = None
    resume_text: str | None = None
    kv_state: bytes | None = None
    n_generated: int = 0


@dataclass(slots=True)
class SliceOutcome:
    """What one slice did: its end (None when cut), the new tokens, and the state to resume from."""

    finish: Literal["stop", "length"] | None
    prompt_ids: tuple[int, ...]
    generated_ids: list[int]
    n_generated: int
    new_tokens: int = 0
    prompt_evaluated: int = 0
    recomputed: int = 0
    kv_state: bytes | None = None
    cancelled: bool = False
    segment: list[str] = field(default_factory=list)


class LoadedModel:
    """A llama.cpp model and context; one slice at a time runs on it (``lock``)."""

    def __init__(self, llm: Any, *, model_path: str, backend: str):
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.llm = llm
        self.model_path = model_path
        self.backend = backend
        # llama.cpp may round the context up; Llama's own buffers keep the size asked for.
        self.n_ctx: int = min(llm.n_ctx(), len(llm.input_ids))
        self.vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self.lock = threading.Lock()
        eos, bos = llm.token_eos(), llm.token_bos()
        self.bos_text = self._token_text(bos)
        template = llm.metadata.get("tokenizer.chat_template") or FALLBACK_TEMPLATE
        self.formatter = Jinja2ChatFormatter(
            template=template, eos_token=self._token_text(eos), bos_token=self.bos_text
        )
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self.vocab)) and bos != -1

    @classmethod
    def load(cls, *, model_path: str, n_ctx: int, n_threads: int, seed: int, backend: str) -> LoadedModel:
        """Load the GGUF (blocking: call from the worker thread)."""
        import llama_cpp

        llm = llama_cpp.Llama(
            model_path=model_path,
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            seed=seed,
            verbose=False,
        )
        return cls(llm, model_path=model_path, backend=backend)

    def close(self) -> None:
        """Free the model and context (waits for a running slice to end)."""
        with self.lock:
            self.llm.close()

    def render(self, messages: list[dict[str, str]]) -> str:
        """The prompt text for ``messages`` through the model's own chat template."""
        try:
            return self.formatter(messages=messages).prompt  # type: ignore[arg-type]
        except Exception as exc:  # jinja2 errors and the template's raise_exception
            raise InvalidRequestError(
                f"the model's chat template rejected the messages: {exc}", field="messages"
            ) from None

    def run_slice(self, job: SliceJob) -> SliceOutcome:
        """Run one time slice: prefill or restore, then sample until done, cut or cancelled."""
        with self.lock:
            return self._run_slice(job)

    def _run_slice(self, job: SliceJob) -> SliceOutcome:
        import llama_cpp

        llm = self.llm
        prompt_ids = tuple(self._tokenize(job.prompt, special=True))
        if len(prompt_ids) >= self.n_ctx:
            raise InvalidRequestError(
                f"the prompt is {len(prompt_ids)} tokens, more than the context of {self.n_ctx} "
                f"tokens (backend {self.backend!r}, n_ctx)",
                field="messages",
            )
        if job.prompt_ids is not None and job.prompt_ids != prompt_ids:
            raise InvalidRequestError(
                "the snapshot to resume was made for a different request", field="resume"
            )
        resuming = job.generated_ids is not None or job.resume_text is not None
        generated = list(job.generated_ids or ())
        if job.generated_ids is None and job.resume_text:
            generated = self._tokenize(job.resume_text, special=False, add_bos=False)
        out = SliceOutcome(None, prompt_ids, generated, job.n_generated)
        if job.kv_state is not None and generated:
            self._load_state(job.kv_state, [*prompt_ids, *generated[:-1]])
            to_eval = generated[-1:]
        else:
            llm.reset()
            to_eval = [*prompt_ids, *generated]
            if resuming:
                out.recomputed = len(to_eval)
            else:
                out.prompt_evaluated = len(prompt_ids)
        chain = self._sampler(job, generated)
        piece = ctypes.create_string_buffer(256)
        try:
            while True:
                if job.cancel.is_set():
                    out.cancelled = True
                    return out
                if llm.n_tokens + len(to_eval) > self.n_ctx:
                    out.finish = "length"
                    return out
                llm.eval(to_eval)
                token = int(llama_cpp.llama_sampler_sample(chain, llm.ctx, -1))
                if llama_cpp.llama_vocab_is_eog(self.vocab, token):
                    out.finish = "stop"
                    return out
                generated.append(token)
                out.n_generated += 1
                out.new_tokens += 1
                delta = job.stream.feed(self._piece(token, piece))
                if delta:
                    out.segment.append(delta)
                    job.emit(delta)
                # Every token is counted, even the last; a yield request is honoured only mid-way.
                yield_now = job.control.tick()
                if job.stream.stopped:
                    out.finish = "stop"
                    return out
                if out.n_generated >= job.max_tokens:
                    out.finish = "length"
                    return out
                if yield_now:
                    # Cut here: `token` is sampled, not evaluated; resuming evaluates it first.
                    out.kv_state = self._save_state()
                    return out
                to_eval = [token]
        finally:
            llama_cpp.llama_sampler_free(chain)

    def _sampler(self, job: SliceJob, generated: list[int]) -> Any:
        import llama_cpp

        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        if job.grammar is not None:
            grammar = llama_cpp.llama_sampler_init_grammar(self.vocab, job.grammar.encode(), b"root")
            if not grammar:
                llama_cpp.llama_sampler_free(chain)
                raise BackendError("llama.cpp could not compile the output grammar", backend=self.backend)
            llama_cpp.llama_sampler_chain_add(chain, grammar)
        if job.temperature <= 0.0:
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
        else:
            for sampler in (
                llama_cpp.llama_sampler_init_top_k(40),
                llama_cpp.llama_sampler_init_top_p(0.95, 1),
                llama_cpp.llama_sampler_init_min_p(0.05, 1),
                llama_cpp.llama_sampler_init_temp(job.temperature),
                # Offset by progress so a resumed slice does not replay the same random draws.
                llama_cpp.llama_sampler_init_dist((job.seed + len(generated)) & 0xFFFFFFFF),
            ):
                llama_cpp.llama_sampler_chain_add(chain, sampler)
        # A grammar's position is a function of the tokens it accepted: replaying them makes a
        # constrained generation resumable after a cut (greedy and dist ignore accept).
        for token in generated:
            llama_cpp.llama_sampler_accept(chain, token)
        return chain

    def _tokenize(self, text: str, *, special: bool, add_bos: bool | None = None) -> list[int]:
        if add_bos is None:
            add_bos = self.add_bos and not (self.bos_text and text.startswith(self.bos_text))
        if not text:
            return []
        return list(self.llm.tokenize(text.encode(), add_bos=add_bos, special=special))

    def _piece(self, token: int, buf: ctypes.Array[ctypes.c_char]) -> bytes:
        import llama_cpp

        n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
        return buf.raw[:n]

    def _token_text(self, token: int) -> str:
        import llama_cpp

        if token < 0:
            return ""
        raw = llama_cpp.llama_vocab_get_text(self.vocab, token)
        return raw.decode("utf-8", errors="replace") if raw else ""

    def _save_state(self) -> bytes:
        import llama_cpp

        ctx = self.llm.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, 0)
        buf = (ctypes.c_uint8 * size)()
        n = llama_cpp.llama_state_seq_get_data(ctx, buf, size, 0)
        if n <= 0:
            raise BackendError("llama.cpp could not save the sequence state", backend=self.backend)
        return ctypes.string_at(buf, n)

    def _load_state(self, blob: bytes, ids: list[int]) -> None:
        import llama_cpp

        ctx = self.llm.ctx
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
        buf = (ctypes.c_uint8 * len(blob)).from_buffer_copy(blob)
        if llama_cpp.llama_state_seq_set_data(ctx, buf, len(blob), 0) != len(blob):
            raise BackendError("llama.cpp could not restore the sequence state", backend=self.backend)
        # Llama.eval appends at n_tokens and records the ids it evaluated: put both back.
        self.llm.n_tokens = len(ids)
        self.llm.input_ids[: len(ids)] = ids


def find_gguf(directory: str) -> str | None:
    """The first .gguf file (by name) in ``directory``, or None."""
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".gguf"))
    except OSError:
        return None
    return os.path.join(directory, names[0]) if names else None
