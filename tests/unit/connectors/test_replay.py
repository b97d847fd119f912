"""File replay: batching of line protocol, JSON lines as their own messages, resume offsets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.replay import iter_replay_chunks, iter_replay_messages
from incidents.parsing import parse_message


def write(tmp_path: Path, content: bytes, name: str = "metrics.lp") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def lp_lines(count: int) -> list[bytes]:
    return [f"cpu,host=h{i} v={i} {1000 + i}".encode() for i in range(count)]


def test_line_protocol_is_batched(tmp_path: Path) -> None:
    lines = lp_lines(7)
    path = write(tmp_path, b"\n".join(lines) + b"\n")
    messages = list(iter_replay_messages(path, batch_lines=3))
    assert messages == [
        b"\n".join(lines[0:3]) + b"\n",
        b"\n".join(lines[3:6]) + b"\n",
        lines[6] + b"\n",
    ]


def test_default_batch_is_500_lines(tmp_path: Path) -> None:
    path = write(tmp_path, b"\n".join(lp_lines(1001)))
    assert [m.count(b"\n") for m in iter_replay_messages(path)] == [500, 500, 1]


def test_json_lines_are_their_own_messages_and_keep_order(tmp_path: Path) -> None:
    single = json.dumps({"name": "mem", "fields": {"v": 1}, "timestamp": 1}).encode()
    batch = json.dumps({"metrics": [{"name": "disk", "fields": {"v": 2}, "timestamp": 2}]})
    a, b, c = lp_lines(3)
    content = b"\n".join([a, b, single, b"  " + batch.encode(), c])
    messages = list(iter_replay_messages(write(tmp_path, content), batch_lines=10))
    assert messages == [a + b"\n" + b + b"\n", single, b"  " + batch.encode(), c + b"\n"]
    measurements = [p.measurement for m in messages for p in parse_message(m).points]
    assert measurements == ["cpu", "cpu", "mem", "disk", "cpu"]


def test_blank_lines_comments_and_crlf(tmp_path: Path) -> None:
    a, b = lp_lines(2)
    content = b"# header\r\n\r\n" + a + b"\r\n   \n  # note\n" + b + b"\r\n"
    assert list(iter_replay_messages(write(tmp_path, content))) == [a + b"\n" + b + b"\n"]


def test_bad_lines_are_passed_on_for_the_dead_letter_queue(tmp_path: Path) -> None:
    content = b"cpu v=1 1\nthis is not line protocol\n{not json\n"
    messages = list(iter_replay_messages(write(tmp_path, content)))
    assert messages == [b"cpu v=1 1\nthis is not line protocol\n", b"{not json"]


def test_empty_file(tmp_path: Path) -> None:
    assert list(iter_replay_messages(write(tmp_path, b""))) == []


def test_missing_file_fails_at_once_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.lp"
    with pytest.raises(FileNotFoundError, match="nope.lp"):
        iter_replay_messages(missing)


def test_directory_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=str(tmp_path)):
        iter_replay_messages(tmp_path)


def test_batch_lines_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="batch_lines"):
        iter_replay_messages(write(tmp_path, b"cpu v=1"), batch_lines=0)


def test_resuming_from_any_offset_yields_exactly_the_rest(tmp_path: Path) -> None:
    lines = lp_lines(10)
    json_line = b'{"name":"j","fields":{"v":1}}'
    content = b"\n".join(lines[:4] + [b"", json_line, b"# c"] + lines[4:]) + b"\n"
    path = write(tmp_path, content)
    chunks = list(iter_replay_chunks(path, batch_lines=3))
    messages = [message for message, _ in chunks]
    assert chunks[-1][1] == len(content)
    for index, (_, offset) in enumerate(chunks):
        rest = [m for m, _ in iter_replay_chunks(path, batch_lines=3, start_offset=offset)]
        assert rest == messages[index + 1 :]
