"""Dataset files: JSONL and Parquet round trips, and malformed files refused with the line and the reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from promptops import datasets
from promptops.datasets import Dataset, DatasetError, DatasetFormatError, DatasetRecord

from .test_datasets import AWKWARD, awkward_dataset


def write_lines(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".JSONL"])
def test_round_trip_exactly(tmp_path: Path, suffix: str) -> None:
    dataset = awkward_dataset()
    path = tmp_path / f"awkward{suffix}"
    datasets.write_file(dataset, path)
    back = datasets.read_file(path)
    assert back.records == dataset.records
    assert [json.dumps(r.to_dict()) for r in back.records] == [json.dumps(r.to_dict()) for r in dataset.records]
    assert back.fingerprint == dataset.fingerprint
    assert back.name == "awkward" and back.source == f"file:awkward{suffix}"
    assert back.filters == {"file": str(path), "format": suffix[1:].lower()}
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


def test_jsonl_to_parquet_to_jsonl(tmp_path: Path) -> None:
    dataset = awkward_dataset()
    datasets.write_file(dataset, tmp_path / "a.jsonl")
    datasets.write_file(datasets.read_file(tmp_path / "a.jsonl"), tmp_path / "b.parquet")
    datasets.write_file(datasets.read_file(tmp_path / "b.parquet"), tmp_path / "c.jsonl")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "c.jsonl").read_bytes()


def test_jsonl_is_one_readable_object_per_line(tmp_path: Path) -> None:
    dataset = Dataset("d", [DatasetRecord("a", {"text": "東京"}, output="out", expected=None, metadata={"k": 1})])
    datasets.write_file(dataset, tmp_path / "d.jsonl")
    assert (tmp_path / "d.jsonl").read_text(encoding="utf-8") == (
        '{"id":"a","inputs":{"text":"東京"},"output":"out","expected":null,"metadata":{"k":1}}\n'
    )


def test_parquet_columns_are_json_text(tmp_path: Path) -> None:
    datasets.write_file(Dataset("d", [DatasetRecord("a", {"n": 1}, output=None, expected=[1])]), tmp_path / "d.parquet")
    table = pq.read_table(tmp_path / "d.parquet")
    assert table.column_names == ["id", "inputs", "output", "expected", "metadata"]
    assert table.to_pylist() == [
        {"id": "a", "inputs": '{"n":1}', "output": "null", "expected": "[1]", "metadata": "{}"}
    ]


def test_hand_written_jsonl(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "cases.jsonl",
        '\ufeff{"inputs": {"q": "first"}, "expected": "A"}',
        "",
        '{"id": 17, "inputs": {"q": "second"}, "output": null, "metadata": null}',
        "   ",
        '{"inputs": {}, "id": "x-1", "metadata": {"source": "support"}}',
        '{"inputs": {"q": "fourth"}}',
    )
    dataset = datasets.read_file(path)
    assert [r.id for r in dataset.records] == ["1", "17", "x-1", "6"]  # no id: the line number
    assert dataset.records[0] == DatasetRecord("1", {"q": "first"}, expected="A")
    assert dataset.records[1].metadata == {} and dataset.records[2].metadata == {"source": "support"}


def test_hand_written_parquet(tmp_path: Path) -> None:
    table = pa.table(
        {
            "id": pa.array([None, 5], type=pa.int64()),
            "inputs": ['{"q": "a"}', '{"q": "b"}'],
            "expected": ['"A"', None],
        }
    )
    pq.write_table(table, tmp_path / "cases.parquet")
    dataset = datasets.read_file(tmp_path / "cases.parquet")
    assert dataset.records == (DatasetRecord("1", {"q": "a"}, expected="A"), DatasetRecord("5", {"q": "b"}))


JSONL_CASES: list[tuple[list[str], str]] = [
    (['{"inputs": {}}', '{"inputs": {}}', '{"inputs": {"a": 1}'], r"line 3: not valid JSON: Expecting ',' delimiter"),
    (['{"inputs": ["a"]}'], r"line 1: inputs is a list; it must be an object of the target's keyword arguments"),
    (['{"inputs": "text"}'], r"line 1: inputs is text; it must be an object"),
    (['{"input": {"a": 1}}'], r"line 1: unknown key 'input'; a record has id, inputs, output, expected and metadata"),
    (['{"output": "x"}'], r'line 1: no inputs; each record needs "inputs"'),
    (['{"inputs": null}'], r"line 1: no inputs"),
    (["[1, 2]"], r'line 1: expected a JSON object such as \{"inputs": \{...\}\}, got a list'),
    (["42"], r"line 1: expected a JSON object .*, got a number"),
    (['{"inputs": {"a": NaN}}'], r"line 1: not valid JSON: NaN is not JSON"),
    (['{"inputs": {"a": 1}, "output": Infinity}'], r"line 1: not valid JSON: Infinity is not JSON"),
    (['{"inputs": {}, "metadata": [1]}'], r"line 1: metadata is a list; it must be an object"),
    (['{"inputs": {}, "id": true}'], r"line 1: id is a boolean; it must be text or a whole number"),
    (['{"inputs": {}, "id": ""}'], r"line 1: record id '' is not usable"),
    (
        ['{"inputs": {"a": "\\ud800"}}'],
        r"line 1: holds text that is not valid Unicode \(a lone surrogate such as \\ud800\)",
    ),
    (
        ['{"id": "a", "inputs": {}}', '{"inputs": {}}', '{"id": "a", "inputs": {}}'],
        r"line 3: id 'a' is already used on line 1",
    ),
    (['{"inputs": {}}', '{"id": "1", "inputs": {}}'], r"line 2: id '1' is already used on line 1"),
]


@pytest.mark.parametrize(("lines", "message"), JSONL_CASES)
def test_malformed_jsonl(tmp_path: Path, lines: list[str], message: str) -> None:
    path = write_lines(tmp_path / "bad.jsonl", *lines)
    with pytest.raises(DatasetFormatError, match=rf"^{path}: {message}") as raised:
        datasets.read_file(path)
    assert "\n" not in str(raised.value)
    assert raised.value.path == str(path) and raised.value.line == int(message.split(":")[0].split()[1])


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"inputs": {}}\n{"inputs": {"city": "Z\xfcrich"}}\n')
    with pytest.raises(DatasetFormatError, match=r"latin1\.jsonl: line 2: not UTF-8 text \(byte 23 of the line\)"):
        datasets.read_file(path)


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DatasetFormatError, match=r"empty\.jsonl: the file holds no records; write one record per line"):
        datasets.read_file(path)


def test_empty_parquet(tmp_path: Path) -> None:
    pq.write_table(pa.table({"inputs": pa.array([], type=pa.string())}), tmp_path / "empty.parquet")
    with pytest.raises(
        DatasetFormatError, match=r"empty\.parquet: the file holds no records; write one record per row"
    ):
        datasets.read_file(tmp_path / "empty.parquet")


def parquet(path: Path, columns: dict[str, Any]) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"inputs": ['{"a": 1}', '{"a": 2'], "output": ["1", "2"]}, r"row 2: inputs is not valid JSON text: Expecting"),
        ({"inputs": ['{"a": 1}', None]}, r"row 2: no inputs"),
        ({"inputs": ['{"a": 1}', "[1]"]}, r"row 2: inputs is a list; it must be an object"),
        ({"inputs": ['{"a": 1}'], "output": ["NaN"]}, r"row 1: output is not valid JSON text: NaN is not JSON"),
        (
            {"inputs": ['{"a": 1}'], "extra": ["1"]},
            r"unknown column 'extra'; a dataset file has the columns id, inputs",
        ),
        ({"output": ['"x"']}, r"no inputs column; each row needs its inputs as JSON text"),
        ({"inputs": [{"a": 1}]}, r"column 'inputs' holds struct<a: int64>, not text; each value must be JSON text"),
        ({"inputs": ['{"a": 1}'], "id": [1.5]}, r"column 'id' holds double, not text"),
    ],
)
def test_malformed_parquet(tmp_path: Path, columns: dict[str, Any], message: str) -> None:
    path = parquet(tmp_path / "bad.parquet", columns)
    with pytest.raises(DatasetFormatError, match=rf"^{path}: {message}"):
        datasets.read_file(path)


def test_not_a_parquet_file(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "fake.parquet", '{"inputs": {}}')
    with pytest.raises(DatasetFormatError, match=r"fake\.parquet: not a readable Parquet file \(.*magic bytes"):
        datasets.read_file(path)


@pytest.mark.parametrize("name", ["data.csv", "data.json", "data"])
def test_unknown_extension(tmp_path: Path, name: str) -> None:
    write_lines(tmp_path / name, '{"inputs": {}}')
    kind = f"'{Path(name).suffix}'" if Path(name).suffix else r"\(no extension\)"
    with pytest.raises(DatasetFormatError, match=rf"unknown dataset file type {kind}; use a \.jsonl .* or \.parquet"):
        datasets.read_file(tmp_path / name)
    with pytest.raises(DatasetFormatError, match=r"unknown dataset file type"):
        datasets.write_file(awkward_dataset(), tmp_path / f"out-{name}")
    assert not (tmp_path / f"out-{name}").exists()


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"cannot read .*nope\.jsonl: No such file or directory"):
        datasets.read_file(tmp_path / "nope.jsonl")
    for name in ("out.jsonl", "out.parquet"):
        with pytest.raises(DatasetError, match=rf"cannot write .*missing/{name}: No such file or directory"):
            datasets.write_file(awkward_dataset(), tmp_path / "missing" / name)
    assert [p.name for p in tmp_path.iterdir()] == []


def test_writing_replaces_all_or_nothing(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text("old\n", encoding="utf-8")
    datasets.write_file(awkward_dataset(), path)
    assert len(path.read_text(encoding="utf-8").splitlines()) == len(AWKWARD)


def test_a_parquet_file_is_read_in_batches_with_its_row_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from promptops.datasets import _files

    monkeypatch.setattr(_files, "_PARQUET_BATCH", 7)  # several batches, the last one short
    records = [DatasetRecord(f"r{n}", {"n": n}, output=f"out {n}") for n in range(30)]
    path = tmp_path / "many.parquet"
    datasets.write_file(Dataset("many", records), path)
    back = datasets.read_file(path)
    assert back.records == tuple(records) and back.fingerprint == Dataset("x", records).fingerprint
    inputs = [f'{{"n": {n}}}' for n in range(30)]
    inputs[22] = '{"n": '
    with pytest.raises(DatasetFormatError, match=r"bad\.parquet: row 23: inputs is not valid JSON text"):
        datasets.read_file(parquet(tmp_path / "bad.parquet", {"inputs": inputs}))
    ids = [f"r{n}" for n in range(30)]
    ids[25] = "r3"
    with pytest.raises(DatasetFormatError, match=r"row 26: id 'r3' is already used on row 4"):
        datasets.read_file(
            parquet(tmp_path / "twice.parquet", {"id": ids, "inputs": [f'{{"n": {n}}}' for n in range(30)]})
        )


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_file_records_stream_what_read_file_collects(tmp_path: Path, suffix: str) -> None:
    from promptops.datasets._files import FileRecords

    dataset = awkward_dataset()
    path = tmp_path / f"awkward{suffix}"
    datasets.write_file(dataset, path)
    file = FileRecords(path)
    assert file.fingerprint is None
    stream = iter(file)
    assert next(stream) == dataset.records[0]  # one record read, the rest not yet
    assert file.fingerprint is None
    assert [dataset.records[0], *stream] == list(dataset.records)
    assert file.fingerprint == dataset.fingerprint
    assert (file.name, file.source, file.filters) == (
        "awkward",
        f"file:awkward{suffix}",
        datasets.read_file(path).filters,
    )
