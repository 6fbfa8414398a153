"""The one error type of the serial bridge."""


class BridgeError(Exception):
    """A problem on the serial side (port cannot be opened, bad protocol use).

    ``code`` is a short machine-readable reason, e.g. ``"port_open_failed"``.
    """

    def __init__(self, message: str, code: str = "bridge_error"):
        super().__init__(message)
        self.code = code
