"""Where int8 breaks a TFLite backbone: ``python -m quantize.int8_scopes BACKBONE.tflite --data COHORT``.

Quantizes the convolutions and fully connected layers to static int8 with one
group of modules kept float at a time (:data:`GROUPS`, none first), and
prints, per group, the embedding cosine to the float graph on validation
images of every representation the fusion uses (mean, minimum, minimum per
image kind). The group whose float copy lifts the cosine most is where the
int8 error lives (:data:`quantize.tflite.INT8_TFLITE_FLOAT_SCOPES`).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from edge.representations import RepresentationSpec

from .images import load_window_images
from .parity import embedding_cosine
from .tflite import quantize_tflite_int8, tflite_interpreter, tflite_run

__all__ = ["GROUPS", "main"]

#: Module groups of Tiny-BioMoE, as scopes of the converted graph's tensor names.
GROUPS: dict[str, str | None] = {
    "none": None,
    "enc1.stem": "ConvStem_patch_embed1",
    "enc1.blocks": "SpectFormer_enc1/.*SpectFormerBlock",
    "enc1.downsample": "SpectFormer_enc1/.*DownSample",
    "enc2.patch_embed": "EfficientViT_enc2/.*patch_embed",
    "enc2.blocks1": "EfficientViT_enc2/.*blocks1",
    "enc2.blocks2": "EfficientViT_enc2/.*blocks2",
    "enc2.blocks3": "EfficientViT_enc2/.*blocks3",
    "gate.fcn": "Sequential_fcn",
}
#: The default bundle's fusion (device channel, representation).
FUSION = (("EDA", "scalogram"), ("EDA", "waveform"), ("BVP", "scalogram"), ("RESP", "scalogram"), ("SpO2", "waveform"))

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m quantize.int8_scopes", description=__doc__.splitlines()[0])
    parser.add_argument("backbone", type=Path, help="float32 TFLite backbone (a bundle's backbone.tflite)")
    parser.add_argument("--data", required=True, type=Path, help="AI4PAIN-layout cohort (train calibrates)")
    parser.add_argument("--windows", type=int, default=16, help="validation windows compared (default 16)")
    args = parser.parse_args(argv)
    fusion = [{"modality": m, "representation": r} for m, r in FUSION]
    spec = RepresentationSpec()
    validation = load_window_images(args.data, fusion, spec, split="validation", max_windows=args.windows, seed=3,
                                    what="validation")
    calibration = load_window_images(args.data, fusion, spec, split="train", max_windows=8, seed=0)
    images, width = validation.flat(), len(fusion)
    reference = tflite_run(tflite_interpreter(args.backbone, threads=1), images)
    print("| kept float | mean cosine | min cosine | " + " | ".join(f"min {m}:{r}" for m, r in FUSION) + " |")
    print("| --- | ---: | ---: |" + " ---: |" * width)
    with tempfile.TemporaryDirectory() as folder:
        for name, scope in GROUPS.items():
            path = Path(folder) / f"{name}.tflite"
            quantize_tflite_int8(args.backbone, path, calibration.flat(), float_scopes=() if scope is None else (scope,))
            cosine = embedding_cosine(reference, tflite_run(tflite_interpreter(path, threads=1), images))
            per_kind = cosine.reshape(len(validation), width).min(axis=0)
            print(f"| {name} | {cosine.mean():.5f} | {cosine.min():.4f} | " + " | ".join(f"{v:.4f}" for v in per_kind)
                  + " |", flush=True)
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
