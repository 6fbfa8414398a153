"""The one error type of the device runtime."""


class EdgeError(Exception):
    """A user-facing problem (bad bundle, bad config, bad port...).

    The message says what is wrong and what to do; the ``biomoe`` CLI prints it
    on one line and exits non-zero, without a traceback.
    """
