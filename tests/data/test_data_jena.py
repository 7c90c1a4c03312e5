"""seqtorch.data.jena on synthetic files in the exact on-disk format (no network, no real data)."""

from __future__ import annotations

import hashlib
import re
import time
import warnings
import zipfile

import numpy as np
import pytest
import torch

from support.file_faults import SyncRecorder, held_by_a_live_writer, leftover_temp
from support.jena_fixture import (
    FULL_ROWS, FULL_SENTINELS, T_NOISE, expected_abs, render_csv, temperature_cycle,
    write_full_jena_csv, write_jena_csv, zip_csv,
)
from seqtorch.data import jena
from seqtorch.fileio import CacheEntryWarning
from seqtorch.data.jena import (
    JenaChecksumWarning, JenaWindows, RandomWindowBatchSampler, Splits, WindowSpec,
    book_eval_steps, book_sequential_batches, load_jena, naive_mae, normalize, prepare_jena,
)

SMALL_ROWS = 4_000
SMALL_GAPS = {700: 3, 2_500: 12}
SMALL_SENTINELS = (10, 1_234)
# A small preparation that keeps the book's structure: windows of 8 rows, 4 ahead.
SMALL_SPEC = WindowSpec(lookback=48, step=6, delay=24)
SMALL_SPLITS = Splits(train_end=2_000, val_end=3_000)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Every test gets its own seqtorch cache and no md5 warning noise unless it asks."""
    monkeypatch.setenv("SEQTORCH_DATA", str(tmp_path / "cache"))
    warnings.filterwarnings("ignore", category=JenaChecksumWarning)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    path = tmp_path_factory.mktemp("jena") / "jena_climate_2009_2016.csv"
    return write_jena_csv(path, SMALL_ROWS, seed=1, gaps=SMALL_GAPS, sentinel_rows=SMALL_SENTINELS)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """A synthetic file as long as the real one (420,551 rows), generated once per module."""
    syn = write_full_jena_csv(tmp_path_factory.mktemp("jena_full") / "jena_climate_2009_2016.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", JenaChecksumWarning)
        table = load_jena(syn.path, cache=False)
    return syn, table


def book_generator(data, lookback, delay, min_index, max_index, shuffle=False, batch_size=128, step=6):
    """The book's generator (Deep Learning with Python, listing 6.33), the oracle of these tests."""
    if max_index is None:
        max_index = len(data) - delay - 1
    i = min_index + lookback
    while 1:
        if shuffle:
            rows = np.random.randint(min_index + lookback, max_index, size=batch_size)
        else:
            if i + batch_size >= max_index:
                i = min_index + lookback
            rows = np.arange(i, min(i + batch_size, max_index))
            i += len(rows)
        samples = np.zeros((len(rows), lookback // step, data.shape[-1]))
        targets = np.zeros((len(rows),))
        for j, row in enumerate(rows):
            indices = range(rows[j] - lookback, rows[j], step)
            samples[j] = data[indices]
            targets[j] = data[rows[j] + delay][1]
        yield samples, targets


# ----------------------------------------------------------------------------- loading


def test_csv_parses_exactly_and_summary_reports_gaps_and_sentinels(small):
    table = load_jena(small.path)
    np.testing.assert_array_equal(table.values, small.values)
    np.testing.assert_array_equal(table.timestamps, small.timestamps)
    assert table.values.shape == (SMALL_ROWS, 14) and table.values.dtype == np.float64
    s = table.summary
    assert (s.rows, s.gaps, s.missing_steps) == (SMALL_ROWS, 2, 15)
    assert s.span_steps == SMALL_ROWS + 15 and s.largest_gap_minutes == 130
    assert s.first == "2009-01-01T00:10:00" and s.repeated_timestamps == 0 == s.off_grid_intervals
    assert s.sentinels["wv (m/s)"] == 2 and s.sentinels["max. wv (m/s)"] == 2
    assert sum(s.sentinels.values()) == 4
    assert s.csv_md5 == hashlib.md5(small.path.read_bytes()).hexdigest()
    assert not s.matches_reference and "420,551" in s.format()
    # The book keeps the sentinels: they are in the values unless --clean.
    assert (table.values[list(SMALL_SENTINELS), 11:13] == -9999.0).all()


def test_md5_mismatch_is_a_warning_naming_both_values(small):
    md5 = hashlib.md5(small.path.read_bytes()).hexdigest()
    with pytest.warns(JenaChecksumWarning) as record:
        load_jena(small.path)
    text = str(record[0].message)
    assert md5 in text and jena.REFERENCE_MD5 in text and "43,164,220" in text


def test_zip_and_crlf_give_the_same_table(small, tmp_path):
    archive = zip_csv(small.path, tmp_path / "jena_climate_2009_2016.csv.zip")
    crlf = tmp_path / "crlf.csv"
    crlf.write_bytes(render_csv(small.timestamps, small.values, "\r\n").encode())
    for source in (archive, crlf):
        table = load_jena(source)
        np.testing.assert_array_equal(table.values, small.values)
        np.testing.assert_array_equal(table.timestamps, small.timestamps)


def test_clean_clips_only_the_wind_sentinels(small):
    raw = load_jena(small.path).values
    table = load_jena(small.path, clean=True)
    assert table.summary.cleaned and table.summary.sentinels["wv (m/s)"] == 2
    rows = list(SMALL_SENTINELS)
    assert (table.values[rows, 11:13] == 0.0).all()
    keep = np.ones(len(raw), dtype=bool)
    keep[rows] = False
    np.testing.assert_array_equal(table.values[keep], raw[keep])
    np.testing.assert_array_equal(table.values[rows][:, :11], raw[rows][:, :11])


def _lines(syn):
    return render_csv(syn.timestamps, syn.values).splitlines(keepends=True)


@pytest.mark.parametrize("case", ["truncated", "missing_column", "non_numeric", "nan_cell",
                                  "shuffled", "bad_timestamp", "bad_separator", "bad_date",
                                  "header_only",
                                  "wrong_header"])
def test_structure_errors_are_clear(small, tmp_path, case):
    lines = _lines(small)
    match = {
        "truncated": r"line 4001 has \d+ fields, expected 15 \(the file ends inside this line: it is truncated\)",
        "missing_column": r"header is not the Jena header",
        "non_numeric": r"line 101, column 'rh \(%\)': expected a finite number, found 'n/a'",
        "nan_cell": r"line 51, column 'p \(mbar\)': expected a finite number, found 'nan'",
        "shuffled": r"not in time order: line 12 \(2009-01-01T01:40:00\) comes after line 11 \(2009-01-01T01:50:00\)",
        "bad_timestamp": r"line 31: the timestamp is not 'dd.mm.yyyy HH:MM:SS': '1.01.2009",
        "bad_separator": r"line 31: the timestamp is not a valid 'dd.mm.yyyy HH:MM:SS': '01.01/2009",
        "bad_date": r"line 31: the timestamp is not a valid 'dd.mm.yyyy HH:MM:SS': '31.02.2009",
        "header_only": r"no data rows after the header",
        "wrong_header": r"header is not the Jena header",
    }[case]
    if case == "truncated":
        text = "".join(lines)
        text = text[: text.rindex(",", 0, len(text) - 40)]  # cut inside the last line
    elif case == "missing_column":  # "wd (deg)" dropped everywhere
        text = "".join(line.rstrip("\n").rsplit(",", 1)[0] + "\n" for line in lines)
    elif case == "non_numeric":
        cells = lines[100].split(",")
        cells[5] = "n/a"
        lines[100] = ",".join(cells)
        text = "".join(lines)
    elif case == "nan_cell":
        cells = lines[50].split(",")
        cells[1] = "nan"
        lines[50] = ",".join(cells)
        text = "".join(lines)
    elif case == "shuffled":
        body = lines[1:]
        body[9], body[10] = body[10], body[9]
        text = lines[0] + "".join(body)
    elif case == "bad_timestamp":  # "1.01.2009 05:00:00": a day without its leading zero
        lines[30] = lines[30][1:]
        text = "".join(lines)
    elif case == "bad_separator":
        lines[30] = lines[30].replace(".2009 ", "/2009 ", 1)
        text = "".join(lines)
    elif case == "bad_date":
        lines[30] = "31.02" + lines[30][5:]
        text = "".join(lines)
    elif case == "header_only":
        text = lines[0]
    else:
        text = lines[0].replace('"T (degC)"', '"T (C)"') + "".join(lines[1:])
    bad = tmp_path / "bad.csv"
    bad.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        load_jena(bad)
    assert str(bad) in str(info.value)


def test_full_file_row_count_is_checked_when_expected(small):
    with pytest.raises(ValueError, match=r"expected 420,551 data rows, found 4,000"):
        load_jena(small.path, expected_rows=FULL_ROWS)


def test_missing_file_and_bad_zip_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_jena(tmp_path / "nope.csv")
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="not a readable zip"):
        load_jena(broken)
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("readme.txt", "no csv here")
    with pytest.raises(ValueError, match="expected one jena_climate_2009_2016.csv"):
        load_jena(other)


def test_binary_cache_is_keyed_by_the_source_hash(small, tmp_path, monkeypatch):
    copy = tmp_path / "copy.csv"
    copy.write_bytes(small.path.read_bytes())
    first = load_jena(copy)
    cached = list((tmp_path / "cache" / "jena").glob("parsed-*.npz"))
    assert len(cached) == 1 and not list((tmp_path / "cache" / "jena").glob(".*part"))

    def no_parse(*args, **kwargs):
        raise AssertionError("the text was parsed again although the source did not change")

    monkeypatch.setattr(jena, "parse_jena_csv", no_parse)
    again = load_jena(copy)
    np.testing.assert_array_equal(again.values, first.values)
    np.testing.assert_array_equal(again.timestamps, first.timestamps)
    assert again.summary == first.summary
    # A changed source has another hash: parsed again, never served from the stale cache.
    lines = _lines(small)
    lines[1] = lines[1].replace(lines[1].split(",")[1], "999.99", 1)
    copy.write_text("".join(lines))
    with pytest.raises(AssertionError, match="parsed again"):
        load_jena(copy)
    monkeypatch.undo()
    monkeypatch.setenv("SEQTORCH_DATA", str(tmp_path / "cache"))
    assert load_jena(copy).values[0, 0] == 999.99
    # An unreadable cache file is reported, discarded and rebuilt.
    cached[0].write_bytes(b"garbage")
    with pytest.warns(CacheEntryWarning, match="unreadable"):
        np.testing.assert_array_equal(load_jena(small.path).values, small.values)


def test_download_path_verifies_structure_and_never_keeps_a_bad_file(small, tmp_path):
    archive = zip_csv(small.path, tmp_path / "served.zip")
    url = archive.as_uri()
    dest = tmp_path / "cache" / "jena" / "jena_climate_2009_2016.csv.zip"
    # The canonical download must be the full file: a 4,000-row archive is rejected and deleted.
    with pytest.raises(ValueError, match=r"expected 420,551 data rows.*downloaded file was deleted"):
        load_jena(url=url)
    assert not dest.exists()
    table = load_jena(url=url, expected_rows=SMALL_ROWS)
    assert dest.is_file()
    np.testing.assert_array_equal(table.values, small.values)
    # A corrupt download (not a zip) is deleted too.
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"<html>Access denied</html>")
    dest.unlink()
    with pytest.raises(ValueError, match="not a readable zip"):
        load_jena(url=junk.as_uri(), expected_rows=SMALL_ROWS)
    assert not dest.exists()


# ----------------------------------------------------------------------------- faults

DAMAGE = {
    "empty": lambda data: b"",  # a crash between creating the file and writing it
    "truncated": lambda data: data[: len(data) // 2],
    "garbage": lambda data: bytes(range(256)) * 16,
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_unreadable_cache_entry_is_reported_and_rebuilt(small, tmp_path, damage):
    load_jena(small.path)
    (entry,) = (tmp_path / "cache" / "jena").glob("parsed-*.npz")
    entry.write_bytes(DAMAGE[damage](entry.read_bytes()))
    with pytest.warns(UserWarning, match=re.escape(str(entry))):
        table = load_jena(small.path)
    np.testing.assert_array_equal(table.values, small.values)
    np.testing.assert_array_equal(table.timestamps, small.timestamps)
    with np.load(entry) as rebuilt:  # a complete entry again, read by the next load
        np.testing.assert_array_equal(rebuilt["values"], small.values)


def test_cache_entry_is_fsynced_before_its_rename(small, tmp_path, monkeypatch):
    sync = SyncRecorder(monkeypatch)
    load_jena(small.path)
    (entry,) = (tmp_path / "cache" / "jena").glob("parsed-*.npz")
    assert sync.synced_before_rename(entry)


def _cut(text: bytes, how: str) -> bytes:
    """``text`` (a complete CSV ending with a newline) cut the way a failed copy cuts it."""
    whole = text.rstrip(b"\r\n")  # the last row complete, without its line ending
    last_line = whole.rsplit(b"\n", 1)[1]
    last_cell = last_line.rsplit(b",", 1)[1]  # e.g. b"152.30": two decimals, as in the real file
    return {
        "inside_last_number": whole[:-3],  # 352.98 -> 352
        "at_last_decimal_point": whole[:-2],  # 352.98 -> 352.
        "one_decimal_short": whole[:-1],  # 352.98 -> 352.9
        "after_last_comma": whole[: len(whole) - len(last_cell)],
        "inside_last_timestamp": whole[: len(whole) - len(last_line) + 10],
        "zero_filled_tail": text[:-300] + b"\0" * 300,  # the size is right, the end never written
        "empty_file": b"",
        "inside_header": text[:40],
    }[how]


@pytest.mark.parametrize("line_ending", ["\n", "\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize("how", ["inside_last_number", "at_last_decimal_point", "one_decimal_short",
                                 "after_last_comma", "inside_last_timestamp", "zero_filled_tail",
                                 "empty_file", "inside_header"])
def test_truncated_csv_is_refused_as_truncated(small, tmp_path, how, line_ending):
    text = render_csv(small.timestamps, small.values, line_ending).encode()
    bad = tmp_path / "cut.csv"
    bad.write_bytes(_cut(text, how))
    with pytest.raises(ValueError) as info:
        load_jena(bad)
    message = str(info.value)
    assert str(bad) in message
    assert "truncated" in message.replace(str(bad), "<path>")  # said, not just in the path
    assert not list((tmp_path / "cache" / "jena").glob("parsed-*.npz"))  # nothing cached


def test_complete_file_without_the_final_newline_is_accepted(small, tmp_path):
    """The real file ends its last row without a newline (the book's ``split("\\n")`` gives its
    420,551 rows): that is a complete file, not a truncated one."""
    for line_ending in ("\n", "\r\n"):
        path = tmp_path / "no_final_newline.csv"
        path.write_bytes(render_csv(small.timestamps, small.values, line_ending).encode()
                         .rstrip(b"\r\n"))
        table = load_jena(path, cache=False)
        np.testing.assert_array_equal(table.values, small.values)
        np.testing.assert_array_equal(table.timestamps, small.timestamps)


def test_older_cache_versions_of_the_file_are_replaced(small, tmp_path):
    folder = tmp_path / "cache" / "jena"
    folder.mkdir(parents=True)
    older = folder / f"parsed-v1-{hashlib.sha256(small.path.read_bytes()).hexdigest()}.npz"
    older.write_bytes(b"made by a laxer parser")  # never read: its version is not current
    np.testing.assert_array_equal(load_jena(small.path).values, small.values)
    assert not older.exists() and len(list(folder.glob("parsed-v*.npz"))) == 1


def test_stale_temp_files_in_the_cache_are_removed_live_ones_kept(small, tmp_path):
    folder = tmp_path / "cache" / "jena"
    killed = leftover_temp(folder, "parsed-v1-0123abcd.npz", age_s=3600, tag="killed00")
    download = leftover_temp(folder, "jena_climate_2009_2016.csv.zip", age_s=3600, tag="killed01")
    live = leftover_temp(folder, "parsed-v1-0123abcd.npz", age_s=3600, tag="writing0")
    just_made = leftover_temp(folder, "parsed-v1-0123abcd.npz", age_s=0, tag="justmade")
    with held_by_a_live_writer(live):
        load_jena(small.path)  # parses and writes a cache entry into the folder
        assert not killed.exists() and not download.exists()
        assert live.exists() and just_made.exists()


# ----------------------------------------------------------------------------- preparation


def test_normalization_uses_training_rows_only(small):
    values = small.values.copy()
    data, mean, std = normalize(values, 2_000)
    np.testing.assert_allclose(mean, values[:2_000].mean(axis=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(std, values[:2_000].std(axis=0), rtol=1e-12, atol=0)
    np.testing.assert_allclose(data, (values - mean) / std, rtol=0, atol=1e-12)
    changed = values.copy()
    changed[2_000:] *= 1_000.0  # rows after the training range must not move the statistics
    _, mean2, std2 = normalize(changed, 2_000)
    np.testing.assert_array_equal(mean2, mean)
    np.testing.assert_array_equal(std2, std)
    prep = prepare_jena(changed, SMALL_SPEC, SMALL_SPLITS, batch_size=32)
    np.testing.assert_array_equal(prep.mean, mean)
    assert prep.target_std == std[1]


def test_windows_and_targets_match_direct_indexing(small):
    data, _, _ = normalize(small.values, 2_000)
    spec = WindowSpec(lookback=30, step=3, delay=7)
    ds = JenaWindows(data, spec, dtype=torch.float64)
    rows = [30, 31, 1_000, len(data) - 8]
    for r in rows:
        window, target = ds[r]
        assert window.shape == (10, 14)
        for t in range(10):
            for f in range(14):
                assert window[t, f].item() == data[r - 30 + 3 * t, f]
        assert target.item() == data[r + 7, 1]
    windows, targets = ds.batch(rows)
    torch.testing.assert_close(windows, torch.stack([ds[r][0] for r in rows]), rtol=0, atol=0)
    torch.testing.assert_close(targets, torch.stack([ds[r][1] for r in rows]), rtol=0, atol=0)
    for bad in (29, len(data) - 7):
        with pytest.raises(IndexError, match="outside"):
            ds[bad]


def test_eval_datasets_follow_the_book_generator(small):
    data, _, _ = normalize(small.values, 2_000)
    prep = prepare_jena(small.values, SMALL_SPEC, SMALL_SPLITS, batch_size=32)
    lb, st, dl = SMALL_SPEC.lookback, SMALL_SPEC.step, SMALL_SPEC.delay
    for which, (lo, hi, end) in {"val": (2_001, 3_000, 3_000),
                                 "test": (3_001, None, SMALL_ROWS)}.items():
        steps = (end - lo - lb) // 32
        gen = book_generator(data, lb, dl, lo, hi, batch_size=32, step=st)
        ds = prep.eval_dataset(which)
        assert len(ds) == steps * 32
        for k in range(steps):
            samples, targets = next(gen)
            mine = [ds[k * 32 + j] for j in range(32)]
            np.testing.assert_allclose(np.stack([w.numpy() for w, _ in mine]), samples, rtol=0, atol=1e-6)
            np.testing.assert_allclose(np.array([t.item() for _, t in mine]), targets, rtol=0, atol=1e-6)


def test_book_step_counts_arithmetic():
    assert book_eval_steps(200_001, 300_000, 1440, 128) == 769
    assert book_eval_steps(300_001, FULL_ROWS, 1440, 128) == 930
    # The generator's state machine: the test pass wraps before its 930th batch.
    test = book_sequential_batches(300_001, FULL_ROWS - 144 - 1, 1440, 128, 930)
    assert [len(b) for b in test] == [128] * 930
    np.testing.assert_array_equal(test[929], test[0])
    assert test[928][-1] == 301_441 + 929 * 128 - 1 < FULL_ROWS - 145
    val = book_sequential_batches(200_001, 300_000, 1440, 128, 769)
    np.testing.assert_array_equal(np.concatenate(val), np.arange(201_441, 201_441 + 769 * 128))


def test_full_size_counts_and_baseline(full):
    syn, table = full
    load_jena(syn.path)  # parses and writes the binary cache
    started = time.perf_counter()
    reloaded = load_jena(syn.path)
    reload_seconds = time.perf_counter() - started
    np.testing.assert_array_equal(reloaded.values, table.values)
    assert reload_seconds < 5.0, f"reloading the 420k x 14 table took {reload_seconds:.1f} s"
    assert table.summary.rows == FULL_ROWS and table.summary.missing_steps == 217
    assert table.summary.first == "2009-01-01T00:10:00"
    assert table.summary.last == "2017-01-01T00:00:00"
    assert table.summary.sentinels["wv (m/s)"] == len(FULL_SENTINELS)
    prep = prepare_jena(table.values)
    assert (len(prep.val_batches), len(prep.test_batches)) == (769, 930)
    assert len(prep.eval_dataset("val")) == 769 * 128 and len(prep.eval_dataset("test")) == 930 * 128
    assert prep.dataset[prep.val_batches[0][0]][0].shape == (240, 14)

    # The baseline against the book's own loop (evaluate_naive_method) on the book's generator.
    val_gen = book_generator(prep.data, 1440, 144, 200_001, 300_000)
    maes = []
    for _ in range(769):
        samples, targets = next(val_gen)
        maes.append(np.mean(np.abs(samples[:, -1, 1] - targets)))
    book_value = float(np.mean(maes))
    mine = naive_mae(prep.data, prep.val_batches)
    assert abs(mine - book_value) < 1e-12

    # ... and against the closed form: T = cycle(t) + N(0, s^2) noise, so each row's error is a
    # folded normal with mean E|d + N(0, 2 s^2)|, d the cycle's change over the 150 rows between
    # the window's last row (r - 6) and the target (r + 144).
    rows = np.concatenate(prep.val_batches)
    cycle = temperature_cycle(syn.timestamps)
    d = cycle[rows + 144] - cycle[rows - 6]
    expected_c = float(expected_abs(d, np.sqrt(2) * T_NOISE).mean())
    celsius = mine * prep.target_std
    # Rows share noise values at most pairwise; 5 standard errors of the mean, in degrees.
    tolerance = 5 * np.sqrt(2 * np.mean(d ** 2 + 2 * T_NOISE ** 2) / len(rows))
    assert abs(celsius - expected_c) < tolerance, (celsius, expected_c, tolerance)
    # In degrees the baseline is just the raw temperature's persistence error.
    raw = syn.values[:, 1]
    assert abs(celsius - np.mean(np.abs(raw[rows + 144] - raw[rows - 6]))) < 1e-9


def test_training_sampler_is_the_book_draw_and_reproducible():
    sampler = RandomWindowBatchSampler(1440, 200_000, 128, steps=500, seed=3)
    sampler.set_epoch(2)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 500 and all(len(b) == 128 for b in batches)
    flat = np.concatenate(batches)
    assert flat.min() >= 1440 and flat.max() < 200_000
    assert flat.min() < 1440 + 500 and flat.max() > 200_000 - 500  # covers the whole range
    assert list(sampler) == batches  # same (seed, epoch): same batches (what --resume needs)
    sampler.set_epoch(3)
    assert list(sampler) != batches
    # DDP: two ranks of 64 see exactly the single-process global batch of 128.
    ranks = [RandomWindowBatchSampler(1440, 200_000, 64, 500, 3, rank=r, world_size=2) for r in (0, 1)]
    for s in ranks:
        s.set_epoch(2)
    for single, a, b in zip(batches, *ranks):
        assert sorted(single) == sorted(a + b)
    with pytest.raises(ValueError, match="rank"):
        RandomWindowBatchSampler(0, 10, 4, 1, rank=2, world_size=2)


def test_train_loader_factory_gives_book_batches(small):
    prep = prepare_jena(small.values, SMALL_SPEC, SMALL_SPLITS, batch_size=16)
    make = prep.train_loader_factory(steps=5, seed=0)
    batches = list(make(0, 0, 1))
    assert len(batches) == 5
    x, y = batches[0]
    assert x.shape == (16, 8, 14) and y.shape == (16,) and x.dtype == torch.float32
    again = list(make(0, 0, 1))
    torch.testing.assert_close(again[4][0], batches[4][0], rtol=0, atol=0)


def test_loader_workers_give_the_same_batches(small):
    prep = prepare_jena(small.values, SMALL_SPEC, SMALL_SPLITS, batch_size=16)
    inline = list(prep.train_loader_factory(steps=4, seed=5)(1, 0, 1))
    workers = list(prep.train_loader_factory(steps=4, seed=5, num_workers=2)(1, 0, 1))
    for (x0, y0), (x1, y1) in zip(inline, workers, strict=True):
        torch.testing.assert_close(x1, x0, rtol=0, atol=0)
        torch.testing.assert_close(y1, y0, rtol=0, atol=0)


def test_prepare_rejects_bad_settings(small):
    with pytest.raises(ValueError, match="multiple of step"):
        WindowSpec(lookback=50, step=6)
    with pytest.raises(ValueError, match=r"val_end \(300000\) < rows - delay - 1"):
        prepare_jena(small.values, SMALL_SPEC, Splits(), batch_size=32)
    with pytest.raises(ValueError, match="too few rows for one full batch"):
        prepare_jena(small.values, SMALL_SPEC, SMALL_SPLITS, batch_size=4_096)
