"""The manifest of a bundle this package writes (``edge/BUNDLE.md``), built in one place.

``biomoe export`` and the placeholder bundle describe their graphs, inputs
and provenance with the same two functions, so every bundle the project
writes has the same keys in the same order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from edge.representations import RepresentationSpec

from .images import DEVICE_CHANNELS

__all__ = ["graph_entry", "build_manifest"]


def graph_entry(file: str, input_name: str, input_shape: Sequence, output_name: str, output_shape: Sequence,
                produces: str, onnxruntime_config: Mapping[str, str] | None = None) -> dict:
    """One ``graphs`` entry: the file, its float32 input and its output, and what the output is."""
    graph = {
        "file": file,
        "inputs": [{"name": input_name, "shape": list(input_shape), "dtype": "float32"}],
        "outputs": [{"name": output_name, "shape": list(output_shape)}],
        "produces": produces,
    }
    if onnxruntime_config:
        graph["onnxruntime_config"] = dict(onnxruntime_config)
    return graph


def build_manifest(*, name: str, description: str, backend: str, pipeline: str, graphs: Mapping[str, dict],
                   spec: RepresentationSpec, fusion: Iterable[tuple[str, str]], labels: Sequence[str],
                   quantization: dict | None = None, parity: dict | None = None, source: dict | None = None,
                   placeholder: bool = False) -> dict:
    """A complete manifest for :func:`edge.bundle.save_bundle` (which adds the file checksums).

    ``fusion`` is ``(device channel, representation)`` pairs in the model's
    input order; the bundle's channels are the device channels it reads, the
    rate and window length are the representation spec's.
    """
    fusion = [(channel, representation) for channel, representation in fusion]
    manifest = {
        "name": name,
        "description": description,
        "placeholder": placeholder,
        "backend": backend,
        "pipeline": pipeline,
        "graphs": dict(graphs),
        "representation_spec": spec.to_dict(),
        "fusion": [{"modality": channel, "representation": representation} for channel, representation in fusion],
        "labels": list(labels),
        "sampling_rate": spec.sampling_rate,
        "window_seconds": spec.window_seconds,
        "channels": [channel for channel in DEVICE_CHANNELS.values() if any(channel == c for c, _ in fusion)],
        "quantization": quantization,
        "parity": parity,
    }
    if source is not None:
        manifest["source"] = source
    return manifest
