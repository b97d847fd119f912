"""File replay: turn a recorded file of metrics into the messages the metrics topic would carry.

The file holds InfluxDB line protocol (one point per line) and/or JSON lines (each line one
Telegraf JSON object or ``{"metrics": [...]}`` batch), decided line by line: a line whose first
non-blank byte is ``{`` is JSON. Consecutive line-protocol lines are joined into messages of up to
``batch_lines`` lines; every JSON line is a message of its own. Blank lines and ``#`` comments are
dropped. Nothing is parsed here: bad lines travel on and become dead letters downstream.
"""

from __future__ import annotations

import errno
from collections.abc import Generator, Iterator
from pathlib import Path


def _check_file(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "replay file not found", str(path))
    if not path.is_file():
        raise ValueError(f"replay path is not a regular file: {path}")


def _check_batch_lines(batch_lines: int) -> None:
    if batch_lines < 1:
        raise ValueError(f"batch_lines must be at least 1, got {batch_lines}")


def _chunks(
    path: Path, batch_lines: int, start_offset: int
) -> Generator[tuple[bytes, int], None, None]:
    with path.open("rb") as handle:
        handle.seek(start_offset)
        offset = start_offset
        pending: list[bytes] = []
        for raw in handle:
            offset += len(raw)
            line = raw.rstrip(b"\r\n")
            body = line.lstrip()
            if not body or body.startswith(b"#"):
                continue
            if body.startswith(b"{"):
                if pending:
                    yield b"\n".join(pending) + b"\n", offset - len(raw)
                    pending = []
                yield line, offset
                continue
            pending.append(line)
            if len(pending) >= batch_lines:
                yield b"\n".join(pending) + b"\n", offset
                pending = []
        if pending:
            yield b"\n".join(pending) + b"\n", offset


def iter_replay_chunks(
    path: Path, *, batch_lines: int = 500, start_offset: int = 0
) -> Generator[tuple[bytes, int], None, None]:
    """Messages of the file with the byte offset just after each one's last line.

    Reading again from that offset (``start_offset``) continues with the next message, which is
    how a replay resumes. Raises ``FileNotFoundError``/``ValueError`` (naming the path) at once.
    """
    path = Path(path)
    _check_file(path)
    _check_batch_lines(batch_lines)
    if start_offset < 0:
        raise ValueError(f"start_offset must not be negative, got {start_offset}")
    return _chunks(path, batch_lines, start_offset)


def iter_replay_messages(path: Path, *, batch_lines: int = 500) -> Iterator[bytes]:
    """The messages a replay of ``path`` produces (see the module docstring)."""
    return (message for message, _ in iter_replay_chunks(path, batch_lines=batch_lines))
