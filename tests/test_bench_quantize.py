"""benchmarks.bench_quantize: the int8 kernel comparison runs; bad settings are one-line errors (no timing asserted)."""

from __future__ import annotations

import onnx
import pytest

from benchmarks.bench_quantize import _LARGEST_CONVS, _kernel_times, main


def test_kernel_times_cover_every_shape_in_both_precisions():
    times = _kernel_times(threads=1, warmup=0, runs=2)
    assert set(times) == {(shape, kind) for shape in _LARGEST_CONVS for kind in ("float", "int8")}
    assert all(len(values) == 2 and min(values) > 0 for values in times.values())


def test_kernel_shapes_are_the_backbones(tmp_path):
    """Every shape timed is a convolution the exported float backbone really has."""
    from quantize.graphs import export_backbone_onnx
    from training.models import tiny_biomoe

    path = export_backbone_onnx(tiny_biomoe().eval(), tmp_path / "backbone.onnx")
    model = onnx.shape_inference.infer_shapes(onnx.load(path))
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    sizes = {info.name: [d.dim_value for d in info.type.tensor_type.shape.dim] for info in model.graph.value_info}
    found = set()
    for node in model.graph.node:
        if node.op_type == "Conv" and node.input[1] in initializers and node.input[0] in sizes:
            out_channels, in_per_group, kernel, _ = initializers[node.input[1]].dims
            groups = next((a.i for a in node.attribute if a.name == "group"), 1)
            found.add((in_per_group * groups, out_channels, kernel, groups, sizes[node.input[0]][-1]))
    assert set(_LARGEST_CONVS) <= found


@pytest.mark.parametrize("flag", ["--threads", "--repeats"])
def test_bad_setting_is_a_one_line_error(capsys, flag):
    assert main([flag, "0"]) == 1
    assert capsys.readouterr().err.strip() == f"bench_quantize: error: {flag} must be >= 1, got 0"


