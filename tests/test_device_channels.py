"""A board's channels read as the protocol's: names, units, ADC limits, what cannot be read."""

import dataclasses
import doctest

import numpy as np
import pytest

import edge.device_channels
import edge.protocol_channels
from edge.device_channels import DeviceChannels
from edge.errors import EdgeError
from edge.quality import channel_spec, channel_spec_with_adc, signal_quality
from firmware_bridge import ChannelBlock, GapEvent
from firmware_bridge.protocol import ChannelSpec, DeviceConfig

EDA_US = np.linspace(2.0, 8.0, 100)  # a rise in skin conductance, uS


def _board(*channels):
    return DeviceConfig(1_000_000, channels)


def _block(spec, samples):
    return ChannelBlock(spec.name, spec.unit, 100.0, 0, 0.0, 0.0, np.asarray(samples, dtype=np.float64),
                        spec.to_raw(samples), (1, 1))


@pytest.mark.parametrize("names", [("GSR", "PPG", "Resp", "SPO2"), ("eda", "Pleth", "RSP", "SpO2(%)"),
                                   ("EDA-L", "BVP", "RESP", "SaO2")])
def test_a_board_s_own_names_are_read_as_the_protocol_s_channels(names):
    units = ("uS", "a.u.", "a.u.", "%")
    read = DeviceChannels(_board(*(ChannelSpec(name, unit, 100) for name, unit in zip(names, units))))
    assert read.channel_names == ("EDA", "BVP", "RESP", "SpO2") and not read.unreadable
    block = read.block(_block(ChannelSpec(names[0], "uS", 100), EDA_US))
    assert block.channel == "EDA" and block.unit == "uS"
    np.testing.assert_array_equal(block.samples, EDA_US)
    assert read.protocol_names((names[3], names[1], "ECG")) == ("SpO2", "BVP")


@pytest.mark.parametrize("unit, in_unit", [("uS", EDA_US), ("nS", EDA_US * 1e3), ("mS", EDA_US * 1e-3),
                                           ("S", EDA_US * 1e-6), ("umho", EDA_US), ("kOhm", 1e3 / EDA_US),
                                           ("Ohm", 1e6 / EDA_US), ("MOhm", 1 / EDA_US)])
def test_eda_in_other_units_is_converted_to_microsiemens(unit, in_unit):
    spec = ChannelSpec("GSR", unit, 100)
    block = DeviceChannels(_board(spec)).block(_block(spec, in_unit))
    assert block.channel == "EDA" and block.unit == "uS"
    np.testing.assert_allclose(block.samples, EDA_US, rtol=1e-12)


@pytest.mark.parametrize("unit", ["1", "ratio", "fraction", "%", ""])
def test_spo2_as_a_fraction_is_read_in_percent(unit):
    fraction = unit in ("1", "ratio", "fraction")
    spec = ChannelSpec("SPO2", unit, 1)
    block = DeviceChannels(_board(spec)).block(_block(spec, [0.97, 0.93] if fraction else [97.0, 93.0]))
    np.testing.assert_allclose(block.samples, [97.0, 93.0])


def test_the_announced_adc_limits_are_converted_and_a_reciprocal_flips_them():
    """Resistance raw 100..30000 at 0.05 kOhm: 5..1500 kOhm, so conductance 1000/1500..1000/5 uS; a sample at
    either raw limit is saturated in the quality gate, one between is not."""
    gsr = ChannelSpec("GSR", "kOhm", 100, raw_min=100, raw_max=30000, scale=0.05)
    nano = ChannelSpec("EDA", "nS", 100, raw_min=0, raw_max=20000, scale=2.0)
    assert DeviceChannels(_board(gsr)).adc_range("EDA") == pytest.approx((1000 / 1500, 200.0))
    assert DeviceChannels(_board(nano)).adc_range("EDA") == pytest.approx((0.0, 40.0))
    read = DeviceChannels(_board(gsr))
    spec = channel_spec_with_adc(channel_spec("EDA"), read.adc_range("EDA"))
    for raw, saturated in ((100, True), (30000, True), (4000, False)):
        samples = read.block(_block(gsr, np.full(1000, gsr.to_physical(raw)))).samples
        assert ("saturation" in signal_quality(samples, 100.0, spec)["flags"]) == saturated, raw


def test_a_resistance_of_zero_is_missing_and_its_limit_leaves_conductance_unbounded():
    gsr = ChannelSpec("GSR", "kOhm", 100, raw_min=0, raw_max=32767, scale=0.05)
    read = DeviceChannels(_board(gsr))
    low, high = read.adc_range("EDA")
    assert low == pytest.approx(1000 / (32767 * 0.05)) and np.isfinite(high) and high > 1e300
    assert np.isnan(read.block(_block(gsr, [0.0, 200.0])).samples).tolist() == [True, False]


def test_a_unit_that_cannot_be_converted_is_one_line_and_refused_when_the_bundle_needs_it():
    read = DeviceChannels(_board(ChannelSpec("EDA", "mV", 100), ChannelSpec("SpO2", "bpm", 1),
                                 ChannelSpec("BVP", "mV", 100)))
    assert read.channel_names == ("BVP",)
    assert read.unreadable == {
        "EDA": "the device's EDA is in 'mV', which is not a unit of EDA (us, umho, ns, ms, s, siemens, ohm, kohm, "
               "mohm)",
        "SpO2": "the device's SpO2 is in 'bpm', which is not a unit of SpO2 (%, percent, 1, ratio, fraction)"}
    bundle = dataclasses.make_dataclass("Bundle", ["name", "channel_names"])("b", ("EDA", "BVP"))
    with pytest.raises(EdgeError) as refused:
        read.require(bundle)
    assert str(refused.value) == (
        "bundle b needs EDA, but the device's EDA is in 'mV', which is not a unit of EDA (us, umho, ns, ms, s, "
        "siemens, ohm, kohm, mohm); have the board announce it as firmware_bridge/PROTOCOL.md (section 3.1) says")


def test_two_channels_that_could_each_be_one_are_one_line_unless_one_has_the_protocol_s_name():
    ambiguous = DeviceChannels(_board(ChannelSpec("GSR", "uS", 100), ChannelSpec("SC", "uS", 100),
                                      ChannelSpec("PPG", "", 100)))
    assert ambiguous.channel_names == ("BVP",)
    assert ambiguous.unreadable == {"EDA": "the device's GSR and SC could each be EDA; name one of them EDA in the "
                                           "board's description"}
    named = DeviceChannels(_board(ChannelSpec("GSR", "kOhm", 100), ChannelSpec("EDA", "uS", 100)))
    assert named.channel_names == ("EDA",) and named.source("EDA") == "EDA" and not named.unreadable
    assert named.block(_block(ChannelSpec("GSR", "kOhm", 100), [200.0])) is None


def test_what_was_announced_and_what_is_used_is_said_and_described():
    read = DeviceChannels(_board(ChannelSpec("GSR", "kOhm", 100), ChannelSpec("BVP", "a.u.", 100),
                                 ChannelSpec("SPO2", "ratio", 1)))
    assert read.notes() == ["the device's GSR (kOhm) is read as EDA in uS (1/R)",
                            "the device's SPO2 (ratio) is read as SpO2 in % (x 100)"]
    assert read.describe() == {
        "EDA": {"announced": {"name": "GSR", "unit": "kOhm"}, "unit": "uS", "conversion": "1/R", "rate_hz": 100.0},
        "BVP": {"announced": {"name": "BVP", "unit": "a.u."}, "unit": "a.u.", "conversion": None, "rate_hz": 100.0},
        "SpO2": {"announced": {"name": "SPO2", "unit": "ratio"}, "unit": "%", "conversion": "x 100", "rate_hz": 1.0}}
    gap = GapEvent("GSR", 0, 10, 100.0, 0.0, "link", 0.0, (1, 1))
    assert read.block(gap).channel == "EDA"


def test_docstring_examples_run():
    for module in (edge.device_channels, edge.protocol_channels):
        assert doctest.testmod(module).failed == 0
