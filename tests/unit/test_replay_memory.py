"""Replay's memory stays flat with the number of records (issue 15): the driver does not hold the run's outputs.

The target answers with `Output` strings, which count themselves while alive; the progress callback, called in the
driver after each call, samples how many are alive there. Records are scored in blocks as they complete and
written to a spool file, so the count stays near a few blocks however many records the run has; before, every
output stayed until the end.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

import promptops
from promptops import replay
from promptops.replay import _scoring
from tests.conftest import Registry
from tests.unit.test_replay import PRODUCTION, TEXTS, App, captured_rows, echo_app, write_dataset

COUNTED_APP = """
import weakref

import promptops

LIVE = weakref.WeakSet()


class Output(str):
    # A string that counts itself while alive, in whichever process it is (made, or unpickled, there).
    def __new__(cls, text):
        made = super().__new__(cls, text)
        LIVE.add(made)
        return made


@promptops.track(prompt="PROMPT_NAME")
def summarize(text: str, *, prompt: promptops.Prompt) -> str:
    return Output(prompt.format(text=text))
"""


def counted_app(registry: Registry, name: str, directory: Path) -> App:
    application = App(registry, name, directory, COUNTED_APP)
    application.register("v1", PRODUCTION, alias="production")
    application.register("bad", "TL;DR. {{ text }}")
    return application


def outputs_held(
    application: App, records: int, directory: Path, **options: Any
) -> tuple[int, int, replay.ReplayResult]:
    """Replay `records` records: the most outputs alive in this process while it ran, those alive after, the result."""
    texts = [f"{TEXTS[number % len(TEXTS)]} (ticket {number})" for number in range(records)]
    data = write_dataset(directory / "tickets.jsonl", captured_rows(texts))
    # No call store: its writer batches up to `_calls._BATCH` calls (a bound of its own, not the run's).
    promptops.configure(capture=None, trace_exporter="none")
    most = [0]

    def progress(calls: int, records: int) -> Callable[[int], None]:
        del calls, records

        def tick(done: int) -> None:
            del done
            most[0] = max(most[0], len(sys.modules[application.module].LIVE))  # imported by the run

        return tick

    result = replay.run(
        application.target, candidate=application.versions["bad"], dataset=data, scorers=["exact_match"],
        log_to_mlflow=False, repeats=0, progress=progress, **options,
    )  # fmt: skip
    gc.collect()
    return most[0], len(sys.modules[application.module].LIVE), result


def test_the_driver_holds_a_few_blocks_of_outputs_not_the_run(
    local_registry: Registry, prompt_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_scoring, "_BLOCK", 16)
    application = counted_app(local_registry, prompt_name, tmp_path)
    most, after, result = outputs_held(application, 400, tmp_path, workers=4)
    assert len(result.records) == 400 and result.calls == 400 and not result.interrupted
    # A block waits for its last call: each of the calls in flight (2 x workers) can hold one back while the others
    # go on, plus the block being filled and the calls themselves. Usually two blocks; the bound, not the usual case
    # (two straggling threads on a loaded machine once went past "two blocks and the calls in flight").
    assert 0 < most <= (2 * 4 + 1) * 16 + 2 * 4, most
    assert after == 0  # the result's records are on disk, read when asked for
    first = result.records[0]
    assert first.candidate_output == f"TL;DR. {TEXTS[0]} (ticket 0)" and first.scores["exact_match"] == 0.0


def test_the_driver_reads_the_dataset_a_record_at_a_time_not_whole(
    local_registry: Registry, prompt_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dataset file's records are spooled as they are read and read back when needed (issue 15)."""
    from promptops.datasets import DatasetRecord

    monkeypatch.setattr(_scoring, "_BLOCK", 16)
    echo = echo_app(local_registry, prompt_name, tmp_path)
    texts = [f"{TEXTS[number % len(TEXTS)]} (ticket {number})" for number in range(400)]
    data = write_dataset(tmp_path / "tickets.jsonl", captured_rows(texts))
    promptops.configure(capture=None, trace_exporter="none")
    samples: list[int] = []

    def progress(calls: int, records: int) -> Callable[[int], None]:
        del calls, records
        ticks = [0]

        def tick(done: int) -> None:
            ticks[0] += done
            if ticks[0] % 40 == 0:
                samples.append(sum(type(item) is DatasetRecord for item in gc.get_objects()))  # no __class__ lookups

        return tick

    result = replay.run(
        echo.target, candidate=echo.versions["same"], dataset=data, scorers=["exact_match"], repeats=0, workers=4,
        log_to_mlflow=False, progress=progress,
    )  # fmt: skip
    assert len(samples) == 10 and len(result.records) == 400
    # As for the outputs above; all 400 when the file was read whole.
    assert max(samples) <= (2 * 4 + 1) * 16 + 2 * 4, samples
    assert [record.inputs["text"] for record in result.records] == texts


def test_spooled_records_are_the_records_in_dataset_order(
    local_registry: Registry, prompt_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks complete in any order; the result lists the records as the dataset does, equal to a list of them."""
    monkeypatch.setattr(_scoring, "_BLOCK", 8)
    echo = echo_app(local_registry, prompt_name, tmp_path)
    texts = [f"{TEXTS[number % len(TEXTS)]} (ticket {number})" for number in range(40)]
    data = write_dataset(tmp_path / "tickets.jsonl", captured_rows(texts))
    result = replay.run(echo.target, candidate=echo.versions["same"], dataset=data, workers=8, log_to_mlflow=False)
    records = list(result.records)
    assert [record.inputs["text"] for record in records] == texts
    assert result.records == records and records == result.records[:]
    assert [record.scores["rougeL"] for record in result.records] == [1.0] * 40


def test_the_spool_keeps_what_pickle_cannot_write_and_reads_the_rest_back() -> None:
    import pickle
    import threading

    from promptops.replay._result import RecordResult
    from promptops.replay._spool import Spool, SpooledRecords

    spool = Spool()
    lock = threading.Lock()  # not picklable: an output of the target's own kind, kept in memory
    handles = [spool.write(RecordResult(id=str(n), inputs={"n": n}, candidate_output=f"out {n}")) for n in range(3)]
    kept = spool.write(RecordResult(id="lock", inputs={}, candidate_output=lock))
    records = SpooledRecords(spool, [*handles, kept])
    assert [record.id for record in records] == ["0", "1", "2", "lock"] and records[3].candidate_output is lock
    assert records[1] == RecordResult(id="1", inputs={"n": 1}, candidate_output="out 1") and len(records[1:3]) == 2
    again = pickle.loads(pickle.dumps(SpooledRecords(spool, handles)))  # a plain list of the records
    assert isinstance(again, list) and again == list(SpooledRecords(spool, handles))


def test_blocks_are_consecutive_records_whatever_order_the_calls_finish_in(
    local_registry: Registry, prompt_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A block's items, hence a model's batches, do not depend on which call finished first."""
    from promptops.scorers import Score, ScoreInput, Scorer

    class Seen(Scorer):
        name = "seen"

        def __init__(self) -> None:
            self.blocks: list[list[int]] = []

        def score(self, items: Sequence[ScoreInput]) -> list[Score]:
            self.blocks.append([int(item.inputs["text"].rsplit(" ", 1)[1]) for item in items[::2]])  # candidates
            return [Score(1.0) for _ in items]

    monkeypatch.setattr(_scoring, "_BLOCK", 8)
    application = App(local_registry, prompt_name, tmp_path, JITTERY_APP)
    application.register("v1", PRODUCTION, alias="production")
    application.register("bad", "TL;DR. {{ text }}")
    data = write_dataset(tmp_path / "tickets.jsonl", captured_rows([f"ticket {n}" for n in range(60)]))
    seen = Seen()
    result = replay.run(
        application.target, candidate=application.versions["bad"], dataset=data, scorers=[seen], repeats=0,
        workers=8, log_to_mlflow=False,
    )  # fmt: skip
    assert len(result.records) == 60
    assert sorted(seen.blocks) == [list(range(start, min(start + 8, 60))) for start in range(0, 60, 8)]


JITTERY_APP = """
import random
import time

import promptops


@promptops.track(prompt="PROMPT_NAME")
def summarize(text: str, *, prompt: promptops.Prompt) -> str:
    time.sleep(random.random() / 50)  # calls finish out of order
    return prompt.format(text=text)
"""


STOPPING_APP = """
import promptops


@promptops.track(prompt="PROMPT_NAME")
def summarize(text: str, *, prompt: promptops.Prompt) -> str:
    if "(new)" in text:
        raise KeyboardInterrupt  # Ctrl-C during the run's first call not stored
    return prompt.format(text=text)
"""


def test_a_run_stopped_early_still_reuses_the_stored_calls_of_records_it_did_not_reach(
    local_registry: Registry, prompt_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jobs are made (and their stored calls looked up) as the executor reaches them; a stop reuses the rest."""
    from promptops.replay import _run

    monkeypatch.setattr(_run._Jobs, "_BATCH", 2)
    application = App(local_registry, prompt_name, tmp_path, STOPPING_APP)
    application.register("v1", PRODUCTION, alias="production")
    application.register("bad", "TL;DR. {{ text }}")
    texts = [f"{TEXTS[number % len(TEXTS)]} (ticket {number})" for number in range(20)]
    options: dict[str, Any] = {
        "candidate": application.versions["bad"], "scorers": ["exact_match"], "repeats": 0, "workers": 2,
        "log_to_mlflow": False, "store": f"sqlite:///{tmp_path / 'calls.db'}",
    }  # fmt: skip
    first = replay.run(
        application.target, dataset=write_dataset(tmp_path / "a.jsonl", captured_rows(texts[5:])), **options
    )
    assert first.calls == 15 and first.reused == 0
    new = [f"{text} (new)" for text in texts[:5]]  # not stored: the run stops at the first of them
    result = replay.run(
        application.target, dataset=write_dataset(tmp_path / "b.jsonl", captured_rows(new + texts[5:])), **options
    )
    assert result.interrupted and result.reused == 15
    assert [record.inputs["text"] for record in result.records] == texts[5:]
