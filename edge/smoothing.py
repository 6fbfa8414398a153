"""Temporal smoothing of per-window class probabilities.

One window says little: a movement artefact can flip it. The monitor reports
a *smoothed* label next to the raw one, using one of:

``ema`` (default)
    exponential moving average of the probabilities,
    ``s_t = alpha * p_t + (1 - alpha) * s_{t-1}``, ``s_0 = p_0``; the label is
    ``argmax(s_t)``. With ``alpha = 0.5`` a window's weight halves with each
    newer window; it reacts within two or three windows to a lasting change.
``majority``
    the most frequent raw label over the last ``windows`` windows; a tie goes
    to the tied class with the highest mean probability over those windows.
    The smoothed probabilities are the mean over the same windows.
``none``
    the raw probabilities and label.

Windows whose signal quality is not ok are *unreliable*
(:mod:`edge.quality`): they do not update the state, and the smoother
returns its last reliable output (or the window's own, before any reliable
window was seen).
"""

from __future__ import annotations

from collections import deque

import numpy as np

__all__ = ["SMOOTHING_METHODS", "Smoother", "ExponentialSmoother", "MajoritySmoother", "create_smoother"]

SMOOTHING_METHODS = ("ema", "majority", "none")


class Smoother:
    """No smoothing: the base of the smoothers, and the ``none`` method.

    :meth:`update` takes one window's probabilities and returns
    ``(smoothed_probabilities, smoothed_label_index)``.
    """

    def __init__(self):
        self._last: tuple[np.ndarray, int] | None = None

    def update(self, probabilities, reliable: bool = True) -> tuple[np.ndarray, int]:
        """Add one window; return the smoothed probabilities and label index.

        Parameters
        ----------
        probabilities : array_like, shape (n_classes,)
            The window's class probabilities.
        reliable : bool
            False for a window with bad signal quality: it leaves the state
            unchanged.

        Returns
        -------
        (numpy.ndarray, int)
            Smoothed probabilities (float64, sum 1) and the smoothed label index.
        """
        probabilities = np.asarray(probabilities, dtype=np.float64)
        if probabilities.ndim != 1 or probabilities.size < 2 or not np.isfinite(probabilities).all():
            raise ValueError(f"probabilities must be a finite 1-D array of >= 2 classes, got {probabilities!r}")
        if not reliable:
            if self._last is not None:
                return self._last[0].copy(), self._last[1]
            return probabilities.copy(), int(np.argmax(probabilities))
        smoothed, label = self._combine(probabilities)
        self._last = (smoothed, label)
        return smoothed.copy(), label

    def reset(self) -> None:
        """Forget all past windows."""
        self._last = None

    def _combine(self, probabilities: np.ndarray) -> tuple[np.ndarray, int]:
        return probabilities.copy(), int(np.argmax(probabilities))


class ExponentialSmoother(Smoother):
    """Exponential moving average of the probabilities (``ema``).

    Parameters
    ----------
    alpha : float
        Weight of the newest window, in (0, 1]; 1 means no smoothing.

    Examples
    --------
    >>> smoother = ExponentialSmoother(alpha=0.5)
    >>> smoother.update([1.0, 0.0, 0.0])[1], smoother.update([0.0, 0.0, 1.0])[1]
    (0, 0)
    >>> smoother.update([0.0, 0.0, 1.0])
    (array([0.25, 0.  , 0.75]), 2)
    """

    def __init__(self, alpha: float = 0.5):
        super().__init__()
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be a number in (0, 1], got {alpha!r}; 0.5 is a good start")
        self.alpha = float(alpha)

    def _combine(self, probabilities: np.ndarray) -> tuple[np.ndarray, int]:
        if self._last is None:
            state = probabilities.copy()
        else:
            state = self.alpha * probabilities + (1.0 - self.alpha) * self._last[0]
        return state, int(np.argmax(state))


class MajoritySmoother(Smoother):
    """Majority vote of the raw labels over the last ``windows`` windows (``majority``).

    Parameters
    ----------
    windows : int
        Number of recent reliable windows that vote, >= 1.

    Examples
    --------
    >>> smoother = MajoritySmoother(windows=3)
    >>> [smoother.update(p)[1] for p in ([.1, .9, 0], [.8, .2, 0], [.2, .7, .1], [.9, .1, 0], [.9, .1, 0])]
    [1, 1, 1, 0, 0]
    """

    def __init__(self, windows: int = 5):
        super().__init__()
        if isinstance(windows, bool) or not isinstance(windows, int) or windows < 1:
            raise ValueError(f"windows must be an integer >= 1, got {windows!r}; 5 is a good start")
        self.windows = windows
        self._recent: deque[np.ndarray] = deque(maxlen=windows)

    def reset(self) -> None:
        super().reset()
        self._recent.clear()

    def _combine(self, probabilities: np.ndarray) -> tuple[np.ndarray, int]:
        self._recent.append(probabilities)
        recent = np.stack(self._recent)
        votes = np.bincount(recent.argmax(axis=1), minlength=recent.shape[1])
        mean = recent.mean(axis=0)
        tied = np.flatnonzero(votes == votes.max())
        return mean, int(tied[np.argmax(mean[tied])])


def create_smoother(method: str = "ema", *, alpha: float = 0.5, windows: int = 5) -> Smoother:
    """A smoother by name (one of :data:`SMOOTHING_METHODS`).

    Parameters
    ----------
    method : str
        ``"ema"``, ``"majority"`` or ``"none"``.
    alpha : float
        ``ema`` only: weight of the newest window.
    windows : int
        ``majority`` only: windows that vote.
    """
    if method == "ema":
        return ExponentialSmoother(alpha)
    if method == "majority":
        return MajoritySmoother(windows)
    if method == "none":
        return Smoother()
    raise ValueError(f"unknown smoothing method {method!r}; allowed: {list(SMOOTHING_METHODS)}")
