"""The error type for bad data on disk; messages name the file, the row and the value."""

from medran.errors import InputError


class DataError(InputError):
    """A data file is missing, malformed, or breaks the canonical contract."""
