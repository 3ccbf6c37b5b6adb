"""A long backfill's report holds a bounded number of lines with exact totals (issue #17, target 8).

Before: the report kept one line (about 1 KB) per run, so a backfill of 10,000 runs held 10,000 lines until it
answered, and the CLI, the API and the page only ever needed the totals and the problems.
"""

from __future__ import annotations

import pytest

from farmsync.prints import report as reports
from farmsync.prints.report import DETAIL_LIMIT, ItemOutcome, ItemReport, RunReport


def item(n: int, outcome: ItemOutcome) -> ItemReport:
    return ItemReport(key=f"run:{n}", run_id=n, outcome=outcome, writes=["stock", "image", "link"])


def test_a_report_of_many_runs_keeps_at_most_the_limit_with_exact_totals() -> None:
    report = RunReport(mode="backfill", unit="run")
    for n in range(1, 10_001):
        report.add(item(n, ItemOutcome.SKIPPED if n % 4 == 0 else ItemOutcome.SYNCED))
    assert len(report.items) == DETAIL_LIMIT
    assert report.totals()["synced"] == 7500 and report.totals()["skipped"] == 2500
    assert sum(report.totals().values()) == 10_000 and report.items_omitted == 10_000 - DETAIL_LIMIT
    assert [i.run_id for i in report.items] == list(range(1, DETAIL_LIMIT + 1))  # the first lines, in order
    data = report.as_dict()
    assert len(data["items"]) == DETAIL_LIMIT and data["items_omitted"] == 10_000 - DETAIL_LIMIT
    assert "detail_limit" not in data and report.ok


def test_problems_take_the_place_of_ordinary_lines() -> None:
    report = RunReport(mode="backfill", unit="run", detail_limit=10)
    problems = {500: ItemOutcome.FAILED, 777: ItemOutcome.PARKED, 900: ItemOutcome.PENDING}
    for n in range(1, 1001):
        report.add(item(n, problems.get(n, ItemOutcome.SYNCED)))
    kept = [(i.run_id, i.outcome) for i in report.items]
    assert len(kept) == 10 and kept[-3:] == list(problems.items())
    assert [n for n, _ in kept[:7]] == list(range(1, 8))
    assert report.totals() == {
        "synced": 997,
        "refreshed": 0,
        "skipped": 0,
        "pending": 1,
        "failed": 1,
        "parked": 1,
    }
    assert not report.ok


def test_problems_beyond_the_limit_are_counted_not_kept() -> None:
    report = RunReport(mode="backfill", unit="run", detail_limit=5)
    for n in range(1, 101):
        report.add(item(n, ItemOutcome.FAILED))
    assert len(report.items) == 5 and report.totals()["failed"] == 100 and report.items_omitted == 95
    assert not report.ok


def test_the_limit_is_read_when_a_report_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reports, "DETAIL_LIMIT", 2)
    report = RunReport(mode="tick", unit="run")
    for n in range(1, 4):
        report.add(item(n, ItemOutcome.SYNCED))
    assert [i.run_id for i in report.items] == [1, 2] and report.totals()["synced"] == 3


def test_lines_given_to_the_constructor_are_kept_and_counted() -> None:
    lines = [item(n, ItemOutcome.SYNCED) for n in range(1, 4)]
    report = RunReport(mode="archive", unit="run", items=lines)
    assert report.items == lines and report.totals()["synced"] == 3 and report.items_omitted == 0
