"""Bytewax sources: simulator (pacing, backfill, EOF, resume) and file replay (EOF, resume)."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from pathlib import Path

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main

from connectors.replay import iter_replay_messages
from connectors.simulator import MetricsSimulator
from connectors.sources import ReplaySource, SimulatorSource, SimulatorState
from incidents.parsing import parse_message

NOW = 1_700_000_000_000_000_000
S = 1_000_000_000


class FakeClock:
    def __init__(self, now_ns: int = NOW) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns


def run_flow(source: object) -> list[bytes]:
    out: list[bytes] = []
    flow = Dataflow("test_sources")
    stream = op.input("in", flow, source)  # type: ignore[arg-type]
    op.output("out", stream, TestingSink(out))
    run_main(flow)
    return out


def simulator_source(**overrides: object) -> SimulatorSource:
    params: dict[str, object] = {
        "hosts": 2,
        "interval_s": 10.0,
        "speed": math.inf,
        "backfill_s": 100.0,
        "clock": FakeClock(),
    }
    params.update(overrides)
    return SimulatorSource(**params)  # type: ignore[arg-type]


def expected_messages(ticks: int, *, lines_per_message: int = 50) -> list[bytes]:
    sim = MetricsSimulator(hosts=2, start_ns=NOW - 100 * S, lines_per_message=lines_per_message)
    return [m for _ in range(ticks) for m in sim.tick()]


# --------------------------------------------------------------------------- simulator


def test_simulator_flow_emits_messages_and_max_ticks_ends_it() -> None:
    out = run_flow(simulator_source(max_ticks=3, lines_per_message=5))
    assert out == expected_messages(3, lines_per_message=5)
    assert len(out) == 3 * 3
    points = [p for m in out for p in parse_message(m).points]
    assert len(points) == 3 * 2 * 9


def test_simulator_flow_matches_the_simulator_tick_for_tick() -> None:
    assert run_flow(simulator_source(max_ticks=5)) == expected_messages(5)


def test_zero_max_ticks_ends_at_once() -> None:
    assert run_flow(simulator_source(max_ticks=0)) == []


def test_start_is_backfill_before_now_on_the_interval_grid() -> None:
    clock = FakeClock(NOW + 7 * S)
    state = simulator_source(backfill_s=60.0, clock=clock).initial_state()
    assert state.start_ns == NOW - 60 * S
    assert state.wall_anchor_ns == state.event_anchor_ns == NOW + 7 * S


def test_backfill_is_immediate_then_paced_by_next_awake() -> None:
    clock = FakeClock()
    source = simulator_source(speed=10.0, clock=clock, batch_messages=10_000)
    part = source.build_part("in", "simulator", None)
    backfill = part.next_batch()
    assert backfill == expected_messages(11)
    assert part.next_awake() == datetime.fromtimestamp((NOW + S) / S, tz=UTC)
    assert part.next_batch() == []
    clock.now_ns += S - 1
    assert part.next_batch() == []
    clock.now_ns += 1
    assert part.next_batch() == expected_messages(12)[11:]
    clock.now_ns += 5 * S
    assert len(part.next_batch()) == 5 * 1
    assert part.snapshot().next_tick == 17


def test_batches_hold_whole_ticks_up_to_batch_messages() -> None:
    part = simulator_source(batch_messages=3, lines_per_message=4).build_part("in", "s", None)
    assert len(part.next_batch()) == 3 * 1
    part = simulator_source(batch_messages=1, lines_per_message=5).build_part("in", "s", None)
    assert len(part.next_batch()) == 3


@pytest.mark.parametrize("speed", [0.0, -1.0, math.inf])
def test_speed_zero_negative_or_infinite_never_waits(speed: float) -> None:
    clock = FakeClock()
    part = simulator_source(speed=speed, clock=clock, batch_messages=1).build_part("in", "s", None)
    for _ in range(50):
        assert part.next_batch()
        assert part.next_awake() is None
    assert part.snapshot().next_tick == 50


def test_real_time_pacing_in_a_dataflow() -> None:
    started = time.monotonic()
    out = run_flow(
        SimulatorSource(hosts=1, interval_s=10.0, speed=400.0, backfill_s=0.0, max_ticks=4)
    )
    elapsed = time.monotonic() - started
    assert len(out) == 4
    assert elapsed >= 3 * 10.0 / 400.0 - 10.0 / 400.0 - 0.005


def test_simulator_resumes_from_its_snapshot() -> None:
    clock = FakeClock()
    source = simulator_source(batch_messages=1, clock=clock, anomaly_every_s=60.0, warmup_s=0.0)
    part = source.build_part("in", "simulator", None)
    uninterrupted = [part.next_batch() for _ in range(20)]

    first = source.build_part("in", "simulator", None)
    head = [first.next_batch() for _ in range(7)]
    state = first.snapshot()
    assert isinstance(state, SimulatorState)
    clock.now_ns += 3_600 * S
    resumed = source.build_part("in", "simulator", state)
    tail = [resumed.next_batch() for _ in range(13)]
    assert head + tail == uninterrupted


def test_simulator_snapshot_survives_pickle() -> None:
    import pickle

    part = simulator_source().build_part("in", "simulator", None)
    part.next_batch()
    state = part.snapshot()
    assert pickle.loads(pickle.dumps(state)) == state


def test_simulator_single_partition() -> None:
    assert simulator_source().list_parts() == ["simulator"]


@pytest.mark.parametrize(
    "overrides", [{"hosts": 0}, {"backfill_s": -1.0}, {"batch_messages": 0}, {"max_ticks": -1}]
)
def test_simulator_source_rejects_bad_parameters(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        simulator_source(**overrides)


# --------------------------------------------------------------------------- replay


def replay_file(tmp_path: Path) -> Path:
    lines = [f"cpu,host=h{i} v={i} {i}".encode() for i in range(23)]
    json_line = b'{"name":"j","fields":{"v":1},"timestamp":1}'
    path = tmp_path / "replay.lp"
    path.write_bytes(b"\n".join(lines[:10] + [json_line] + lines[10:]) + b"\n")
    return path


def test_replay_flow_emits_the_file_and_ends(tmp_path: Path) -> None:
    path = replay_file(tmp_path)
    out = run_flow(ReplaySource(path, batch_lines=4, batch_messages=2))
    assert out == list(iter_replay_messages(path, batch_lines=4))
    points = [p for m in out for p in parse_message(m).points]
    assert len(points) == 24


def test_replay_resumes_after_the_last_emitted_message(tmp_path: Path) -> None:
    path = replay_file(tmp_path)
    source = ReplaySource(path, batch_lines=4, batch_messages=2)
    everything = list(iter_replay_messages(path, batch_lines=4))
    part = source.build_part("in", source.list_parts()[0], None)
    head = part.next_batch() + part.next_batch()
    state = part.snapshot()
    part.close()
    resumed = source.build_part("in", source.list_parts()[0], state)
    tail: list[bytes] = []
    with pytest.raises(StopIteration):
        while True:
            tail += resumed.next_batch()
    assert head == everything[:4]
    assert head + tail == everything
    assert resumed.snapshot() == path.stat().st_size


def test_replay_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    source = ReplaySource(tmp_path / "absent.lp")
    with pytest.raises(FileNotFoundError, match="absent.lp"):
        source.build_part("in", source.list_parts()[0], None)
