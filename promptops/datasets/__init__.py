"""Datasets: named, immutable lists of records that replay runs on.

* `from_captures()` selects captured calls (filters, most recent N, a reproducible sample, de-duplication);
  `read_file()` reads a `.jsonl` / `.parquet` file; `pull()` reads an MLflow evaluation dataset. None of them
  saves anything.
* `create(name, dataset)` saves a dataset in the capture store (the `capture` setting), in one transaction.
  A name is never reused for other content: creating an existing name fails (`DatasetExistsError`, with a
  free name to use). `load(name)`, `list_datasets()` and `delete(name)` do the rest.
* `write_file()` exports a dataset to JSONL or Parquet; `push()` copies it into MLflow
  (`mlflow.genai.datasets`).

```python
import promptops
from promptops import datasets

@promptops.track(prompt="greet", fallback="Hello, {{name}}!")
def greet(name: str, *, prompt: promptops.Prompt) -> str:
    return prompt.format(name=name)

for name in ["Ada", "Grace", "Ada"]:
    greet(name)
promptops.flush()

saved = datasets.create("greetings-v1", datasets.from_captures(function=greet.__module__ + ":greet", dedupe=True))
assert [record.inputs for record in datasets.load("greetings-v1").records] == [{"name": "Ada"}, {"name": "Grace"}]
```

Importing this package does not import SQLAlchemy, pyarrow or MLflow: each is imported when first needed.
"""

from __future__ import annotations

from ._captures import from_captures, record_from_capture
from ._errors import DatasetError, DatasetExistsError, DatasetFormatError, DatasetNotFoundError
from ._files import read_file, write_file
from ._mlflow import PushResult, pull, push
from ._model import Dataset, DatasetInfo, DatasetRecord
from ._storage import create, delete, list_datasets, load

__all__ = [
    "Dataset",
    "DatasetError",
    "DatasetExistsError",
    "DatasetFormatError",
    "DatasetInfo",
    "DatasetNotFoundError",
    "DatasetRecord",
    "PushResult",
    "create",
    "delete",
    "from_captures",
    "list_datasets",
    "load",
    "pull",
    "push",
    "read_file",
    "record_from_capture",
    "write_file",
]
