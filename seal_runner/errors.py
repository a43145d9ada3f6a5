"""Errors a user causes and can fix (a bad data file, a missing model path): `seal-run` prints their
message and exits 1 instead of a traceback, since nothing inside the package went wrong."""


class InputError(ValueError):
    """Bad input named precisely (file, item, key, value); subclasses keep ValueError semantics."""
