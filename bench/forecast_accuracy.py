"""Forecast accuracy and cost of ``models.forecasting.SeriesForecaster`` on the NAB series.

Per file, causal rolling origin: the forecaster selects its order on the first
``W = min(--warmup, n // 2)`` rows (``fit``), then learns every later row with ``update`` (refits
every ``refit_every`` rows, as in production). At every ``--every``-th origin ``o`` (``o = W - 1,
W - 1 + every, ...``, while ``o + max(h) < n``) it forecasts ``h`` steps from the rows ``<= o``
only, before it learns row ``o + 1``. Measures, per file and over files:

- ``mase_h``: MAE of the ``h``-step forecasts over the origins, divided by the in-sample MAE of the
  one-step seasonal-naive forecast over the warm-up rows, ``mean |y_i - y_{i-s}|``, ``s <= i < W``
  (Hyndman and Koehler 2006, as M4 scores it);
- ``rel_snaive_h``: MAE of the forecasts / MAE of the seasonal-naive forecast
  ``y_{o + h - s * ceil(h / s)}`` at the same origins and horizon (< 1: better than it);
- ``rel_naive_h``: the same against the naive forecast ``y_o`` (the seasonal naive with s = 1);
- ``coverage_h``: the share of targets inside the 95 % prediction interval;

where the season ``s`` is the period the forecaster found on the warm-up (declared or detected
by autocorrelation, ``SeriesForecaster.period``), or 1 when it found none. A file whose scale is 0
(a flat warm-up) has no MASE and is left out of its median and mean.

Cost, per series (file): order-selection time (once), refit time (per refit), update time of a
row that does not refit (median and p95 over the rows) and the amortised update cost (all update
time, refits included, per row), forecast time, pickled forecaster size; for comparison the cost
of statsmodels' own ``results.extend`` and ``results.append(refit=False)`` per row on the same
model. An extrapolation to 10,000 series follows from the medians and p95s.

    .venv/bin/python bench/forecast_accuracy.py            # all files, ~2 min on 2 cores

Prints a table and saves ``bench/results/forecast.json``.
"""

from __future__ import annotations

import os

# One BLAS thread per process: the state-space matrices are tiny, and OpenBLAS's thread pool made
# every fit about 10x slower here. Must be set before numpy is imported.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import pickle  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from models.forecasting import ForecasterConfig, SeriesForecaster  # noqa: E402
from models.scoring import parse_timestamp_ns, parse_value, read_rows  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
HORIZONS = (1, 12)
SERIES_TARGET = 10_000
COMPARE_EXTEND_ROWS = 40
COMPARE_APPEND_ROWS = 10


def read_series(path: Path) -> tuple[np.ndarray, np.ndarray]:
    values, times = [], []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for line, ts_text, value_text in read_rows(handle):
            values.append(parse_value(value_text, line))
            ns = parse_timestamp_ns(ts_text)
            times.append(math.nan if ns is None else ns / 1e9)
    return np.array(values), np.array(times)


def percentile(values: list[float], q: float) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.percentile(finite, q)) if finite else None


def evaluate_file(
    path: str, name: str, warmup: int, every: int, config: ForecasterConfig
) -> dict[str, Any]:
    warnings.simplefilter("ignore")
    y, times = read_series(Path(path))
    n = len(y)
    w = min(warmup, n // 2)
    horizon = max(HORIZONS)
    forecaster = SeriesForecaster(config)
    started = time.perf_counter()
    forecaster.fit(y[:w], times[:w])
    selection_s = time.perf_counter() - started
    spec_at_warmup = str(forecaster.spec) if forecaster.spec else forecaster.method
    s = forecaster.period if forecaster.period >= 2 else 1
    scale = float(np.mean(np.abs(y[s:w] - y[: w - s]))) if w > s else math.nan

    errors: dict[str, dict[int, list[float]]] = {
        key: {h: [] for h in HORIZONS} for key in ("model", "snaive", "naive")
    }
    covered: dict[int, list[bool]] = {h: [] for h in HORIZONS}
    update_us: list[float] = []
    forecast_us: list[float] = []
    update_total = 0.0
    refit_seconds: list[float] = []
    origins = 0
    for i in range(w, n):
        origin = i - 1
        if (origin - (w - 1)) % every == 0 and origin + horizon < n:
            origins += 1
            started = time.perf_counter()
            forecast = forecaster.forecast(horizon)
            forecast_us.append((time.perf_counter() - started) * 1e6)
            for h in HORIZONS:
                target = y[origin + h]
                seasonal_naive = y[origin + h - s * math.ceil(h / s)]
                errors["model"][h].append(abs(target - forecast.mean[h - 1]))
                errors["snaive"][h].append(abs(target - seasonal_naive))
                errors["naive"][h].append(abs(target - y[origin]))
                covered[h].append(bool(forecast.lower[h - 1] <= target <= forecast.upper[h - 1]))
        fits_before = forecaster.stats.fits
        started = time.perf_counter()
        forecaster.update(y[i], times[i])
        elapsed = time.perf_counter() - started
        update_total += elapsed
        if forecaster.stats.fits == fits_before:
            update_us.append(elapsed * 1e6)
        else:
            refit_seconds.append(elapsed)
    compare = compare_statsmodels(forecaster, y)

    def mae(key: str, h: int) -> float:
        return float(np.mean(errors[key][h]))

    row: dict[str, Any] = {
        "file": name,
        "rows": n,
        "warmup": w,
        "origins": origins,
        "season": s,
        "model_at_warmup": spec_at_warmup,
        "model_at_end": str(forecaster.spec) if forecaster.spec else forecaster.method,
        "mase_scale": scale,
        "selection_s": selection_s,
        "refits": len(refit_seconds),
        "refit_s_mean": statistics.fmean(refit_seconds) if refit_seconds else None,
        "update_us_median": percentile(update_us, 50),
        "update_us_p95": percentile(update_us, 95),
        "update_us_amortised": update_total / max(n - w, 1) * 1e6,
        "forecast_us_median": percentile(forecast_us, 50),
        "state_bytes": len(pickle.dumps(forecaster)),
        **compare,
    }
    for h in HORIZONS:
        model, snaive, naive = mae("model", h), mae("snaive", h), mae("naive", h)
        row[f"mase_h{h}"] = model / scale if scale > 0 else None
        row[f"snaive_mase_h{h}"] = snaive / scale if scale > 0 else None
        row[f"rel_snaive_h{h}"] = model / snaive if snaive > 0 else None
        row[f"rel_naive_h{h}"] = model / naive if naive > 0 else None
        row[f"coverage_h{h}"] = float(np.mean(covered[h]))
    return row


def compare_statsmodels(forecaster: SeriesForecaster, y: np.ndarray) -> dict[str, Any]:
    """Per-row cost of statsmodels' ``extend`` and ``append(refit=False)`` on the same model, for
    the last rows of the file (the forecaster's current fit window, then one row at a time)."""
    params = forecaster.params
    fit = forecaster._fit  # the bench may look inside
    if params is None or fit is None:
        return {"extend_us": None, "append_us": None, "append_bytes_growth": None}
    rows = COMPARE_EXTEND_ROWS
    end = len(y) - rows
    start = max(fit.start, end - forecaster.config.history)
    if end - start < forecaster.config.min_fit:
        return {"extend_us": None, "append_us": None, "append_bytes_growth": None}
    results = forecaster.model_for(y[start:end], start).filter(params, cov_type="none")
    # the same treatment and scale over the whole stretch; its last rows are the new ones
    new = forecaster.model_for(y[start:], start).endog[-rows:, 0]
    began = time.perf_counter()
    extended = results
    for value in new:
        extended = extended.extend(np.array([value]))
    extend_us = (time.perf_counter() - began) / rows * 1e6
    appended = results
    before = len(pickle.dumps(results))
    began = time.perf_counter()
    for value in new[:COMPARE_APPEND_ROWS]:
        appended = appended.append(np.array([value]), refit=False)
    append_us = (time.perf_counter() - began) / COMPARE_APPEND_ROWS * 1e6
    growth = (len(pickle.dumps(appended)) - before) / COMPARE_APPEND_ROWS
    return {
        "extend_us": extend_us,
        "append_us": append_us,
        "statsmodels_results_bytes": before,
        "append_bytes_growth": growth,
    }


def summarise(rows: list[dict[str, Any]], key: str) -> dict[str, float | None]:
    values = [r[key] for r in rows if r.get(key) is not None and math.isfinite(r[key])]
    if not values:
        return {"median": None, "mean": None, "p95": None, "files": 0}
    return {
        "median": float(np.median(values)),
        "mean": float(np.mean(values)),
        "p95": float(np.percentile(values, 95)),
        "files": len(values),
    }


def extrapolate(summary: dict[str, dict[str, float | None]], config: ForecasterConfig) -> dict:
    def at(key: str, stat: str) -> float:
        value = summary[key][stat]
        return math.nan if value is None else float(value)

    out: dict[str, Any] = {"series": SERIES_TARGET}
    for stat in ("median", "p95"):
        out[stat] = {
            "selection_cpu_s_once": SERIES_TARGET * at("selection_s", stat),
            "refit_cpu_s_per_round": SERIES_TARGET * at("refit_s_mean", stat),
            "update_cpu_s_per_window": SERIES_TARGET * at("update_us_median", stat) / 1e6,
            "update_cpu_s_per_window_amortised_refits": SERIES_TARGET
            * at("update_us_amortised", stat)
            / 1e6,
            "forecast_cpu_s_per_window": SERIES_TARGET * at("forecast_us_median", stat) / 1e6,
            "state_mb": SERIES_TARGET * at("state_bytes", stat) / 1e6,
            "statsmodels_extend_cpu_s_per_window": SERIES_TARGET * at("extend_us", stat) / 1e6,
        }
    out["note"] = (
        "CPU seconds for 10,000 series: order selection once; a refit round (every series refits "
        f"once every {config.refit_every} windows); per window, one update of every series "
        "(without / with refits amortised) and one 12-step forecast of every series; divide by "
        "the cores. statsmodels_extend is the same update done with results.extend."
    )
    return out


def fmt(value: Any, spec: str = ".3f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "nab" / "data")
    parser.add_argument("--warmup", type=int, default=1024)
    parser.add_argument("--every", type=int, default=50, help="evaluate every N-th origin")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--files", type=int, default=0, help="only the first N files (0 = all)")
    parser.add_argument("--output", type=Path, default=RESULTS / "forecast.json")
    args = parser.parse_args()

    config = ForecasterConfig()
    paths = sorted(args.data.rglob("*.csv"))
    if args.files:
        paths = paths[: args.files]
    if not paths:
        raise SystemExit(f"no CSV files under {args.data}")
    names = [str(p.relative_to(args.data)) for p in paths]
    started = time.perf_counter()
    order = sorted(range(len(paths)), key=lambda i: -paths[i].stat().st_size)
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = {
            i: pool.submit(evaluate_file, str(paths[i]), names[i], args.warmup, args.every, config)
            for i in order
        }
        rows = [futures[i].result() for i in range(len(paths))]
    elapsed = time.perf_counter() - started

    keys = [
        *(
            f"{m}_h{h}"
            for m in ("mase", "snaive_mase", "rel_snaive", "rel_naive")
            for h in HORIZONS
        ),
        *(f"coverage_h{h}" for h in HORIZONS),
        "selection_s",
        "refit_s_mean",
        "update_us_median",
        "update_us_p95",
        "update_us_amortised",
        "forecast_us_median",
        "state_bytes",
        "extend_us",
        "append_us",
        "append_bytes_growth",
        "statsmodels_results_bytes",
    ]
    summary = {key: summarise(rows, key) for key in keys}
    header = (
        f"{'file':<52} {'n':>6} {'s':>4} {'MASE1':>6} {'MASE12':>6} {'rSN1':>5} {'rSN12':>5}"
        f" {'rN1':>5} {'rN12':>5} {'cov1':>5} {'sel s':>6} {'refit':>6} {'upd us':>6} model"
    )
    print(header)
    for r in rows:
        print(
            f"{r['file'][:52]:<52} {r['rows']:>6} {r['season']:>4}"
            f" {fmt(r['mase_h1']):>6} {fmt(r['mase_h12']):>6}"
            f" {fmt(r['rel_snaive_h1'], '.2f'):>5} {fmt(r['rel_snaive_h12'], '.2f'):>5}"
            f" {fmt(r['rel_naive_h1'], '.2f'):>5} {fmt(r['rel_naive_h12'], '.2f'):>5}"
            f" {fmt(r['coverage_h1'], '.2f'):>5} {fmt(r['selection_s'], '.2f'):>6}"
            f" {fmt(r['refit_s_mean'], '.3f'):>6} {fmt(r['update_us_median'], '.0f'):>6}"
            f" {r['model_at_warmup']}"
        )
    print()
    for key in keys:
        s = summary[key]
        print(
            f"{key:<28} median {fmt(s['median'], '.4g'):>10}  mean {fmt(s['mean'], '.4g'):>10}"
            f"  p95 {fmt(s['p95'], '.4g'):>10}  ({s['files']} files)"
        )
    projection = extrapolate(summary, config)
    print()
    print(f"10,000 series ({projection['note']})")
    for stat in ("median", "p95"):
        print(f"  {stat}: " + ", ".join(f"{k} {v:.4g}" for k, v in projection[stat].items()))
    print(f"\n{len(rows)} files in {elapsed:.0f} s with {args.workers} workers")

    result = {
        "command": "python bench/forecast_accuracy.py "
        + f"--warmup {args.warmup} --every {args.every} --workers {args.workers}",
        "data": str(args.data),
        "files": len(rows),
        "elapsed_s": elapsed,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "config": {
            "history": config.history,
            "refit_every": config.refit_every,
            "min_fit": config.min_fit,
            "grid": f"p 0..{config.max_p}, q 0..{config.max_q}, d 0..{config.max_d} by KPSS",
            "max_harmonics": config.max_harmonics,
            "level": config.level,
        },
        "protocol": {
            "warmup": f"min({args.warmup}, n // 2) rows: order selection (fit), never scored",
            "origins": f"every {args.every}th row from the end of the warm-up while o + "
            f"{max(HORIZONS)} < n; the forecaster learns every row (update), origins only "
            "subsample where forecasts are scored",
            "season": "s = SeriesForecaster.period after the warm-up (declared or detected), "
            "1 when none",
            "mase_h": "MAE(h-step forecasts over origins) / mean |y_i - y_{i-s}| over the "
            "warm-up rows i >= s (in-sample one-step seasonal naive, Hyndman-Koehler)",
            "snaive_mase_h": "the same for the seasonal-naive forecast y_{o+h-s*ceil(h/s)}",
            "rel_snaive_h": "MAE(model) / MAE(seasonal naive) at the same origins and horizon",
            "rel_naive_h": "MAE(model) / MAE(naive y_o) at the same origins and horizon",
            "coverage_h": f"share of targets inside the {config.level:.0%} interval",
        },
        "summary": summary,
        "extrapolation": projection,
        "per_file": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"saved {args.output}")


if __name__ == "__main__":
    main()
