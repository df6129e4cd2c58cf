"""Errors a user can cause. Each names the file, line, field or module at fault and says what to do."""


class CirError(Exception):
    """Base class of every error `cir` raises on bad input or an impossible request."""


class ConfigError(CirError):
    """A config file or a `key=value` override is wrong: unknown key, missing key or wrong type."""


class DataError(CirError):
    """A fact file or text file is malformed; the message names `file:line` and the field."""


class ModelError(CirError):
    """The model cannot be used: unsupported architecture, missing modules, layer out of range."""


class OutputExistsError(CirError):
    """The output folder exists and `force` was not given."""


class BudgetError(CirError):
    """No model within the disruption budget could be returned."""
