"""One base error with a few kinds. The CLI prints any of them as one line."""


class AmoskysError(Exception):
    """Base of every error AMOSKYS raises on purpose; its message is one clear line."""

    kind = "error"


class ConfigError(AmoskysError):
    kind = "config error"


class TransportError(AmoskysError):
    kind = "transport error"


class StoreError(AmoskysError):
    kind = "store error"


class ModelError(AmoskysError):
    kind = "model error"


class InputError(AmoskysError):
    kind = "input error"
