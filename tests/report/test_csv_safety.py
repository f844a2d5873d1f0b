"""CSV files never hand a spreadsheet a formula (OWASP CSV injection), and read back exactly."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from mialens.audit.results import AuditResult
from mialens.report.tables import read_samples, samples_table, table_csv, text_cell
from mialens.workflows.outputs import load_result, write_outputs

# every formula prefix, ids that merely look escaped, and harmless ones
IDS = [
    '=HYPERLINK("http://evil.example","click")',
    "+1+1",
    "-2",
    "@SUM(A1)",
    "\tx",
    "\rx",
    "'=already quoted",
    "''+two quotes",
    "'plain quote",
    "plain",
    "",
]


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def _dangerous(cell: str) -> bool:
    return cell[:1] in ("=", "+", "-", "@", "\t", "\r")


def _result(ids) -> AuditResult:
    n = len(ids)
    gen = np.random.default_rng(5)
    members = np.zeros((2, n), bool)
    members[0, ::2] = members[1, 1::2] = True
    return AuditResult(
        sample_ids=np.asarray(ids),
        labels=gen.integers(0, 3, size=n),
        members=members,
        target_models=[0, 1],
        scores={"loss": -gen.exponential(size=(2, n))},  # negative scores stay numbers
        attacks={"loss": {"paper": "x"}},
        fpr_levels=[0.1],
        config={"audit": {}},
    )


def test_samples_csv_neutralises_formulas_in_ids_only():
    result = _result(IDS)
    rows = _rows(samples_table(result))[1:]
    assert not any(_dangerous(row[0]) for row in rows)
    assert rows[0][0] == '\'=HYPERLINK("http://evil.example","click")'
    assert rows[6][0] == "''=already quoted" and rows[8][0] == "'plain quote"
    scores = [float(row[4]) for row in rows]  # the score column holds plain numbers
    assert all(row[4].startswith("-") for row in rows) and max(scores) < 0


def test_samples_csv_reads_ids_back_exactly(tmp_path):
    result = _result(IDS)
    result.compute_metrics(0, 0)
    write_outputs(result, tmp_path)
    table = read_samples(tmp_path / "samples.csv")
    assert table["sample_id"][: len(IDS)].tolist() == IDS
    loaded = load_result(tmp_path)
    assert loaded.sample_ids.tolist() == IDS
    np.testing.assert_array_equal(loaded.scores["loss"], result.scores["loss"])


def test_numeric_ids_are_written_as_numbers():
    result = _result(np.array([-3, 7, -1]))
    rows = _rows(samples_table(result))[1:]
    assert [row[0] for row in rows[:3]] == ["-3", "7", "-1"]


@pytest.mark.parametrize("text_dtype", [str, object])
def test_table_csv_neutralises_text_cells_only(text_dtype):
    columns = {
        "sample_id": np.array(IDS, dtype=text_dtype),
        "score": -np.arange(len(IDS), dtype=np.float64) - 0.5,
        "count": -np.arange(len(IDS)),
        "flag": np.arange(len(IDS)) % 2 == 0,
    }
    rows = _rows(table_csv(columns))
    assert rows[0] == ["sample_id", "score", "count", "flag"]
    body = rows[1:]
    assert not any(_dangerous(row[0]) for row in body)
    assert [row[1] for row in body[:2]] == ["-0.5", "-1.5"]
    assert [row[2] for row in body[:3]] == ["0", "-1", "-2"]
    assert body[0][3] == "True"


def test_table_csv_neutralises_column_names():
    rows = _rows(table_csv({"=cmd()": np.zeros(1)}))
    assert rows[0] == ["'=cmd()"]


def test_original_text_labels_are_neutralised_and_read_back(tmp_path):
    result = _result(["b", "a", "c", "d"])
    values = ["=cmd|' /C calc'!A0", "-1+1", "cat"]
    result.design["label_values"] = values
    rows = _rows(samples_table(result))[1:]
    assert not any(_dangerous(row[1]) for row in rows)
    result.compute_metrics(0, 0)
    write_outputs(result, tmp_path)
    table = read_samples(tmp_path / "samples.csv")
    assert table["label"][:4].tolist() == [values[c] for c in result.labels.tolist()]
    np.testing.assert_array_equal(load_result(tmp_path).labels, result.labels)


def test_original_labels_that_only_look_numeric_are_neutralised():
    result = _result(["b", "a", "c", "d"])
    result.design["label_values"] = ["+1", "2", "3"]  # "+1" is text, and a formula prefix
    rows = _rows(samples_table(result))[1:]
    assert not any(_dangerous(row[1]) for row in rows)


def test_samples_csv_is_what_the_csv_module_writes_row_by_row():
    ids = [*IDS, "a,b", 'say "hi"', "two\nlines", " padded "]
    result = _result(ids)
    result.scores["=odd,name"] = np.round(result.scores["loss"], 1) * 1e-7  # 1e-08 style
    expected = io.StringIO()
    writer = csv.writer(expected, lineterminator="\r\n")
    writer.writerow(["sample_id", "label", "target", "member", "loss", "'=odd,name"])
    for row, target in enumerate(result.target_models):
        for i, sample in enumerate(ids):
            scores = [repr(float(s[row, i])) for s in result.scores.values()]
            member = int(result.members[row, i])
            writer.writerow([text_cell(sample), int(result.labels[i]), target, member, *scores])
    assert samples_table(result) == expected.getvalue()


def test_table_csv_is_what_the_csv_module_writes_row_by_row():
    columns = {
        "only": np.array(["", "x", "a,b", "=1"]),  # a lone empty cell is written as ""
    }
    expected = io.StringIO()
    csv.writer(expected, lineterminator="\r\n").writerows([["only"], [""], ["x"], ["a,b"], ["'=1"]])
    assert table_csv(columns) == expected.getvalue()
    assert table_csv({"empty": np.array([], dtype=float)}) == "empty\r\n"
