"""The one exception type that the CLI turns into a single clear line and a non-zero exit."""


class BertbenchError(Exception):
    """A problem with the user's input or environment: reported as one line, never as a traceback."""

    exit_code = 1


class UsageError(BertbenchError):
    """A malformed command line (unknown option, bad value)."""

    exit_code = 2


class DataProblemsError(BertbenchError):
    """--strict-data and the data has skipped or suspect rows."""

    exit_code = 2


class AccuracyGuardError(BertbenchError):
    """--strict and the accuracy target was missed; the records were written and travel with the error."""

    exit_code = 3

    def __init__(self, message: str, records: list | None = None) -> None:
        super().__init__(message)
        self.records = records or []
