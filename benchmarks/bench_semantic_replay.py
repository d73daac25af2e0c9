"""Semantic scoring inside a replay against a raw encode of the same texts (issue 15), side by side in one process.

Run with `.venv/bin/python benchmarks/bench_semantic_replay.py` (`--records N`, `--exporter none|mlflow`). A real
replay of N records (a zero-latency target whose outputs differ from the captured ones, the baseline re-run once,
scorer `semantic` only, spans exported to a sqlite MLflow store by default) runs with the model's `encode`
counted: the texts it was given and the seconds spent in it. Then the very same texts are encoded again, raw
(`model.encode(texts, batch_size=32, normalize_embeddings=True)`), in the same process with nothing else running.
Both rates are texts per second of wall time; the replay's "scoring" figure is the whole scoring phase (hashing,
caches, the disk cache, dot products included), so the gap between it and the raw figure is what replay adds.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
os.environ["MLFLOW_MODEL_CATALOG_URI"] = ""

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_replay_memory import prepare, write_dataset


class Counting:
    """Counts the texts the real model encodes and the seconds spent in its `encode`."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.original = model.encode
        self.texts: list[str] = []
        self.seconds = 0.0
        model.encode = self

    def __call__(self, texts: list[str], **kwargs: Any) -> Any:
        self.texts.extend(texts)
        start = time.perf_counter()
        try:
            return self.original(texts, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--exporter", default="mlflow")
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    import torch

    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        os.chdir(workdir)
        import promptops
        from promptops import replay
        from promptops.replay import _run
        from promptops.scorers import Semantic, _semantic

        target = prepare(workdir, args.exporter)

        model = Semantic().load()
        replay.run(target, candidate=2, dataset=write_dataset(workdir, 20, offset=10**6), scorers=["semantic"],
                   log_to_mlflow=False)  # fmt: skip  # warm-up: imports, the model's first passes
        promptops.flush(timeout=60)
        counting = Counting(model)
        scoring = [0.0]
        original_score = _run._score

        def timed_score(*a: Any, **k: Any) -> Any:
            start = time.perf_counter()
            try:
                return original_score(*a, **k)
            finally:
                scoring[0] += time.perf_counter() - start

        _run._score = timed_score
        load = os.getloadavg()[0]
        started = time.perf_counter()
        result = replay.run(target, candidate=2, dataset=write_dataset(workdir, args.records), scorers=["semantic"],
                            workers=args.workers, log_to_mlflow=False)  # fmt: skip
        total = time.perf_counter() - started
        _run._score = original_score
        model.encode = counting.original
        assert len(result.records) == args.records, result.skipped
        texts = counting.texts
        promptops.flush(timeout=300)
        _semantic.clear_memory_cache()
        raw_start = time.perf_counter()
        model.encode(texts, batch_size=32, show_progress_bar=False, normalize_embeddings=True)
        raw = time.perf_counter() - raw_start
        words = sum(len(text.split()) for text in texts) / max(1, len(texts))
        print(f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; torch threads "
              f"{torch.get_num_threads()}; exporter {args.exporter}; {args.records} records, replay {total:.1f} s")  # fmt: skip
        print(f"texts encoded inside the replay: {len(texts)} (mean {words:.0f} words)")
        print(f"  replay scoring phase : {scoring[0]:7.2f} s  {len(texts) / scoring[0]:6.0f} texts/s")
        print(f"  of which in encode() : {counting.seconds:7.2f} s  {len(texts) / counting.seconds:6.0f} texts/s")
        print(f"  raw encode, same texts: {raw:7.2f} s  {len(texts) / raw:6.0f} texts/s")


if __name__ == "__main__":
    main()
