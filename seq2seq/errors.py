"""Errors that reach the user as one clear line and a non-zero exit code.

Everything the user can fix (a config typo, a missing corpus, a damaged checkpoint) raises a
subclass of :class:`Seq2SeqError`; the command-line entry points print its message and exit
with status 2 instead of showing a traceback. Anything else is a bug and keeps its traceback.
"""


class Seq2SeqError(Exception):
    """An error caused by input the user controls; the message says how to fix it."""


class ConfigError(Seq2SeqError):
    """An unknown, mistyped or out-of-range configuration value."""


class DataError(Seq2SeqError):
    """A missing, misaligned or unusable corpus."""


class CheckpointError(Seq2SeqError):
    """A missing, damaged, unsafe or incompatible checkpoint."""


class RunDirError(Seq2SeqError):
    """A run directory that would be overwritten, or cannot be resumed."""


class TrainingError(Seq2SeqError):
    """Training cannot go on (e.g. the loss became NaN); the message names the last good checkpoint."""
