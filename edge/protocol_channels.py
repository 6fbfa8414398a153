"""The protocol's channels and units, and the names and units others give them.

One table for everything that reads channels named by someone else: the
field's recording formats (:mod:`edge.recording.formats`) and sensor boards
that describe their channels in their own words (:mod:`edge.device_channels`).

=======  ===========  ==========================================================
channel  unit         also called (case-insensitive)     units converted
=======  ===========  ==========================================================
EDA      uS           GSR, SC, SCL, skin conductance...  nS, mS, S; skin resistance Ohm, kOhm, MOhm (1/R)
BVP      any (a.u.)   PPG, Pleth, pulse...               kept as announced
RESP     any (a.u.)   RSP, respiration, thorax...        kept as announced
SpO2     %            SaO2, oxygen saturation            a fraction (``1``, ``ratio``, ``fraction``: x 100)
=======  ===========  ==========================================================
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

import numpy as np

__all__ = ["PROTOCOL_CHANNELS", "PROTOCOL_UNITS", "CHANNEL_ALIASES", "UnitConversion", "first_word",
           "protocol_channel", "unit_conversion", "known_units"]

#: The channels the monitor's bundles read.
PROTOCOL_CHANNELS = ("EDA", "BVP", "RESP", "SpO2")
#: The unit the windows and the quality gate take each channel in (None: any, arbitrary units).
PROTOCOL_UNITS = {"EDA": "uS", "BVP": None, "RESP": None, "SpO2": "%"}
#: Names of each channel (lower case), alone or as the first word of a name (:func:`first_word`).
CHANNEL_ALIASES = {
    "EDA": ("eda", "gsr", "scl", "scr", "sc", "electrodermal", "skin conductance", "galvanic skin response"),
    "BVP": ("bvp", "ppg", "pleth", "pulse", "photoplethysmogram", "plethysmogram"),
    "RESP": ("resp", "rsp", "respiration", "breathing", "resp belt", "thorax", "abdomen"),
    "SpO2": ("spo2", "sao2", "spo2 %", "oxygen saturation"),
}
#: Factor to the protocol's unit, by unit as written (case-insensitive); absent: any unit (arbitrary units).
_FACTORS = {
    "EDA": {"us": 1.0, "µs": 1.0, "μs": 1.0, "microsiemens": 1.0, "umho": 1.0, "µmho": 1.0, "ns": 1e-3, "ms": 1e3,
            "s": 1e6, "siemens": 1e6},
    "SpO2": {"%": 1.0, "percent": 1.0, "": 1.0, "1": 100.0, "ratio": 100.0, "fraction": 100.0},
}
#: Skin resistance, by unit as written (case-insensitive; MOhm is mega) -> K of EDA (uS) = K / resistance.
_RESISTANCE_UNITS = {"ohm": 1e6, "ω": 1e6, "kohm": 1e3, "kω": 1e3, "mohm": 1.0, "mω": 1.0}


@dataclass(frozen=True)
class UnitConversion:
    """How one channel's values reach the protocol's unit: ``factor * x``, or ``factor / x`` (skin resistance).

    Attributes
    ----------
    channel : str
        The protocol channel.
    unit : str
        The unit as written by the source.
    factor : float
        The multiplier, or the numerator of the reciprocal.
    reciprocal : bool
        True for skin resistance read as conductance.
    """

    channel: str
    unit: str
    factor: float = 1.0
    reciprocal: bool = False

    @property
    def identity(self) -> bool:
        """True when the values are already in the protocol's unit."""
        return self.factor == 1.0 and not self.reciprocal

    @property
    def target_unit(self) -> str:
        """The unit after conversion (the source's for BVP and RESP)."""
        return PROTOCOL_UNITS[self.channel] or self.unit

    @property
    def how(self) -> str:
        """``"1/R"``, ``"x 0.001"`` or ``""``: the conversion in a few characters, for log lines."""
        if self.reciprocal:
            return "1/R"
        return "" if self.identity else f"x {self.factor:g}"

    def apply(self, values: np.ndarray) -> np.ndarray:
        """``values`` in the protocol's unit (float64); a resistance of 0 or less becomes NaN (missing)."""
        values = np.asarray(values, dtype=np.float64)
        if self.reciprocal:
            return self.factor / np.where(values > 0, values, np.nan)
        return values if self.factor == 1.0 else values * self.factor

    def apply_range(self, low: float, high: float) -> tuple[float, float]:
        """``(low, high)`` in the protocol's unit, lowest first: a reciprocal flips them. A resistance limit of
        0 or less leaves the conductance unbounded (:meth:`apply` makes such samples missing): the largest
        float stands for it, so the range stays finite and no sample reaches that end."""
        if self.reciprocal:
            ends = [self.factor / end if end > 0 else sys.float_info.max for end in (low, high)]
        else:
            ends = [self.factor * low, self.factor * high]
        return float(min(ends)), float(max(ends))


def first_word(name: str) -> str:
    """``"Resp Thorax"``, ``"EDA-Wrist"``, ``"PPG_Raw"``, ``"SpO2(%)"`` -> ``"resp"``, ``"eda"``, ``"ppg"``,
    ``"spo2"``: a name's first word, lower case."""
    return re.split(r"[\s_\-.:(\[]+", name.strip().lower())[0]


def protocol_channel(name: str) -> str | None:
    """The protocol channel a name stands for (by :data:`CHANNEL_ALIASES`, alone or as its first word), or None."""
    lowered, first = name.strip().lower(), first_word(name)
    for channel, aliases in CHANNEL_ALIASES.items():
        if lowered in aliases:
            return channel
    return next((channel for channel, aliases in CHANNEL_ALIASES.items() if first in aliases), None)


def unit_conversion(channel: str, unit: str | None) -> UnitConversion | None:
    """How ``channel`` given in ``unit`` reaches the protocol's unit; None when ``unit`` is not one of its units.

    ``unit`` None means already the protocol's. BVP and RESP take any unit.

    Examples
    --------
    >>> unit_conversion("EDA", "kOhm")
    UnitConversion(channel='EDA', unit='kOhm', factor=1000.0, reciprocal=True)
    >>> unit_conversion("SpO2", "ratio").apply([0.97])
    array([97.])
    >>> unit_conversion("EDA", "mV") is None
    True
    """
    if unit is None or channel not in _FACTORS:
        return UnitConversion(channel, unit or "")
    written = unit.strip().lower()
    if channel == "EDA" and written in _RESISTANCE_UNITS:
        return UnitConversion(channel, unit, _RESISTANCE_UNITS[written], reciprocal=True)
    if written in _FACTORS[channel]:
        return UnitConversion(channel, unit, _FACTORS[channel][written])
    return None


def known_units(channel: str) -> list[str]:
    """The units :func:`unit_conversion` converts for ``channel`` (lower case, the empty one left out)."""
    return [unit for unit in [*_FACTORS.get(channel, ()), *(_RESISTANCE_UNITS if channel == "EDA" else ())] if unit]
