"""Settings shared by pretraining, fine-tuning and evaluation.

One place for the image settings every training step uses (so the backbone,
the fusion head and the device bundle agree), the device choice, and the run
configuration file: every command reads its settings from defaults, an
optional ``--config`` file (TOML or JSON) and its options, in that order of
precedence, and writes the resolved settings as ``config.json`` beside its
results.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge.representations import REPRESENTATIONS, RepresentationSpec
from training.errors import TrainingError

__all__ = [
    "CONFIG_NAME",
    "DEFAULT_REPRESENTATIONS",
    "DEFAULT_SPEC",
    "TRAINABLE_PREFIXES",
    "merge_settings",
    "parse_pairs",
    "read_config_file",
    "resolve_device",
    "set_trainable",
    "write_json",
]

#: Representation settings for the AI4PAIN signals: spectrograms cropped at
#: 10 Hz with 2.56 s segments (finer frequency rows for heart and breathing
#: rates), the scalogram's default 0.05-5 Hz band, unthresholded recurrence.
DEFAULT_SPEC = RepresentationSpec(stft_nperseg=256, stft_noverlap=240, stft_nfft=512, stft_fmax_hz=10.0)

#: Representations used by default in pretraining and the fusion table: three
#: of the six, so that one backbone's embeddings of the default cohort (4
#: signals x 3 representations x 1,590 windows) take about 10 min on 2 CPU cores.
DEFAULT_REPRESENTATIONS: tuple[str, ...] = ("scalogram", "recurrence", "waveform")

#: Backbone parameter-name prefixes trained by each ``trainable`` choice (None:
#: all). "late" is the last stage of each expert, the gate and the output
#: norm: on a CPU the backward pass through the high-resolution early stages
#: costs most of a step, so training only the late layers is what fits a
#: short CPU budget; use "all" on a GPU. Only gradients are restricted:
#: BatchNorm statistics of every layer follow the training images.
TRAINABLE_PREFIXES: dict[str, tuple[str, ...] | None] = {
    "late": ("enc1.patch_embed4.", "enc1.block4.", "enc1.norm4.", "enc1.post_network.", "enc2.blocks3.",
             "fcn.", "ln_e.", "ln_out."),
    "all": None,
}


def set_trainable(model, trainable: str) -> None:
    """Let gradients reach only the parameters that :data:`TRAINABLE_PREFIXES` [``trainable``] names."""
    prefixes = TRAINABLE_PREFIXES[trainable]
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(prefixes is None or name.startswith(prefixes))

#: File name of the resolved settings written beside every result.
CONFIG_NAME = "config.json"


def resolve_device(name: str):
    """``"auto"`` -> CUDA when available, else CPU; ``"cpu"``, ``"cuda"``, ``"cuda:1"`` as given."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device must be 'auto', 'cpu' or 'cuda[:N]'; got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"--device {name} asked for CUDA but torch sees no GPU; use --device auto or cpu")
    return device


def read_config_file(path: str | os.PathLike | None) -> dict[str, Any]:
    """Settings from a ``.toml`` or ``.json`` file; {} for None."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        settings = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise TrainingError(f"config file {path} is not valid {path.suffix.lstrip('.').upper() or 'JSON'}: {exc}") from None
    if not isinstance(settings, dict):
        raise TrainingError(f"config file {path} must hold a table/object of settings")
    return settings


def merge_settings(defaults: Any, file_settings: Mapping[str, Any], overrides: Mapping[str, Any]):
    """A dataclass of settings: ``defaults`` <- config file <- non-None command-line options.

    Unknown keys in the file are an error naming the known ones, so a typo is
    not silently ignored.
    """
    known = {field.name for field in dataclasses.fields(defaults)}
    unknown = sorted(set(file_settings) - known)
    if unknown:
        raise TrainingError(f"unknown settings {unknown} in the config file; known settings are {sorted(known)}")
    chosen = dict(file_settings)
    chosen.update({key: value for key, value in overrides.items() if value is not None})
    for key, value in chosen.items():
        if isinstance(getattr(defaults, key), tuple) and isinstance(value, list):
            chosen[key] = tuple(value)
    return dataclasses.replace(defaults, **chosen)


def parse_pairs(text: str | list | tuple, modalities: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``"Eda:scalogram,Bvp:waveform"`` (or a list of such items) -> ((modality, representation), ...).

    Modality names are matched case-insensitively and returned as written in
    ``modalities``; ``Eda:*`` stands for all of :data:`DEFAULT_REPRESENTATIONS`.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    by_lower = {name.lower(): name for name in modalities}
    pairs: list[tuple[str, str]] = []
    for item in (str(item).strip() for item in items):
        modality, sep, representation = item.partition(":")
        if not sep or modality.lower() not in by_lower or representation not in (*REPRESENTATIONS, "*"):
            raise ValueError(
                f"pair {item!r} must be MODALITY:REPRESENTATION with MODALITY in {modalities} and "
                f"REPRESENTATION in {REPRESENTATIONS} (or '*'), e.g. Eda:scalogram"
            )
        names = DEFAULT_REPRESENTATIONS if representation == "*" else (representation,)
        pairs.extend((by_lower[modality.lower()], name) for name in names)
    if not pairs:
        raise ValueError("pairs must name at least one MODALITY:REPRESENTATION, e.g. Eda:scalogram")
    if len(set(pairs)) != len(pairs):
        raise ValueError(f"pairs must not repeat; got {[f'{m}:{r}' for m, r in pairs]}")
    return tuple(pairs)


def write_json(path: str | os.PathLike, content: Any) -> Path:
    """Write JSON atomically (temporary file, then rename)."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(content, indent=2, default=_jsonable) + "\n")
    os.replace(partial, path)
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, RepresentationSpec):
        return value.to_dict()
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
