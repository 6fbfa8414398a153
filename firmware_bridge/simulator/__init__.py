"""A simulated sensor board: ``biomoe simulate-device`` and :class:`SimulatedDevice`.

It speaks the real protocol (PROTOCOL.md) on a pseudo-terminal, any pyserial
URL or any object with ``write(bytes)``, at the real rate or faster, so the
reader, the monitor and their tests run without hardware. Signals come from
the project's physiology model (:mod:`firmware_bridge.physiology`, one seeded
subject streamed block by block: EDA, BVP and respiration at 100 Hz, SpO2 at
1 Hz, as the ``finger-lab`` device) or from an AI4PAIN-format recording
(``--replay DIR --subject ID``, all four at 100 Hz).

Two kinds of trouble can be injected, both reproducible with ``--seed``:
random wire faults (:mod:`~firmware_bridge.simulator.device`) and scheduled
conditions at known stream times (:mod:`~firmware_bridge.simulator.conditions`).

============================  ==========================================================
``conditions``                :class:`Condition`, :func:`parse_condition`
``links``                     the pty, pyserial and ``write()`` sink writers
``replay``                    :class:`ReplayRecording`, :class:`Ai4PainRecording`, :class:`Segment`
``device``                    :class:`SimulatedDevice`, :class:`SimulatorParams`,
                              :class:`SimulatorStats`, :func:`generator_config`
``cli``                       ``biomoe simulate-device``: :func:`params_from_options`,
                              :func:`configure_parser`, :func:`run`
============================  ==========================================================

Everything public is importable from here (``from firmware_bridge.simulator
import SimulatedDevice``); ``edge/cli.py`` runs ``configure_parser`` and ``run``
of this package.
"""

from firmware_bridge.simulator.cli import configure_parser, params_from_options, run
from firmware_bridge.simulator.conditions import LINK_KINDS, SIGNAL_KINDS, Condition, parse_condition  # noqa: F401
from firmware_bridge.simulator.device import (
    SignalGenerator,
    SimulatedDevice,
    SimulatorParams,
    SimulatorStats,
    generator_config,
)
from firmware_bridge.simulator.replay import CHANNELS, Ai4PainRecording, ReplayRecording, Segment  # noqa: F401

# CHANNELS, SIGNAL_KINDS, LINK_KINDS: module constants of the former simulator.py, still importable from here
__all__ = [
    "Condition",
    "parse_condition",
    "SimulatorParams",
    "SimulatorStats",
    "SimulatedDevice",
    "SignalGenerator",
    "Segment",
    "ReplayRecording",
    "Ai4PainRecording",
    "generator_config",
    "params_from_options",
    "configure_parser",
    "run",
]
