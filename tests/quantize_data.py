"""Generated windows and a fitted head for the export/quantization tests.

The golden checkpoint has random (if realistic) weights: its embeddings of
synthetic-cohort windows barely differ between pain levels (a head fitted on
them reaches macro-F1 ~0.5), so its class predictions sit on decision
boundaries and any perturbation flips some. The int8 class-agreement and
macro-F1 checks need a float model that is confident, so these windows make
the classes differ in what every representation shows: the dominant rhythm
(0.2, 1 or 4 Hz) of every channel, with random amplitude, phase, offset and
noise.
"""

from __future__ import annotations

import numpy as np

from edge.representations import RepresentationSpec
from quantize.images import WindowImages, window_images

MODALITIES = ("Eda", "Bvp", "Resp", "SpO2")
FUSION = ({"modality": "Eda", "representation": "scalogram"}, {"modality": "Bvp", "representation": "spectrogram_psd"})
CLASS_HZ = (0.2, 1.0, 4.0)


def rhythm_windows(n_per_class: int, seed: int, spec: RepresentationSpec = RepresentationSpec()) -> WindowImages:
    """Labelled windows whose class sets each channel's dominant frequency; images in :data:`FUSION` order."""
    rng = np.random.default_rng(seed)
    t = np.arange(spec.n_samples) / spec.sampling_rate
    signals, labels = [], []
    for label, hz in enumerate(CLASS_HZ):
        for _ in range(n_per_class):
            freq = hz * rng.uniform(0.9, 1.1, size=(len(MODALITIES), 1))
            phase = rng.uniform(0, 2 * np.pi, size=(len(MODALITIES), 1))
            amplitude = rng.uniform(0.5, 1.5, size=(len(MODALITIES), 1))
            wave = amplitude * np.sin(2 * np.pi * freq * t + phase) + rng.uniform(-1, 1, size=(len(MODALITIES), 1))
            signals.append(wave + 0.1 * rng.standard_normal(wave.shape))
            labels.append(label)
    order = rng.permutation(len(labels))
    signals, labels = np.asarray(signals)[order], np.asarray(labels, dtype=np.int64)[order]
    images = window_images(signals, MODALITIES, FUSION, spec, spec.sampling_rate)
    return WindowImages(images, labels, f"rhythm windows (seed {seed})")
