"""Synthetic Jena climate files in the exact on-disk format, with known structure.

The temperature is a yearly and a daily cycle plus Gaussian noise, so the common-sense baseline's
error has a closed form (:func:`expected_abs`); gaps and -9999 wind sentinels are placed where the
caller says. Values are written with two decimals from integers (hundredths), so the values a
parser should return are known exactly.

Usable outside pytest too (the measurement commands in the report import it).
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HEADER = ('"Date Time","p (mbar)","T (degC)","Tpot (K)","Tdew (degC)","rh (%)","VPmax (mbar)",'
          '"VPact (mbar)","VPdef (mbar)","sh (g/kg)","H2OC (mmol/mol)","rho (g/m**3)","wv (m/s)",'
          '"max. wv (m/s)","wd (deg)"')
FULL_ROWS = 420_551
FULL_START = "2009-01-01T00:10:00"
# 8 years of 10-minute steps hold 420,768 rows; the real file has 420,551. Two gaps of the
# grid (start step -> missing steps) make the synthetic full file the same length and span.
FULL_GAPS = {100_000: 144, 350_000: 73}
FULL_SENTINELS = (5_000, 250_000, 400_000)  # rows whose two wind speeds are -9999

T_MEAN, T_YEAR, T_DAY, T_NOISE = 9.0, 10.0, 4.0, 1.0  # degrees C
_YEAR_S, _DAY_S = 365.25 * 86_400, 86_400


@dataclass(frozen=True)
class SyntheticJena:
    """What a generated file holds. timestamps: (N,) datetime64[s]; values: (N, 14) float64."""

    path: Path
    timestamps: np.ndarray
    values: np.ndarray
    sentinel_rows: tuple


def temperature_cycle(timestamps: np.ndarray) -> np.ndarray:
    """The noiseless temperature (degrees C) at ``timestamps`` (N,) datetime64[s]: (N,) float64."""
    t = (timestamps.astype("datetime64[s]") - np.datetime64(FULL_START, "s")).astype(np.float64)
    return (T_MEAN + T_YEAR * np.sin(2 * np.pi * t / _YEAR_S - 2.0)
            + T_DAY * np.sin(2 * np.pi * t / _DAY_S - 2.0))


def expected_abs(d: np.ndarray, sigma: float) -> np.ndarray:
    """E|d + sigma * Z| for Z ~ N(0, 1): the folded normal mean, elementwise."""
    d = np.asarray(d, dtype=np.float64)
    erf = np.vectorize(math.erf)
    return sigma * math.sqrt(2 / math.pi) * np.exp(-d ** 2 / (2 * sigma ** 2)) + d * erf(
        d / (sigma * math.sqrt(2)))


def make_values(timestamps: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, 14) float64 on a 0.01 grid: plausible weather with the temperature of :func:`temperature_cycle`."""
    rng = np.random.default_rng(seed)
    n = len(timestamps)
    temp = temperature_cycle(timestamps) + T_NOISE * rng.standard_normal(n)
    p = 990 + 8 * np.sin(np.arange(n) / 3000) + rng.standard_normal(n)
    rh = np.clip(75 - 2 * (temp - T_MEAN) + 5 * rng.standard_normal(n), 10, 100)
    vpmax = 6.1 * np.exp(17.6 * temp / (temp + 243))
    vpact = vpmax * rh / 100
    wv = np.abs(2 + 1.5 * rng.standard_normal(n))
    columns = [
        p, temp, temp + 273.15 + (1000 - p) * 0.08, temp - (100 - rh) / 5, rh, vpmax, vpact,
        vpmax - vpact, 6.2 * vpact / p * 100 / 10, 10 * vpact / p * 100, 1300 - 4 * temp,
        wv, wv * 1.6 + 0.3, rng.uniform(0, 360, n),
    ]
    return np.rint(np.stack(columns, axis=1) * 100) / 100


def make_timestamps(n_rows: int, start: str = FULL_START, gaps: dict | None = None) -> np.ndarray:
    """(n_rows,) datetime64[s] at 10-minute steps from ``start`` with ``gaps`` {grid step: missing}."""
    gaps = gaps or {}
    total = n_rows + sum(gaps.values())
    keep = np.ones(total, dtype=bool)
    for at, missing in gaps.items():
        keep[at:at + missing] = False
    steps = np.flatnonzero(keep)[:n_rows]
    return np.datetime64(start, "s") + steps.astype("timedelta64[s]") * 600


def format_timestamps(timestamps: np.ndarray) -> list[str]:
    """'dd.mm.yyyy HH:MM:SS' strings, built vectorized from numpy's ISO strings."""
    iso = np.datetime_as_string(timestamps.astype("datetime64[s]"), unit="s").astype("S19")
    b = np.frombuffer(iso.tobytes(), dtype=np.uint8).reshape(-1, 19)
    out = np.empty_like(b)
    out[:, 0:2], out[:, 2], out[:, 3:5], out[:, 5] = b[:, 8:10], ord("."), b[:, 5:7], ord(".")
    out[:, 6:10], out[:, 10], out[:, 11:19] = b[:, 0:4], ord(" "), b[:, 11:19]
    return [s.decode() for s in out.view("S19").ravel()]


def render_csv(timestamps: np.ndarray, values: np.ndarray, line_ending: str = "\n") -> str:
    """The file's text: the quoted header, then one line per row, each ending with ``line_ending``."""
    fmt = "%s," + ",".join(["%.2f"] * values.shape[1])
    lines = [HEADER] + [fmt % (t, *row) for t, row in zip(format_timestamps(timestamps),
                                                            values.tolist())]
    return line_ending.join(lines) + line_ending


def write_jena_csv(path, n_rows: int = 4_000, *, seed: int = 0, gaps: dict | None = None,
                   sentinel_rows=(), line_ending: str = "\n",
                   start: str = FULL_START) -> SyntheticJena:
    """Write a synthetic Jena CSV of ``n_rows`` data rows to ``path`` and describe it."""
    path = Path(path)
    timestamps = make_timestamps(n_rows, start, gaps)
    values = make_values(timestamps, seed)
    for r in sentinel_rows:
        values[r, 11:13] = -9999.0
    path.write_bytes(render_csv(timestamps, values, line_ending).encode())
    return SyntheticJena(path, timestamps, values, tuple(sentinel_rows))


def write_full_jena_csv(path, seed: int = 0) -> SyntheticJena:
    """A synthetic file as long as the real one: 420,551 rows, 01.01.2009 00:10 .. 01.01.2017 00:00."""
    return write_jena_csv(path, FULL_ROWS, seed=seed, gaps=FULL_GAPS, sentinel_rows=FULL_SENTINELS)


def zip_csv(csv_path, zip_path, member: str = "jena_climate_2009_2016.csv") -> Path:
    """Put ``csv_path`` into ``zip_path`` as ``member`` (deflated, like the canonical archive)."""
    zip_path = Path(zip_path)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.write(csv_path, arcname=member)
    return zip_path
