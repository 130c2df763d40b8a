"""Reading an OpenAI-compatible chat-completions SSE stream without building SDK objects.

The ``openai`` SDK turns every streamed chunk into pydantic models; at one chunk per token that
dominated the client-side CPU of a call (measured with cProfile against the loopback stub:
~18,000 Python calls per 16-token request, most of them in ``openai._models.construct``). The
backend only needs a few fields of each chunk, so it asks the SDK for the raw response and reads
the events here: ``data:`` lines are JSON-decoded into dicts and viewed as ``ChunkView``s. The
SDK still does everything else (requests, headers, HTTP status errors).

Shapes follow the SSE spec as OpenAI and vLLM use it: ``data:`` lines (joined if several) end an
event at a blank line, ``data: [DONE]`` ends the stream, and an error arrives either as an
``event: error`` or as a payload with an ``error`` object; both raise ``StreamBrokenError`` with
the server's message.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any


class StreamBrokenError(Exception):
    """A stream carried an error or a chunk of the wrong shape, or ended without a finish_reason."""


@dataclass(slots=True, frozen=True)
class ChunkView:
    """The parts of one streamed chunk the backend uses."""

    content: str
    #: (index, id, name, arguments piece) per tool-call delta.
    tool_calls: tuple[tuple[int, str | None, str | None, str | None], ...]
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None


async def sse_chunks(lines: AsyncIterable[str]) -> AsyncIterator[dict[str, Any]]:
    """The JSON payloads of an SSE stream's events, until ``[DONE]`` or the end of the body."""
    data: list[str] = []
    event = ""
    async for raw in lines:
        line = raw.rstrip("\r")
        if line:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "data":
                data.append(value)
            elif field == "event":
                event = value
            continue
        if not data:  # a blank line after comments or an empty event
            event = ""
            continue
        payload = "\n".join(data)
        data, kind, event = [], event, ""
        if payload.strip() == "[DONE]":
            return
        chunk = json.loads(payload)
        _raise_if_error(chunk, kind)
        yield chunk
    if data and "\n".join(data).strip() != "[DONE]":  # a last event without its blank line
        chunk = json.loads("\n".join(data))
        _raise_if_error(chunk, event)
        yield chunk


def _raise_if_error(chunk: Any, event: str) -> None:
    err = chunk.get("error") if isinstance(chunk, dict) else None
    if event == "error" or err is not None:
        message = err.get("message") if isinstance(err, dict) else err
        raise StreamBrokenError(f"the server sent an error: {message or chunk}")


def read_chunk(chunk: Any) -> ChunkView:
    """Extract what the backend uses from a decoded chunk; ``StreamBrokenError`` if malformed."""
    try:
        if not isinstance(chunk, dict):
            raise TypeError("a chunk must be a JSON object")
        content: Any = ""
        calls: list[tuple[int, str | None, str | None, str | None]] = []
        finish: Any = None
        choices = chunk.get("choices") or []
        if choices:
            choice = choices[0]
            finish = choice.get("finish_reason")
            delta = choice.get("delta") or {}
            content = delta.get("content") or ""
            for tc in delta.get("tool_calls") or []:
                fn = tc.get("function") or {}
                calls.append((int(tc.get("index") or 0), tc.get("id"), fn.get("name"), fn.get("arguments")))
        usage = chunk.get("usage") or {}
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if not isinstance(content, str) or (finish is not None and not isinstance(finish, str)):
            raise TypeError("content and finish_reason must be strings")
        return ChunkView(
            content=content,
            tool_calls=tuple(calls),
            finish_reason=finish,
            prompt_tokens=prompt if isinstance(prompt, int) else None,
            completion_tokens=completion if isinstance(completion, int) else None,
        )
    except (AttributeError, TypeError, ValueError, IndexError) as exc:
        raise StreamBrokenError(f"malformed stream chunk: {exc}") from exc
