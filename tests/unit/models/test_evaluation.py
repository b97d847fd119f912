"""The NAB scorer (models.evaluation) and ``incidents evaluate``."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from incidents.cli import main
from models.evaluation import (
    LabelledFile,
    Profile,
    load_corpus,
    load_profiles,
    match_scores,
    read_scores_dir,
    run_detector,
    score_corpus,
    sigma,
)
from models.scoring import score_csv

NAB = Path(__file__).resolve().parents[3].parent / "shared" / "nab"
STANDARD = Profile("standard", 1.0, 0.11, 1.0)
LOW_FP = Profile("reward_low_FP_rate", 1.0, 0.22, 1.0)
LOW_FN = Profile("reward_low_FN_rate", 1.0, 0.11, 2.0)
PROFILES = [STANDARD, LOW_FP, LOW_FN]
START = datetime(2020, 1, 1)


# --- the published numbers on the shared NAB subset -------------------------------------------


@pytest.fixture(scope="module")
def nab_corpus() -> list[LabelledFile]:
    if not (NAB / "reference").is_dir():
        pytest.skip(f"the NAB development set is not at {NAB}")
    return load_corpus(NAB / "data", NAB / "labels" / "windows.json")


@pytest.mark.parametrize(
    ("detector", "expected"),
    [
        ("numenta", {"standard": 66.59, "reward_low_FP_rate": 60.81, "reward_low_FN_rate": 71.06}),
        (
            "windowedGaussian",
            {"standard": 21.97, "reward_low_FP_rate": 4.87, "reward_low_FN_rate": 29.80},
        ),
    ],
)
def test_reference_detectors_score_the_published_numbers(
    nab_corpus: list[LabelledFile], detector: str, expected: dict[str, float]
) -> None:
    profiles = load_profiles(NAB / "labels" / "profiles.json")
    assert [p.name for p in profiles] == list(expected)
    scores = match_scores(nab_corpus, read_scores_dir(NAB / "reference" / detector))
    result = score_corpus(nab_corpus, scores, profiles)
    got = {name: score.normalised for name, score in result.profiles.items()}
    print(detector, {name: round(value, 2) for name, value in got.items()})
    assert round(got["standard"], 2) == expected["standard"]  # README
    for name, value in got.items():
        assert math.isfinite(value) and 0.0 < value < 100.0
        # The other two profiles: what this scorer gives (checked against a line-by-line port of
        # NAB's sweeper while writing it).
        assert round(value, 2) == expected[name]
    assert result.scored_windows == 55
    standard = result["standard"]
    assert standard.null == -55.0 and standard.perfect == 55.0
    assert standard.raw == pytest.approx(sum(f.score for f in standard.files))


def test_a_detector_that_never_fires_scores_zero(nab_corpus: list[LabelledFile]) -> None:
    result = score_corpus(nab_corpus, {f.name: np.zeros(f.rows) for f in nab_corpus}, PROFILES)
    for score in result.profiles.values():
        assert score.normalised == 0.0
        assert score.threshold > 1.0  # nothing fires
        assert (score.tp, score.fp, score.fn) == (0, 0, 55)


# --- the rules on a tiny synthetic corpus -----------------------------------------------------
#
# 100 rows: probation = rows 0..14; windows rows 40..49 (width 10) and 80..84 (width 5).

ROWS = 100
WINDOWS = ((40, 49), (80, 84))


def labelled(
    name: str = "cat/a.csv", rows: int = ROWS, windows: tuple[tuple[int, int], ...] = WINDOWS
) -> LabelledFile:
    stamps = np.array([timestamp_ns(i) for i in range(rows)], dtype=np.int64)
    return LabelledFile(name, stamps, np.zeros(rows), windows)


def timestamp(i: int) -> str:
    return (START + timedelta(minutes=5 * i)).strftime("%Y-%m-%d %H:%M:%S")


def timestamp_ns(i: int) -> int:
    return int((START + timedelta(minutes=5 * i) - datetime(1970, 1, 1)).total_seconds()) * 10**9


def fires_at(*rows: int, n: int = ROWS) -> np.ndarray:
    scores = np.zeros(n)
    scores[list(rows)] = 1.0
    return scores


def raw_at_one(f: LabelledFile, scores: np.ndarray, profile: Profile = STANDARD) -> float:
    """The raw score with detections at ``scores >= 1``."""
    result = score_corpus([f], {f.name: scores}, [profile], threshold=1.0)[profile.name]
    return result.files[0].score


def tp_reward(row: int, left: int, right: int) -> float:
    return float(sigma(-(right - row + 1) / (right - left + 1)) / sigma(-1.0))


MISSES = -2.0  # both windows missed, standard profile


def test_sigma_is_nabs_scaled_sigmoid() -> None:
    assert float(sigma(0.0)) == 0.0
    assert float(sigma(-1.0)) == pytest.approx(0.98661, abs=1e-5)
    assert float(sigma(-0.5)) == pytest.approx(0.84828, abs=1e-5)
    assert float(sigma(1.0)) == pytest.approx(-0.98661, abs=1e-5)


def test_detections_in_the_probationary_period_count_for_nothing() -> None:
    f = labelled()
    assert f.probation == 15
    assert raw_at_one(f, fires_at(0, 7, 14)) == MISSES
    assert raw_at_one(f, fires_at(15)) == pytest.approx(MISSES - 0.11)
    assert labelled(rows=10_000, windows=()).probation == 750


def test_a_window_inside_the_probationary_period_is_not_scored() -> None:
    f = labelled(windows=((5, 9), *WINDOWS))
    result = score_corpus([f], {f.name: fires_at(40, 80)}, [STANDARD])["standard"]
    assert (result.null, result.perfect, result.raw) == (-2.0, 2.0, 2.0)
    assert (result.tp, result.fn) == (2, 0)
    # It still precedes the rows after it: a false positive at row 20 is 11 rows past its end.
    assert raw_at_one(f, fires_at(20)) == pytest.approx(MISSES + 0.11 * float(sigma(11 / 4)))


def test_only_the_earliest_detection_in_a_window_counts() -> None:
    f = labelled()
    assert raw_at_one(f, fires_at(40)) == pytest.approx(1.0 - 1.0)
    early = tp_reward(42, 40, 49)
    assert raw_at_one(f, fires_at(42)) == pytest.approx(early - 1.0)
    assert raw_at_one(f, fires_at(42, 43, 47, 49)) == pytest.approx(early - 1.0)
    late = tp_reward(49, 40, 49)
    assert 0.0 < late < tp_reward(47, 40, 49) < early < 1.0
    assert raw_at_one(f, fires_at(49)) == pytest.approx(late - 1.0)


def test_a_missed_window_costs_the_fn_weight() -> None:
    f = labelled()
    assert raw_at_one(f, fires_at(80)) == pytest.approx(-1.0 + 1.0)
    assert raw_at_one(f, fires_at(80), LOW_FN) == pytest.approx(-2.0 + 1.0)
    assert raw_at_one(f, np.zeros(ROWS), LOW_FN) == -4.0


def test_a_false_positive_costs_less_the_closer_it_follows_a_window() -> None:
    f = labelled()
    costs = {row: MISSES - raw_at_one(f, fires_at(row)) for row in (50, 52, 60, 70, 76, 77)}
    assert costs[52] == pytest.approx(-0.11 * float(sigma(3 / 9)))  # p = rows past / (width - 1)
    assert 0.0 < costs[50] < costs[52] < costs[60] < costs[70] < costs[76] < 0.11
    assert costs[77] == pytest.approx(0.11)  # p > 3
    assert MISSES - raw_at_one(f, fires_at(90)) == pytest.approx(-0.11 * float(sigma(6 / 4)))
    assert MISSES - raw_at_one(f, fires_at(50), LOW_FP) == pytest.approx(2 * costs[50])


def test_a_false_positive_before_any_window_costs_the_fp_weight() -> None:
    f = labelled()
    assert raw_at_one(f, fires_at(15, 30, 39)) == pytest.approx(MISSES - 3 * 0.11)
    assert raw_at_one(f, fires_at(30), LOW_FP) == pytest.approx(MISSES - 0.22)


def test_a_false_positive_after_a_one_row_window_costs_the_fp_weight() -> None:
    f = labelled(windows=((40, 40),))
    assert raw_at_one(f, fires_at(41)) == pytest.approx(-1.0 - 0.11)


def brute_force_raw(
    files: list[LabelledFile], scores: dict[str, np.ndarray], threshold: float, profile: Profile
) -> float:
    """The raw score at one threshold, row by row, as NAB's sweeper walks a file."""
    total = 0.0
    for f in files:
        for left, right in f.windows:
            if right < f.probation:
                continue
            rows = range(max(left, f.probation), right + 1)
            hits = [i for i in rows if scores[f.name][i] >= threshold]
            if hits:
                total += profile.tp_weight * tp_reward(hits[0], left, right)
            else:
                total -= profile.fn_weight
        for i in range(f.probation, f.rows):
            inside = any(left <= i <= right for left, right in f.windows)
            if inside or scores[f.name][i] < threshold:
                continue
            before = [w for w in f.windows if w[1] < i]
            previous = before[-1] if before else None
            if previous is None or previous[1] == previous[0]:
                total -= profile.fp_weight
            else:
                p = (i - previous[1]) / (previous[1] - previous[0])
                total += profile.fp_weight * (-1.0 if p > 3 else float(sigma(p)))
    return total


def test_the_threshold_maximises_the_corpus_score() -> None:
    a = labelled("cat/a.csv")
    b = labelled("cat/b.csv", rows=60, windows=((30, 35),))
    scores = {a.name: np.zeros(ROWS), b.name: np.zeros(60)}
    scores[a.name][[44, 20, 82, 60, 61, 62]] = [0.9, 0.8, 0.7, 0.6, 0.6, 0.6]
    scores[b.name][[31, 50, 51]] = [0.7, 0.65, 0.65]
    files = [a, b]
    result = score_corpus(files, scores, PROFILES)
    for name, score in result.profiles.items():
        profile = next(p for p in PROFILES if p.name == name)
        candidates = [1.1, 0.9, 0.8, 0.7, 0.65, 0.6, 0.0]
        raws = {t: brute_force_raw(files, scores, t, profile) for t in candidates}
        best = max(raws.values())
        assert score.raw == pytest.approx(best)
        assert score.threshold == max(t for t, raw in raws.items() if raw == pytest.approx(best))
    # Standard: 0.7 catches all three windows for one false positive (0.8 at row 20).
    assert result["standard"].threshold == 0.7
    assert [(f.tp, f.fp, f.fn) for f in result["standard"].files] == [(2, 1, 0), (1, 0, 0)]


def test_the_sweep_agrees_with_brute_force_at_the_chosen_threshold_on_random_scores() -> None:
    rng = np.random.default_rng(3)
    files = [
        labelled("x/a.csv"),
        labelled("x/b.csv", rows=80, windows=((20, 22), (50, 59))),
        labelled("x/c.csv", rows=40, windows=()),
    ]
    for _ in range(20):
        scores = {f.name: np.round(rng.random(f.rows) ** 4, 2) for f in files}
        result = score_corpus(files, scores, PROFILES)
        for profile in PROFILES:
            score = result[profile.name]
            assert score.raw == pytest.approx(
                brute_force_raw(files, scores, score.threshold, profile)
            )
            assert score.raw == pytest.approx(sum(f.score for f in score.files))
            for t in np.unique(np.concatenate(list(scores.values()))):
                assert brute_force_raw(files, scores, t, profile) <= score.raw + 1e-9


def test_ties_go_to_the_higher_threshold() -> None:
    f = labelled()
    scores = np.zeros(ROWS)
    scores[[40, 80]] = 0.9
    scores[[41, 81]] = 0.5  # later rows of detected windows: same score at 0.5
    result = score_corpus([f], {f.name: scores}, [STANDARD])["standard"]
    assert result.threshold == 0.9


def test_normalisation_perfect_is_100_and_null_is_0() -> None:
    a, b = labelled("c/a.csv"), labelled("c/b.csv", rows=60, windows=((30, 35),))
    perfect = {a.name: fires_at(40, 80), b.name: fires_at(30, n=60)}
    for profile in PROFILES:
        score = score_corpus([a, b], perfect, [profile])[profile.name]
        assert score.perfect == 3 * profile.tp_weight
        assert score.null == -3 * profile.fn_weight
        assert score.normalised == pytest.approx(100.0)
        assert (score.tp, score.fp, score.fn) == (3, 0, 0)
    for constant in (0.0, 0.5, 1.0):
        null = {a.name: np.full(ROWS, constant), b.name: np.full(60, constant)}
        score = score_corpus([a, b], null, [STANDARD])["standard"]
        assert score.normalised == 0.0
        assert score.threshold == 1.1


def test_a_corpus_without_windows_cannot_be_normalised() -> None:
    f = labelled(windows=())
    with pytest.raises(ValueError, match="no labelled window"):
        score_corpus([f], {f.name: np.zeros(ROWS)}, [STANDARD])


# --- files, the detector and the CLI ----------------------------------------------------------


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def series_values(n: int, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    values = 20.0 + 5.0 * np.sin(np.arange(n) / 9.0) + rng.normal(0.0, 0.5, n)
    values[n - 40] += 25.0
    return values.tolist()


SYNTHETIC = {"cat/a.csv": (300, [(250, 269)]), "cat/b.csv": (200, [(120, 129), (170, 179)])}


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    """data/, labels/ (windows.json, profiles.json), and results/perfect/ with perfect scores."""
    labels = {}
    for seed, (name, (n, windows)) in enumerate(SYNTHETIC.items()):
        values = series_values(n, seed)
        write_csv(
            tmp_path / "data" / name,
            "timestamp,value",
            [f"{timestamp(i)},{values[i]!r}" for i in range(n)],
        )
        labels[name] = [[timestamp(left), timestamp(right) + ".000000"] for left, right in windows]
        starts = {left for left, _ in windows}
        category, file_name = name.split("/")
        write_csv(
            tmp_path / "results" / "perfect" / category / f"perfect_{file_name}",
            "timestamp,value,anomaly_score",
            [f"{timestamp(i)},{values[i]!r},{float(i in starts)}" for i in range(n)],
        )
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "windows.json").write_text(json.dumps(labels))
    profiles = {
        p.name: {
            "CostMatrix": {
                "tpWeight": p.tp_weight,
                "fpWeight": p.fp_weight,
                "fnWeight": p.fn_weight,
                "tnWeight": 1.0,
            }
        }
        for p in PROFILES
    }
    (tmp_path / "labels" / "profiles.json").write_text(json.dumps(profiles))
    return tmp_path


def test_load_corpus_maps_window_timestamps_to_rows(corpus_dir: Path) -> None:
    files = load_corpus(corpus_dir / "data", corpus_dir / "labels" / "windows.json")
    assert [(f.name, f.rows, f.windows) for f in files] == [
        ("cat/a.csv", 300, ((250, 269),)),
        ("cat/b.csv", 200, ((120, 129), (170, 179))),
    ]
    assert [p.name for p in load_profiles(corpus_dir / "labels" / "profiles.json")] == [
        "standard",
        "reward_low_FP_rate",
        "reward_low_FN_rate",
    ]


def test_read_scores_dir_accepts_prefixed_and_plain_names(corpus_dir: Path) -> None:
    prefixed = read_scores_dir(corpus_dir / "results" / "perfect")
    assert sorted(prefixed) == ["cat/a.csv", "cat/b.csv"]
    assert sorted(read_scores_dir(corpus_dir / "results", "perfect")) == sorted(prefixed)
    plain = corpus_dir / "plain" / "cat" / "a.csv"
    plain.parent.mkdir(parents=True)
    plain.write_bytes((corpus_dir / "results" / "perfect" / "cat" / "perfect_a.csv").read_bytes())
    assert sorted(read_scores_dir(corpus_dir / "plain")) == ["cat/a.csv"]


def test_run_detector_gives_the_scores_of_incidents_score(corpus_dir: Path) -> None:
    files = load_corpus(corpus_dir / "data", corpus_dir / "labels" / "windows.json")
    lines: list[str] = []
    scores = run_detector(files, progress=lines.append, workers=2)
    assert len(lines) == 2
    assert all(
        re.fullmatch(r"\[[12]/2\] cat/(a|b)\.csv: [23]00 rows in [0-9.]+ s", s) for s in lines
    )
    target = corpus_dir / "scored.csv"
    score_csv(corpus_dir / "data" / "cat" / "b.csv", target)
    expected = [float(line.split(",")[2]) for line in target.read_text().splitlines()[1:]]
    assert np.allclose(scores["cat/b.csv"], expected, atol=1e-6)
    assert all(((s >= 0) & (s <= 1)).all() for s in scores.values())


def evaluate(corpus_dir: Path, *extra: str) -> list[str]:
    return [
        "evaluate",
        "--data",
        str(corpus_dir / "data"),
        "--labels",
        str(corpus_dir / "labels" / "windows.json"),
        *extra,
    ]


def test_cli_scores_result_csvs(corpus_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = corpus_dir / "out.json"
    argv = evaluate(corpus_dir, "--scores", str(corpus_dir / "results" / "perfect"))
    assert main([*argv, "--output", str(output)]) == 0
    table = capsys.readouterr().out
    for name in ("standard", "reward_low_FP_rate", "reward_low_FN_rate"):
        line = next(line for line in table.splitlines() if line.startswith(name))
        assert line.split()[1] == "100.00"
    assert "TP 3 and FN 0 of 3 windows, FP 0" in table
    report = json.loads(output.read_text())
    assert report["detector"] == "perfect"
    assert report["profiles"]["standard"]["score"] == pytest.approx(100.0)
    assert report["profiles"]["standard"]["files"]["cat/b.csv"] == {
        "tp": 2,
        "fp": 0,
        "fn": 0,
        "score": pytest.approx(2.0),
    }
    assert (
        main(evaluate(corpus_dir, "--scores", str(corpus_dir / "results"), "--detector", "perfect"))
        == 0
    )
    assert "100.00" in capsys.readouterr().out


def test_cli_runs_the_project_detector(
    corpus_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(evaluate(corpus_dir)) == 0
    captured = capsys.readouterr()
    rows = [line.split() for line in captured.out.splitlines()[2:5]]
    assert [row[0] for row in rows] == ["standard", "reward_low_FP_rate", "reward_low_FN_rate"]
    assert all(math.isfinite(float(row[1])) and float(row[1]) <= 100.0 for row in rows)
    assert "[2/2] cat/" in captured.err


def break_file(corpus_dir: Path, what: str) -> list[str]:
    data, labels = corpus_dir / "data", corpus_dir / "labels"
    if what == "data dir":
        return evaluate(corpus_dir / "nowhere")
    if what == "labels file":
        (labels / "windows.json").unlink()
    elif what == "profiles file":
        (labels / "profiles.json").unlink()
    elif what == "labels entry":
        write_csv(data / "cat" / "c.csv", "timestamp,value", [f"{timestamp(0)},1.0"])
    elif what == "value":
        text = (data / "cat" / "a.csv").read_text().splitlines()
        text[5] = f"{timestamp(4)},abc"
        (data / "cat" / "a.csv").write_text("\n".join(text) + "\n")
    elif what == "header":
        (data / "cat" / "a.csv").write_text("time,val\n1,2\n")
    elif what == "window":
        windows = json.loads((labels / "windows.json").read_text())
        off_grid = (START + timedelta(minutes=5 * 250 + 1)).isoformat(sep=" ")
        windows["cat/a.csv"] = [[off_grid, timestamp(269)]]
        (labels / "windows.json").write_text(json.dumps(windows))
    elif what == "scores dir":
        return evaluate(corpus_dir, "--scores", str(corpus_dir / "nowhere"))
    elif what == "result rows":
        path = corpus_dir / "results" / "perfect" / "cat" / "perfect_a.csv"
        path.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")
        return evaluate(corpus_dir, "--scores", str(path.parents[1]))
    elif what == "result score":
        path = corpus_dir / "results" / "perfect" / "cat" / "perfect_a.csv"
        path.write_text(path.read_text().replace(",0.0\n", ",nan\n", 1))
        return evaluate(corpus_dir, "--scores", str(path.parents[1]))
    elif what == "detector":
        return evaluate(corpus_dir, "--detector", "perfect")
    return evaluate(corpus_dir, "--scores", str(corpus_dir / "results" / "perfect"))


@pytest.mark.parametrize(
    ("what", "message"),
    [
        ("data dir", "data directory .*nowhere.* does not exist"),
        ("labels file", "labels file .*windows.json does not exist"),
        ("profiles file", "profiles file .*profiles.json does not exist"),
        ("labels entry", "data file cat/c.csv has no entry in .*windows.json"),
        ("value", "a.csv: line 6: value 'abc' is not a number"),
        ("header", "a.csv: line 1: header .* lacks column"),
        ("window", "labels entry 'cat/a.csv': window start .* is not a timestamp of the file"),
        ("scores dir", "scores directory .*nowhere does not exist"),
        ("result rows", "perfect_a.csv: 299 rows, but data file cat/a.csv has 300"),
        ("result score", "perfect_a.csv: line 2: anomaly_score 'nan' is not a finite number"),
        ("detector", "--detector names the result files of --scores"),
    ],
)
def test_cli_errors_are_one_line_and_exit_2(
    corpus_dir: Path, capsys: pytest.CaptureFixture[str], what: str, message: str
) -> None:
    assert main(break_file(corpus_dir, what)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    error = captured.err.strip()
    assert "\n" not in error
    assert error.startswith("incidents evaluate: ")
    assert re.search(message, error), error
