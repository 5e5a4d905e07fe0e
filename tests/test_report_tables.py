"""Numbers for people: no scientific notation, missing shown as missing, never as zero."""

from __future__ import annotations

import math

import pandas as pd

from srpo_bench.report import tables
from srpo_bench.report.aggregate import Estimate


def test_numbers_read_without_scientific_notation() -> None:
    assert tables.rate(12710.3) == "12,710" and tables.rate(739300.0) == "739,300"
    assert tables.rate(47.36) == "47.4" and tables.rate(7.361) == "7.36" and tables.rate(0.01234) == "0.0123"
    assert tables.score(1.271e4) == "12,710.0" and tables.score(-1.25) == "-1.2"
    assert tables.ratio(1397.4) == "1,397x" and tables.ratio(102.2) == "102x" and tables.ratio(1.04) == "1.04x"
    assert tables.seconds(7560.0) == "2.1 h" and tables.seconds(754.0) == "12.6 min" and tables.seconds(8.44) == "8.4 s"
    assert tables.count(448.0) == "448" and tables.count(1.0) == "1"


def test_missing_is_missing_never_zero() -> None:
    for value in (None, math.nan, float("nan")):
        assert tables.score(value) == tables.rate(value) == tables.ratio(value) == tables.MISSING
    assert tables.interval(None) == tables.MISSING
    assert tables.interval(Estimate(81.0)) == "81.0"  # no interval: the point alone, not "[81.0, 81.0]"
    assert tables.interval(Estimate(81.0, 79.5, 82.25)) == "81.0 [79.5, 82.2]"
    assert tables.number(None).sort is None  # sorts last in the HTML page


def test_a_missing_text_cell_reads_as_a_dash_and_sorts_last() -> None:
    from srpo_bench.report.tables import MISSING, Cell, text

    assert [text(value) for value in (None, float("nan"), pd.NA)] == [Cell(MISSING, None)] * 3
    assert text("final policy") == Cell("final policy", "final policy") and text(0) == Cell("0", "0")
