"""The base of every error caused by bad input (params, data files, failed quality gates).

Stage scripts turn these into a one-paragraph message and exit status 2; any other
exception is a bug and keeps its traceback.
"""


class InputError(ValueError):
    """Bad user input; the message names the key, file or row, the value and what is allowed."""
