"""Errors a user can cause and fix. The CLI prints them as one line and exits with 2."""


class FmbenchError(Exception):
    """A user error: bad input, bad option, missing or corrupt data. Exit code 2."""


class DataError(FmbenchError):
    """The data set is missing, corrupt or does not match its checksum."""


class ConfigError(FmbenchError):
    """A configuration value or override is invalid."""


class RunDirError(FmbenchError):
    """A run directory is missing files, incomplete, or from another version."""


class TrainingDiverged(FmbenchError):
    """The loss became NaN or infinite; the run stopped and `best` is intact."""
