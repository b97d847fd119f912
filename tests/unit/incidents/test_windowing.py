import math
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from incidents.schemas import MetricPoint, PartialAggregate, WindowAggregate
from incidents.windowing import WindowBook, combine_points, shard_of, window_start

S = 1_000_000_000
W = 60 * S


def point(value: float, ts_s: float, host: str = "a", field: str = "usage") -> MetricPoint:
    return MetricPoint("cpu", (("host", host),), field, value, int(ts_s * S))


def partial(series: str, value: float, ts_s: float) -> PartialAggregate:
    ts = int(ts_s * S)
    return PartialAggregate.of_point(series, "default", window_start(ts, W), value, ts)


def test_window_start_floors_to_the_window():
    assert window_start(0, W) == 0
    assert window_start(59 * S, W) == 0
    assert window_start(60 * S, W) == W
    assert window_start(125 * S, W) == 2 * W


def test_combiner_folds_points_of_one_series_and_window_into_one_partial():
    points = [point(1.0, 0), point(3.0, 10), point(5.0, 70), point(7.0, 5, host="b")]
    by_shard = combine_points(points, W, shards=8)
    partials = [p for ps in by_shard.values() for p in ps]
    assert len(partials) == 3
    first = next(p for p in partials if p.series == "cpu,host=a usage" and p.window_start_ns == 0)
    assert first.count == 2 and first.mean == 2.0 and first.last == 3.0
    for shard, ps in by_shard.items():
        assert all(shard_of(p.series, 8) == shard for p in ps)


def test_shard_is_stable_and_in_range():
    assert shard_of("cpu,host=a usage", 64) == shard_of("cpu,host=a usage", 64)
    assert 0 <= int(shard_of("x", 64)) < 64


@given(
    st.lists(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False), min_size=1, max_size=40),
    st.integers(min_value=1, max_value=39),
)
def test_partial_merge_equals_direct_statistics(values, cut):
    cut = min(cut, len(values))
    a = PartialAggregate.of_point("s", "default", 0, values[0], 0)
    for i, v in enumerate(values[1:cut], start=1):
        a.add(v, i)
    if cut < len(values):
        b = PartialAggregate.of_point("s", "default", 0, values[cut], cut)
        for i, v in enumerate(values[cut + 1 :], start=cut + 1):
            b.add(v, i)
        a.merge(b)
    agg = WindowAggregate.from_partial(a, W)
    assert agg.count == len(values)
    assert math.isclose(agg.mean, statistics.fmean(values), rel_tol=1e-9, abs_tol=1e-6)
    expected_std = statistics.stdev(values) if len(values) > 1 else 0.0
    assert math.isclose(agg.std, expected_std, rel_tol=1e-6, abs_tol=1e-3)
    assert agg.minimum == min(values) and agg.maximum == max(values)
    assert agg.last == values[-1]


def test_std_is_exact_for_large_counters():
    base = 1e12
    a = PartialAggregate.of_point("s", "default", 0, base + 1, 0)
    a.add(base + 2, 1)
    a.add(base + 3, 2)
    assert WindowAggregate.from_partial(a, W).std == pytest.approx(1.0)


def test_window_closes_when_series_passes_end_plus_lateness():
    book = WindowBook(W, lateness_ns=30 * S)
    s = "cpu,host=a usage"
    assert book.add([partial(s, 1.0, 0), partial(s, 2.0, 50)], 0).closed == []
    assert book.add([partial(s, 3.0, 80)], 0).closed == []  # 80 < 60 + 30
    result = book.add([partial(s, 4.0, 90)], 0)
    assert [a.window_start_ns for a in result.closed] == [0]
    assert result.closed[0].count == 2 and result.closed[0].mean == 1.5


def test_out_of_order_point_within_lateness_is_accepted():
    book = WindowBook(W, lateness_ns=30 * S)
    s = "cpu,host=a usage"
    book.add([partial(s, 1.0, 10), partial(s, 5.0, 70)], 0)
    result = book.add([partial(s, 3.0, 40)], 0)  # older than 70, but window 0 still open
    assert result.late_points == 0
    closed = book.add([partial(s, 0.0, 95)], 0).closed
    assert closed[0].count == 2 and closed[0].mean == 2.0 and closed[0].last == 3.0


def test_point_after_its_window_closed_is_late_and_dropped():
    book = WindowBook(W, lateness_ns=0)
    s = "cpu,host=a usage"
    book.add([partial(s, 1.0, 10)], 0)
    assert len(book.add([partial(s, 2.0, 61)], 0).closed) == 1
    late = book.add([partial(s, 99.0, 20)], 0)
    assert late.late_points == 1 and late.closed == []
    assert [a.mean for a in book.close_all()] == [2.0]


def test_idle_series_are_closed_on_wall_clock_and_later_points_are_late():
    book = WindowBook(W, lateness_ns=30 * S)
    quiet, busy = "cpu,host=a usage", "cpu,host=b usage"
    book.add([partial(quiet, 1.0, 10), partial(busy, 1.0, 10)], wall_ns=0)
    book.add([partial(busy, 2.0, 20)], wall_ns=50 * S)
    closed = book.close_idle(wall_ns=100 * S, idle_ns=90 * S)
    assert [a.series for a in closed] == [quiet]
    assert book.add([partial(quiet, 5.0, 15)], wall_ns=101 * S).late_points == 1


def test_close_all_flushes_every_open_window_in_order():
    book = WindowBook(W, lateness_ns=10 * W)
    s = "cpu,host=a usage"
    book.add([partial(s, 1.0, 130), partial(s, 1.0, 5), partial(s, 1.0, 65)], 0)
    assert [a.window_start_ns for a in book.close_all()] == [0, W, 2 * W]
    assert book.open_windows == 0


def test_invalid_window_configuration_is_refused():
    with pytest.raises(ValueError):
        WindowBook(0, 0)
    with pytest.raises(ValueError):
        WindowBook(W, -1)


def test_touch_all_keeps_restored_series_from_looking_idle():
    book = WindowBook(W, lateness_ns=0)
    book.add([partial("cpu,host=a usage", 1.0, 10)], wall_ns=0)
    book.touch_all(wall_ns=1_000 * S)
    assert book.close_idle(wall_ns=1_050 * S, idle_ns=90 * S) == []
    assert len(book.close_idle(wall_ns=1_100 * S, idle_ns=90 * S)) == 1
