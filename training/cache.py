"""On-disk caches of representation images and backbone embeddings.

Rendering a cohort's windows as images and running the backbone over them are
the two slow steps of every experiment; both depend only on their inputs, so
they are computed once and kept under a cache folder:

- ``images/<key>.npy``: uint8 (n, S, S, 3), one file per (modality,
  representation), read back memory-mapped (``np.load(mmap_mode="r")``);
- ``embeddings/<key>.npy``: float32 (n, 192), one file per (modality,
  representation, backbone).

A key is the SHA-256 of what the result depends on: the
:class:`~edge.representations.RepresentationSpec` (as JSON), the modality and
representation, the content of the windows themselves (so loader settings
and file changes are covered without trusting time stamps), and for
embeddings the backbone's identity (the SHA-256 of its checkpoint file, or
``random:SEED``). Each result is written to a temporary file and renamed, so
an interrupted run never leaves a truncated entry; a ``<key>.json`` beside it
says what it holds.

Examples
--------
>>> cache = FeatureCache("runs/cache")                                    # doctest: +SKIP
>>> images = cache.images(windows, "Eda", "scalogram", DEFAULT_SPEC)     # doctest: +SKIP
>>> backbone = open_backbone("runs/pretrain/backbone.pth")               # doctest: +SKIP
>>> cache.embeddings(windows, "Eda", "scalogram", DEFAULT_SPEC, backbone).shape  # doctest: +SKIP
(1230, 192)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.representations import REPRESENTATIONS, RepresentationSpec, represent, to_model_input
from training.ai4pain import WindowSet
from training.errors import CheckpointError

logger = logging.getLogger(__name__)

__all__ = ["Backbone", "FeatureCache", "file_sha256", "open_backbone"]

_RENDER_CHUNK = 64


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Backbone:
    """A loaded backbone and the identity its embeddings are cached under.

    Attributes
    ----------
    model : TinyBioMoE
        In eval mode.
    identity : str
        ``sha256:<hex>`` of the checkpoint file, or ``random:<seed>``.
    source : str
        What the user passed (a path or ``random[:SEED]``), for reports.
    """

    model: object
    identity: str
    source: str


def project_pretrained_backbone() -> Path:
    """The project's pretrained backbone (release format), pretrained with the defaults on first use."""
    from training.finetune import default_cache_dir
    from training.pretrain import PretrainConfig, pretrain

    folder = default_cache_dir() / "pretrained"
    path = folder / "backbone.pth"
    if not path.is_file():
        logger.warning("no pretrained backbone in %s yet: pretraining one with the defaults (biomoe pretrain "
                       "--out %s), a few minutes on a CPU, once", folder, folder)
        pretrain(PretrainConfig(), folder, resume=True)
    return path


def open_backbone(source: str, device: str | object = "cpu") -> Backbone:
    """Load a backbone from a checkpoint path, or build a seeded random one.

    Parameters
    ----------
    source : str
        Path of a release-format checkpoint; ``"pretrained"``, the project's
        own backbone (``biomoe pretrain`` with its defaults, run once into
        ``$BIOMOE_CACHE/pretrained/`` the first time it is asked for, a few
        minutes on a CPU); or ``"random"`` / ``"random:SEED"`` for random
        initial weights (seed 0 by default), the baseline a pretrained
        backbone must beat.
    device : str or torch.device

    Raises
    ------
    CheckpointError
        For a missing file or a checkpoint of another architecture.
    """
    import torch

    from training.models import load_backbone, tiny_biomoe

    source = str(source)
    if source == "random" or source.startswith("random:"):
        seed_text = source.partition(":")[2] or "0"
        if not seed_text.isdigit():
            raise ValueError(f"backbone {source!r}: the seed after 'random:' must be a whole number, e.g. random:0")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed_text))
            model = tiny_biomoe()
        return Backbone(model.to(device).eval(), f"random:{int(seed_text)}", source)
    if source == "pretrained":
        source = str(project_pretrained_backbone())
    path = Path(source)
    if not path.is_file():
        raise CheckpointError(f"backbone {path} does not exist; pass a backbone checkpoint (.pth) or 'random[:SEED]'")
    return Backbone(load_backbone(path, map_location=device), f"sha256:{file_sha256(path)}", source)


class FeatureCache:
    """Images and embeddings of windows, computed once and kept on disk.

    Parameters
    ----------
    root : path-like
        Cache folder (created when first written).
    progress : bool, default True
        Show tqdm progress bars while computing.

    Attributes
    ----------
    computed : list of str
        One ``"images:..."`` / ``"embeddings:..."`` entry per result computed
        (not read back) by this instance, so callers and tests can tell
        whether the cache was used.
    """

    def __init__(self, root: str | os.PathLike, progress: bool = True):
        self.root = Path(root)
        self.progress = progress
        self.computed: list[str] = []

    @staticmethod
    def _modality_index(windows: WindowSet, modality: str) -> int:
        if modality not in windows.modalities:
            raise ValueError(f"modality {modality!r} is not in the loaded windows {windows.modalities}")
        return windows.modalities.index(modality)

    def _image_description(self, windows: WindowSet, modality: str, representation: str, spec: RepresentationSpec):
        if representation not in REPRESENTATIONS:
            raise ValueError(f"representation must be one of {REPRESENTATIONS}; got {representation!r}")
        signals = np.ascontiguousarray(windows.signals[:, self._modality_index(windows, modality)])
        return {
            "representation_spec": spec.to_dict(),
            "modality": modality,
            "representation": representation,
            "data_sha256": hashlib.sha256(signals.tobytes()).hexdigest(),
            "n_windows": len(signals),
        }

    @staticmethod
    def _key(description: dict) -> str:
        return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:32]

    def _bar(self, total: int, description: str):
        from tqdm import tqdm

        return tqdm(total=total, desc=description, unit="window", disable=not self.progress)

    def _store(self, kind: str, description: dict, shape: tuple, dtype, fill) -> np.ndarray:
        """Read ``kind/<key>.npy`` memory-mapped, computing it with ``fill(array)`` first if absent."""
        key = self._key(description)
        folder = self.root / kind
        path = folder / f"{key}.npy"
        if not path.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            # one partial file per process: runs sharing a cache may compute the same array at once
            partial = folder / f"{key}.npy.{os.getpid()}.partial"
            array = np.lib.format.open_memmap(partial, mode="w+", dtype=dtype, shape=shape)
            fill(array)
            array.flush()
            del array
            os.replace(partial, path)
            (folder / f"{key}.json").write_text(json.dumps(description, indent=2) + "\n")
            self.computed.append(f"{kind}:{key}")
        return np.load(path, mmap_mode="r")

    def images(self, windows: WindowSet, modality: str, representation: str, spec: RepresentationSpec) -> np.ndarray:
        """uint8 images (n, S, S, 3) of one modality in one representation, memory-mapped."""
        description = self._image_description(windows, modality, representation, spec)
        row = self._modality_index(windows, modality)

        def fill(array: np.ndarray) -> None:
            with self._bar(len(windows), f"images {modality}:{representation}") as bar:
                for start in range(0, len(windows), _RENDER_CHUNK):
                    chunk = windows.signals[start : start + _RENDER_CHUNK, row]
                    array[start : start + len(chunk)] = represent(
                        chunk, spec, (representation,), sampling_rate=windows.sampling_rate
                    )[:, 0]
                    bar.update(len(chunk))

        size = spec.image_size
        return self._store("images", description, (len(windows), size, size, 3), np.uint8, fill)

    def embeddings(
        self,
        windows: WindowSet,
        modality: str,
        representation: str,
        spec: RepresentationSpec,
        backbone: Backbone,
        batch_size: int = 32,
    ) -> np.ndarray:
        """float32 embeddings (n, D) of one modality in one representation by one backbone."""
        import torch

        description = dict(self._image_description(windows, modality, representation, spec), backbone=backbone.identity)
        key_path = self.root / "embeddings" / f"{self._key(description)}.npy"
        images = None if key_path.is_file() else self.images(windows, modality, representation, spec)
        model = backbone.model
        device = next(model.parameters()).device

        def fill(array: np.ndarray) -> None:
            model.eval()
            with torch.no_grad(), self._bar(len(windows), f"embeddings {modality}:{representation}") as bar:
                for start in range(0, len(windows), batch_size):
                    batch = torch.from_numpy(to_model_input(images[start : start + batch_size])).to(device)
                    array[start : start + len(batch)] = model(batch).float().cpu().numpy()
                    bar.update(len(batch))

        return self._store("embeddings", description, (len(windows), model.num_features), np.float32, fill)
