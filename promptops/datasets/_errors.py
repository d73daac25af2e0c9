"""The errors `promptops.datasets` raises: one line each, naming the problem and the fix."""

from __future__ import annotations

from .._errors import PromptopsError

__all__ = ["DatasetError", "DatasetExistsError", "DatasetFormatError", "DatasetNotFoundError"]


class DatasetError(PromptopsError):
    """A dataset cannot be made, stored, read, written or transferred. The message says why and what to do."""


class DatasetNotFoundError(DatasetError, LookupError):
    """No dataset of that name: not in the capture store (`load`, `delete`), nor in MLflow (`pull`)."""


class DatasetExistsError(DatasetError):
    """A dataset of that name exists already. Datasets are immutable: save the new one under another name.

    Attributes:
        name: The name asked for.
        suggestion: A free name to use instead (`summarize-nov-2` for `summarize-nov`).
    """

    def __init__(self, message: str, *, name: str, suggestion: str) -> None:
        """Create the error.

        Args:
            message: The one-line message.
            name: The name asked for.
            suggestion: A free name to suggest.
        """
        super().__init__(message)
        self.name = name
        self.suggestion = suggestion


class DatasetFormatError(DatasetError, ValueError):
    """A file or a record is not a valid dataset: the message names the line (or row) and the reason.

    Attributes:
        path: The file, when the problem is in one.
        line: Its 1-based line (JSONL) or row (Parquet) number, when the problem is in one record.
    """

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        """Create the error.

        Args:
            message: The one-line message.
            path: The file, when the problem is in one.
            line: The 1-based line or row number, when the problem is in one record.
        """
        super().__init__(message)
        self.path = path
        self.line = line
