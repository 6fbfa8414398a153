"""Build the shipped default bundle, ``edge/bundles/default`` (ONNX, backbone + head).

With a trained backbone and head (``--checkpoint``, ``--head``, ``--data``)
this is ``biomoe export --int8`` into the default folder, trying the static
int8 scheme and then the weight-only one; if neither meets the parity
thresholds on the data's validation split (every window of it), the bundle
is exported in float32 instead (an int8 model that changes the answers is
worse than none) and the reason is printed. Without them it
builds the *demonstration* bundle committed until the trained artefacts
exist: the golden-checkpoint backbone (random but realistic weights) and a
linear :class:`~training.models.FusionHead` fitted in a few hundred steps on
its frozen embeddings of a synthetic cohort (``training.synth``); its
manifest says so in ``description``. Its pain levels follow the synthetic
responses, not patients: it exercises the real int8 model end to end.

::

    python -m quantize.build_default_bundle \\
        [--checkpoint B.pth --head H.pt --run-config finetune_config.json --data AI4PAIN_ROOT] \\
        [--int8-scheme static|weight-only] [--out edge/bundles/default]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from edge.bundle import default_bundle_path
from edge.representations import RepresentationSpec

from .errors import ParityError
from .export import INT8_SCHEMES, ExportOptions, ExportResult, export_bundle
from .images import load_window_images
from .placeholder import LABELS, PLACEHOLDER_FUSION

__all__ = ["DEMO_FUSION", "build_default_bundle", "fit_head", "fit_demo_head", "main"]

#: Fusion of the demonstration bundle: the placeholder's (AI4PAIN folder names).
DEMO_FUSION = tuple({"modality": {"EDA": "Eda", "BVP": "Bvp", "RESP": "Resp"}.get(m, m), "representation": r}
                    for m, r in PLACEHOLDER_FUSION)
DEMO_DESCRIPTION = (
    "DEMONSTRATION: golden-checkpoint backbone (random, realistic weights) + a linear head fitted on its "
    "embeddings of a synthetic cohort; int8 ONNX. Not trained on patients. Rebuild with a trained model: "
    "python -m quantize.build_default_bundle --checkpoint B.pth --head H.pt --data AI4PAIN_ROOT."
)
_GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "reference" / "tiny_biomoe" / "golden_checkpoint.pth"


def fit_head(embeddings: np.ndarray, labels: np.ndarray, num_classes: int = 3, steps: int = 300, seed: int = 0):
    """A linear :class:`FusionHead` fitted on frozen embeddings (n, k, D) with Adam and cross-entropy.

    Features are fixed, so a few hundred full-batch steps converge; enough
    for class predictions that mean something in parity tests and demos.
    """
    from training.models import FusionHead

    torch.manual_seed(seed)
    n, k, dim = embeddings.shape
    head = FusionHead(k, num_classes=num_classes, embedding_dim=dim)
    inputs, targets = torch.from_numpy(np.ascontiguousarray(embeddings, np.float32)), torch.from_numpy(labels)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(inputs), targets)
        loss.backward()
        optimizer.step()
    return head.eval()


def fit_demo_head(checkpoint, data_root, head_path, fusion=DEMO_FUSION, windows: int = 96) -> Path:
    """Fit :func:`fit_head` on the backbone's embeddings of ``data_root``'s train split and save it."""
    from training.models import load_backbone, save_head

    spec = RepresentationSpec()
    train = load_window_images(data_root, fusion, spec, split="train", max_windows=windows, what="training")
    model = load_backbone(checkpoint)
    flat = torch.from_numpy(train.images.reshape((-1,) + train.images.shape[2:]))
    with torch.no_grad():
        embeddings = torch.cat([model(flat[i:i + 32]) for i in range(0, len(flat), 32)]).numpy()
    head = fit_head(embeddings.reshape(len(train), len(fusion), -1), train.labels, len(LABELS))
    return save_head(head, head_path, fusion=fusion, labels=LABELS, representation_spec=spec.to_dict(),
                     sampling_rate=spec.sampling_rate, window_seconds=spec.window_seconds)


#: Validation windows the parity report of a trained default bundle is measured on (at most).
VALIDATION_WINDOWS = 1000


def build_default_bundle(out=None, checkpoint=None, head=None, data=None, run_config=None, log=print,
                         schemes=INT8_SCHEMES) -> ExportResult:
    """Write the default bundle (int8 ONNX, the first of ``schemes`` that meets the parity thresholds).

    A demonstration bundle (static int8) when no trained head is given.
    """
    from training.synth import synthesize_cohort

    out = Path(out) if out is not None else default_bundle_path()
    with tempfile.TemporaryDirectory(prefix="biomoe-default-") as workdir:
        workdir = Path(workdir)
        if data is None:
            data = workdir / "synth"
            log("generating a synthetic cohort (8 train, 4 validation subjects)")
            synthesize_cohort(data, "train", 8, seed=0)
            synthesize_cohort(data, "validation", 4, seed=0)
        if head is None:
            checkpoint = checkpoint or _GOLDEN
            log(f"fitting a demonstration head on {Path(checkpoint).name} embeddings")
            head = fit_demo_head(checkpoint, data, workdir / "head.pt")
            options = ExportOptions(int8=True, calibration=data, run_config=run_config, name="demo-golden-int8",
                                    description=DEMO_DESCRIPTION, allow_parity_miss=True)
            return export_bundle(checkpoint, head, out, options, log=log, progress=True)
        for scheme in schemes:
            try:
                options = ExportOptions(int8=True, int8_scheme=scheme, calibration=data, run_config=run_config,
                                        validation_windows=VALIDATION_WINDOWS, name=f"tiny-biomoe-int8-{scheme}")
                return export_bundle(checkpoint, head, out, options, log=log, progress=True)
            except ParityError as error:
                log(f"{error}\n{scheme} int8 misses the thresholds")
        log("falling back to float32: an int8 model that changes the answers is worse than none")
        options = ExportOptions(calibration=data, run_config=run_config, validation_windows=VALIDATION_WINDOWS,
                                name="tiny-biomoe-float32")
        return export_bundle(checkpoint, head, out, options, log=log)


def main(argv: list[str] | None = None) -> int:
    """``python -m quantize.build_default_bundle``."""
    parser = argparse.ArgumentParser(prog="python -m quantize.build_default_bundle", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="trained backbone (default: the golden checkpoint, demo head)")
    parser.add_argument("--head", type=Path, help="trained head file (default: fit a demonstration head)")
    parser.add_argument("--data", type=Path, help="AI4PAIN-layout data (default: a generated synthetic cohort)")
    parser.add_argument("--run-config", type=Path, help="the head's run config (finetune_config.json) with its image spec")
    parser.add_argument("--int8-scheme", choices=INT8_SCHEMES, action="append",
                        help="int8 scheme to try (repeatable; default: static, then weight-only)")
    parser.add_argument("--out", type=Path, default=default_bundle_path(), help="bundle folder (default: %(default)s)")
    args = parser.parse_args(argv)
    if (args.head is None) != (args.checkpoint is None) and args.head is not None:
        parser.error("--head needs --checkpoint (the backbone it was trained on)")
    result = build_default_bundle(args.out, args.checkpoint, args.head, args.data, args.run_config,
                                  schemes=tuple(args.int8_scheme or INT8_SCHEMES))
    print(f"wrote {result.bundle.path}: {result.bundle.describe()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
