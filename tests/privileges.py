"""For tests that need a permission refused while they run as root (CI does)."""

import ctypes
import os


def without_privileges():
    """A ``preexec_fn`` dropping every capability, so root is refused what file modes refuse; None for other users."""
    if os.geteuid() != 0:
        return None

    def drop_capabilities():
        libc = ctypes.CDLL(None, use_errno=True)
        for capability in range(64):
            libc.prctl(24, capability, 0, 0, 0)  # PR_CAPBSET_DROP: the command execs without any

    return drop_capabilities
