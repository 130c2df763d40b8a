"""The SSE reader under the openai backend: event framing, [DONE], error events, chunk shapes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from aios.backends.openai_stream import StreamBrokenError, read_chunk, sse_chunks


async def lines(*items: str) -> AsyncIterator[str]:
    for item in items:
        yield item


async def collect(*items: str) -> list[object]:
    return [chunk async for chunk in sse_chunks(lines(*items))]


async def test_events_end_at_blank_lines_and_comments_and_done_are_handled():
    got = await collect(
        ": keep-alive comment",
        "",
        'data: {"a": 1}',
        "",
        'data: {"b":',  # one event's data split over two lines is joined with a newline
        "data: 2}",
        "",
        "data: [DONE]",
        "",
        'data: {"after": "done"}',
        "",
    )
    assert got == [{"a": 1}, {"b": 2}]


async def test_a_last_event_without_its_blank_line_still_counts():
    assert await collect('data: {"a": 1}\r') == [{"a": 1}]


@pytest.mark.parametrize(
    "items",
    [
        ("event: error", 'data: {"message": "overloaded"}', ""),
        ('data: {"error": {"message": "overloaded"}}', ""),
    ],
)
async def test_an_error_event_or_payload_raises_with_the_servers_message(items: tuple[str, ...]):
    with pytest.raises(StreamBrokenError, match="overloaded"):
        await collect('data: {"ok": true}', "", *items)


def test_a_chunk_is_read_into_its_content_tool_calls_finish_and_usage():
    chunk = {
        "choices": [
            {
                "delta": {
                    "content": "hi",
                    "tool_calls": [{"index": 1, "id": "c", "function": {"name": "f", "arguments": "{"}}],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
    }
    view = read_chunk(chunk)
    assert (view.content, view.finish_reason) == ("hi", "tool_calls")
    assert (view.prompt_tokens, view.completion_tokens) == (3, 2)
    assert view.tool_calls == ((1, "c", "f", "{"),)
    assert read_chunk({"choices": []}).content == ""


@pytest.mark.parametrize("bad", [[1], {"choices": ["x"]}, {"choices": [{"delta": {"content": 5}}]}])
def test_a_chunk_of_the_wrong_shape_is_a_broken_stream(bad: object):
    with pytest.raises(StreamBrokenError, match="malformed"):
        read_chunk(bad)
