"""A sensor board's channels read as the protocol's: :class:`DeviceChannels`.

Boards from other makers describe their channels in their own words: ``GSR``
in ``kOhm``, ``Pleth``, ``RSP``, ``SPO2`` as a fraction. The monitor reads
each announced channel as the protocol channel its name stands for (the names
of :mod:`edge.protocol_channels`, which recordings are read by too; a channel
named exactly ``EDA``, ``BVP``, ``RESP`` or ``SpO2`` is always that one) and
converts its samples, and the ADC limits it announces, to the protocol's unit
before the windows and the quality gate see them (skin resistance as its
reciprocal, which flips the limits' order). What cannot be read this way (a
unit that is not one of the channel's, two channels that could both be one)
leaves the channel out, with the reason in :attr:`DeviceChannels.unreadable`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from edge.errors import EdgeError
from edge.protocol_channels import PROTOCOL_CHANNELS, UnitConversion, known_units, protocol_channel, unit_conversion
from firmware_bridge import ChannelBlock, DeviceConfig, GapEvent
from firmware_bridge.protocol import NAME_SIZE, ChannelSpec

__all__ = ["DeviceChannels"]


@dataclass(frozen=True)
class _Read:
    """One announced channel and how it is read."""

    spec: ChannelSpec
    conversion: UnitConversion


def _wire_units(channel: str) -> list[str]:
    """The units of ``channel`` a hello can carry (printable ASCII, 8 characters at most), case-insensitive."""
    return [unit for unit in known_units(channel) if unit.isascii() and len(unit) <= NAME_SIZE]


class DeviceChannels:
    """How the monitor reads one device description (hello): announced channel -> protocol channel and unit.

    Parameters
    ----------
    device : DeviceConfig
        The description as the board sent it.

    Attributes
    ----------
    device : DeviceConfig
        That description.
    unreadable : dict of str to str
        Protocol channel -> one line saying why the board's channel for it
        cannot be read (a unit that cannot be converted, two candidates).

    Examples
    --------
    >>> board = DeviceConfig(1_000_000, (ChannelSpec("GSR", "kOhm", 100, raw_min=1, raw_max=1000),
    ...                                  ChannelSpec("SPO2", "ratio", 1)))
    >>> read = DeviceChannels(board)
    >>> read.channel_names, read.adc_range("EDA")
    (('EDA', 'SpO2'), (1.0, 1000.0))
    >>> DeviceChannels(DeviceConfig(1_000_000, (ChannelSpec("EDA", "mV", 100),))).unreadable["EDA"]
    "the device's EDA is in 'mV', which is not a unit of EDA (us, umho, ns, ms, s, siemens, ohm, kohm, mohm)"
    >>> for line in read.notes():
    ...     print(line)
    the device's GSR (kOhm) is read as EDA in uS (1/R)
    the device's SPO2 (ratio) is read as SpO2 in % (x 100)
    """

    def __init__(self, device: DeviceConfig):
        self.device = device
        self.unreadable: dict[str, str] = {}
        self._read: dict[str, _Read] = {}
        candidates: dict[str, list[ChannelSpec]] = {}
        for spec in device.channels:
            channel = protocol_channel(spec.name)
            if channel is not None:
                candidates.setdefault(channel, []).append(spec)
        for channel in PROTOCOL_CHANNELS:
            specs = candidates.get(channel, [])
            exact = [spec for spec in specs if spec.name == channel]
            if len(specs) > 1 and not exact:
                names = " and ".join(spec.name for spec in specs)
                self.unreadable[channel] = (f"the device's {names} could each be {channel}; name one of them "
                                            f"{channel} in the board's description")
                continue
            if not specs:
                continue
            spec = (exact or specs)[0]
            conversion = unit_conversion(channel, spec.unit or None)  # no unit: the protocol's, as always
            if conversion is None:
                self.unreadable[channel] = (f"the device's {spec.name} is in {spec.unit!r}, which is not a unit of "
                                            f"{channel} ({', '.join(_wire_units(channel))})")
                continue
            self._read[channel] = _Read(spec, conversion)
        self._by_source = {read.spec.name: channel for channel, read in self._read.items()}

    @property
    def channel_names(self) -> tuple[str, ...]:
        """The protocol channels read from the board, in the protocol's order."""
        return tuple(self._read)

    def sampling_rate(self, channel: str) -> float:
        """Hz of the board's channel read as protocol ``channel``."""
        return self.device.sampling_rate(self._read[channel].spec.name)

    def adc_range(self, channel: str) -> tuple[float, float]:
        """The announced ADC limits (``raw_min``, ``raw_max``) of ``channel`` in the protocol's unit, lowest first."""
        read = self._read[channel]
        return read.conversion.apply_range(*read.spec.physical_range)

    def source(self, channel: str) -> str:
        """The board's name of protocol ``channel``."""
        return self._read[channel].spec.name

    def block(self, event: ChannelBlock | GapEvent) -> ChannelBlock | GapEvent | None:
        """``event`` under its protocol channel, samples in the protocol's unit; None for a channel not read."""
        channel = self._by_source.get(event.channel)
        if channel is None:
            return None
        read = self._read[channel]
        if isinstance(event, GapEvent):
            return event if event.channel == channel else dataclasses.replace(event, channel=channel)
        if read.conversion.identity and event.channel == channel:
            return event
        return dataclasses.replace(event, channel=channel, unit=read.conversion.target_unit,
                                   samples=read.conversion.apply(event.samples))

    def protocol_names(self, names) -> tuple[str, ...]:
        """Board channel names (a status frame's flagged channels) as the protocol channels read from them."""
        return tuple(self._by_source[name] for name in names if name in self._by_source)

    def notes(self) -> list[str]:
        """One line per channel read under another name or unit, e.g. the device's GSR (kOhm) is read as EDA in
        uS (1/R)."""
        lines = []
        for channel, read in self._read.items():
            if read.spec.name != channel or not read.conversion.identity:
                how = f" ({read.conversion.how})" if read.conversion.how else ""
                unit = read.conversion.target_unit or "a.u."
                lines.append(f"the device's {read.spec.name} ({read.spec.unit or 'no unit'}) is read as {channel} "
                             f"in {unit}{how}")
        return lines

    def describe(self) -> dict:
        """For the stored session and events: protocol channel -> what was announced and what is used."""
        return {channel: {"announced": {"name": read.spec.name, "unit": read.spec.unit},
                          "unit": read.conversion.target_unit, "conversion": read.conversion.how or None,
                          "rate_hz": self.sampling_rate(channel)}
                for channel, read in self._read.items()}

    def require(self, bundle) -> None:
        """Refuse a description without every channel ``bundle`` needs, read as the protocol's.

        Raises
        ------
        EdgeError
            One line: the channels announced so that they cannot be read and
            why, or those not sent (:meth:`edge.bundle.Bundle.require_channels`).
        """
        unreadable = [name for name in bundle.channel_names if name in self.unreadable]
        if unreadable:
            raise EdgeError(f"bundle {bundle.name} needs {', '.join(unreadable)}, but "
                            f"{'; '.join(self.unreadable[name] for name in unreadable)}; have the board announce it "
                            "as firmware_bridge/PROTOCOL.md (section 3.1) says")
        bundle.require_channels(self.channel_names)
