"""Scheduled conditions of the simulated device: :class:`Condition` and :func:`parse_condition`.

A condition is ``KIND[:ARG]:START-END`` in seconds since the stream started
(``--conditions``, repeatable, comma-separated):

==============================  =================================================
``flat:EDA:30-60``              the channel holds its last value (a stuck sensor)
``saturate:BVP:10-20``          the ADC reads full scale (``raw_max``); the status
                                frames flag the channel as saturated
``leadoff:RESP:40-50``          the status frames flag a lead off; the signal is
                                low noise around the middle of the ADC range
``disconnect:70-75``            the link goes away and comes back
                                (see :mod:`firmware_bridge.simulator.links`)
``reboot:80-82``                the device is off, then boots with a new boot id
``stall:90-95``                 nothing is sent, then the frames come in a burst
``pain:high:100-160``           generator only: a pain episode of low or high level
                                (responses 1-3 s after the start, fading after the end)
==============================  =================================================

A window covers the blocks that start inside it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Condition", "parse_condition"]

SIGNAL_KINDS = ("flat", "saturate", "leadoff")
LINK_KINDS = ("disconnect", "reboot", "stall")


@dataclass(frozen=True)
class Condition:
    """One scheduled condition: ``kind`` during stream seconds ``[start_s, end_s)``.

    ``target`` is the channel name for flat/saturate/leadoff, the level
    (``low``/``high``) for pain, and empty for disconnect/reboot/stall.
    """

    kind: str
    target: str
    start_s: float
    end_s: float

    def active(self, t: float) -> bool:
        """Whether stream time ``t`` (s) is inside the window."""
        return self.start_s <= t < self.end_s


_CONDITION_FORMS = (
    "KIND:CHANNEL:START-END with KIND flat, saturate or leadoff (e.g. flat:EDA:30-60), "
    "pain:LEVEL:START-END with LEVEL low or high, or disconnect|reboot|stall:START-END"
)


def parse_condition(spec: str) -> Condition:
    """Parse ``"flat:EDA:30-60"``, ``"pain:high:10-20"`` or ``"disconnect:70-75"``.

    Channel names are checked later, against the device's channels.
    """
    parts = spec.strip().split(":")
    kind = parts[0].lower() if parts else ""
    window = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*-\s*(\d+(?:\.\d*)?)\s*", parts[-1]) if len(parts) > 1 else None
    expected_parts = 2 if kind in LINK_KINDS else 3
    if kind not in SIGNAL_KINDS + LINK_KINDS + ("pain",) or len(parts) != expected_parts or window is None:
        raise ValueError(f"condition {spec!r} is not of the form {_CONDITION_FORMS}")
    start, end = float(window.group(1)), float(window.group(2))
    if end <= start:
        raise ValueError(f"condition {spec!r}: the window must end after it starts, got {start:g}-{end:g} s")
    target = parts[1] if expected_parts == 3 else ""
    if kind == "pain" and target.lower() not in ("low", "high"):
        raise ValueError(f"condition {spec!r}: the pain level must be low or high, got {target!r}")
    return Condition(kind, target.lower() if kind == "pain" else target, start, end)


def _parse_conditions(specs) -> tuple[Condition, ...]:
    out = []
    for spec in specs or ():
        if isinstance(spec, Condition):
            out.append(spec)
        else:
            out.extend(parse_condition(part) for part in str(spec).split(",") if part.strip())
    return tuple(out)

