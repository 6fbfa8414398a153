"""Model bundles: the folder the export writes and the monitor loads.

A bundle is a folder holding the model graph(s) and ``manifest.json``, which
says how to feed the model (channels, rate, window, which representation of
which channel goes where), what comes out (labels), and the SHA-256 of every
file so a corrupt or tampered bundle is refused before it is run. The format
is specified in ``edge/BUNDLE.md``; :func:`load_bundle` enforces it.

:func:`save_bundle` writes a new bundle into a temporary sibling folder and
renames it into place only once complete, so a half-written bundle (power cut
during an update) never looks valid.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from edge.calibration import CALIBRATIONS
from edge.errors import EdgeError
from edge.quality import ChannelSpec, channel_spec

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "BACKENDS",
    "PIPELINES",
    "PIPELINE_GRAPHS",
    "PLACEHOLDER_NOTICE",
    "GraphSpec",
    "FusionEntry",
    "Bundle",
    "load_bundle",
    "save_bundle",
    "file_sha256",
    "default_bundle_path",
]

FORMAT_NAME = "tiny-biomoe-bundle"
#: The newest manifest version this runtime reads (it reads every older one).
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
BACKENDS = ("onnxruntime", "litert")
#: end_to_end: one graph, images of a window -> class scores.
#: backbone_head: backbone images -> embeddings, then head embeddings -> class scores.
PIPELINES = ("end_to_end", "backbone_head")
PIPELINE_GRAPHS = {"end_to_end": ("model",), "backbone_head": ("backbone", "head")}
#: What each graph of a pipeline produces.
_GRAPH_PRODUCES = {
    "model": ("probabilities", "logits"),
    "backbone": ("embeddings",),
    "head": ("probabilities", "logits"),
}
_DTYPES = ("float32", "float16", "int8", "uint8")
_REQUIRED_KEYS = (
    "format", "format_version", "placeholder", "backend", "pipeline", "graphs",
    "representation_spec", "fusion", "labels", "sampling_rate", "window_seconds",
    "channels", "quantization", "parity", "files",
)
#: Largest manifest read, bytes: a real one is a few kB; this keeps a huge file from filling memory.
MAX_MANIFEST_BYTES = 1 << 20
#: Largest sampling rate (Hz), window (s) and image side (pixels) a manifest may give: far above any
#: real bundle, low enough that the arrays they size fit in memory.
_MAX_SAMPLING_RATE_HZ = 10_000.0
_MAX_WINDOW_SECONDS = 600.0
_MAX_IMAGE_SIZE = 1024
PLACEHOLDER_NOTICE = (
    "PLACEHOLDER MODEL: this bundle has fixed random weights and its pain levels mean nothing; "
    "it only exercises the pipeline. Install a trained bundle (biomoe export) and pass --bundle."
)


@dataclass(frozen=True)
class GraphSpec:
    """One model graph of a bundle.

    Attributes
    ----------
    role : str
        ``"model"``, ``"backbone"`` or ``"head"``.
    file : str
        File name inside the bundle.
    input_name, output_name : str
        Names of the graph's single input and output tensors.
    input_shape : tuple of (int or str)
        Input shape; a string is a dimension the graph accepts at any size.
    input_dtype : str
        ``"float32"`` (or the integer type of a fully quantized LiteRT graph).
    output_shape : tuple of (int or str) or None
        Output shape when the manifest gives it.
    produces : str
        ``"probabilities"``, ``"logits"`` (softmax is applied by the runtime)
        or ``"embeddings"``.
    onnxruntime_config : dict of str to str
        ONNX Runtime session config entries the graph needs (e.g. a
        weight-only int8 graph asks for its weights to be dequantized once
        at load); empty for most graphs, ignored by LiteRT.
    """

    role: str
    file: str
    input_name: str
    input_shape: tuple
    input_dtype: str
    output_name: str
    output_shape: tuple | None
    produces: str
    onnxruntime_config: Mapping[str, str] = field(default_factory=dict)

    @property
    def batch_is_dynamic(self) -> bool:
        """Whether the first input dimension accepts any size."""
        return isinstance(self.input_shape[0], str)


@dataclass(frozen=True)
class FusionEntry:
    """One image of the model input: a representation of a channel."""

    modality: str
    representation: str


@dataclass(frozen=True)
class Bundle:
    """A loaded, verified model bundle (see ``edge/BUNDLE.md``).

    Attributes
    ----------
    path : Path
        The bundle folder.
    bundle_id : str
        First 12 hex digits of the manifest's SHA-256: names the exact bundle
        in stored results.
    manifest : dict
        The manifest as read.
    placeholder : bool
        True for a stand-in model with meaningless outputs; show
        :data:`PLACEHOLDER_NOTICE` to the user.
    backend, pipeline : str
        Runtime (:data:`BACKENDS`) and graph layout (:data:`PIPELINES`).
    graphs : dict of str to GraphSpec
        By role.
    representation_spec : dict
        Parameters of the representations (``RepresentationSpec.from_dict``).
    fusion : tuple of FusionEntry
        The images of one window, in model-input order.
    labels : tuple of str
        Class names, in output order.
    sampling_rate : float
        Rate (Hz) the representations expect.
    window_seconds : float
        Window length the model was trained on.
    channels : tuple of ChannelSpec
        Channels the bundle needs from the device, with quality-gate ranges.
    quantization, parity : dict or None
        As written by the export (informational).
    files : dict of str to str
        File name -> SHA-256, all verified.
    scalars : tuple of str
        ``edge.scalars`` names the head also reads, in order (its second
        input, ``scalars``); empty for a head on embeddings alone.
    calibration : dict
        ``{"method": "none"|"baseline", "windows": N, "embeddings": bool}``:
        the scalars the head expects (and its embeddings too, when
        ``embeddings``) are relative to the patient's rest baseline of N
        windows (:mod:`edge.calibration`); the monitor learns it after attaching.
    """

    path: Path
    bundle_id: str
    manifest: dict
    placeholder: bool
    backend: str
    pipeline: str
    graphs: dict
    representation_spec: dict
    fusion: tuple
    labels: tuple
    sampling_rate: float
    window_seconds: float
    channels: tuple
    quantization: dict | None
    parity: dict | None
    files: dict
    scalars: tuple = ()
    calibration: dict = field(default_factory=lambda: {"method": "none", "windows": 0, "embeddings": False})

    @property
    def name(self) -> str:
        """Human name from the manifest, else the folder name."""
        return str(self.manifest.get("name") or self.path.name)

    @property
    def channel_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.channels)

    @property
    def n_images(self) -> int:
        """Images per window (``k``)."""
        return len(self.fusion)

    @property
    def image_size(self) -> int:
        """Side of the square images, from the first graph's input shape."""
        first = self.graphs[PIPELINE_GRAPHS[self.pipeline][0]]
        return int(first.input_shape[-1])

    @property
    def window_samples(self) -> int:
        """Samples per channel in one window at :attr:`sampling_rate`."""
        return int(round(self.sampling_rate * self.window_seconds))

    def graph_path(self, role: str) -> Path:
        """Path of the graph file for ``role``."""
        return self.path / self.graphs[role].file

    def require_channels(self, available: Iterable[str]) -> None:
        """Refuse a device that does not send every channel the bundle needs.

        Raises
        ------
        EdgeError
            Naming the missing channels, what the device sends, and what to do.
        """
        available = list(available)
        missing = [name for name in self.channel_names if name not in available]
        if missing:
            raise EdgeError(
                f"bundle {self.name} needs channel(s) {', '.join(missing)}, which the device does not send "
                f"(it sends {', '.join(available) or 'nothing'}); connect those sensors or use a bundle "
                "trained for the device's channels"
            )

    def require_representations(self, known: Iterable[str]) -> None:
        """Refuse a bundle whose fusion uses a representation this runtime cannot draw.

        Raises
        ------
        EdgeError
            Naming the unknown representations and the known ones.
        """
        known = list(known)
        unknown = sorted({entry.representation for entry in self.fusion} - set(known))
        if unknown:
            raise EdgeError(
                f"bundle {self.name} uses representation(s) {', '.join(unknown)} that this runtime does not "
                f"know (known: {', '.join(known)}); upgrade biomoe or re-export the bundle"
            )

    def describe(self) -> str:
        """One line for logs: name, id, backend, pipeline, images, labels."""
        kind = "PLACEHOLDER " if self.placeholder else ""
        images = ", ".join(f"{e.modality}/{e.representation}" for e in self.fusion)
        return (
            f"{kind}bundle {self.name} ({self.bundle_id}): {self.backend} {self.pipeline}, "
            f"{self.n_images} images [{images}] at {self.sampling_rate:g} Hz x {self.window_seconds:g} s, "
            f"labels {list(self.labels)}"
        )


def default_bundle_path() -> Path:
    """The bundle shipped with the package (``edge/bundles/default``)."""
    return Path(__file__).resolve().parent / "bundles" / "default"


def file_sha256(path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_bundle(path) -> Bundle:
    """Load a bundle folder, validating its manifest and every file's checksum.

    Parameters
    ----------
    path : str or Path
        The bundle folder (the one holding ``manifest.json``).

    Returns
    -------
    Bundle

    Raises
    ------
    EdgeError
        One line naming what is wrong (missing folder or file, bad JSON,
        a manifest over :data:`MAX_MANIFEST_BYTES` or nested too deep,
        unsupported format version, missing or invalid field, a file that
        leads outside the bundle, checksum mismatch) and what to do.
    """
    path = Path(path)
    manifest_path = path / MANIFEST_NAME
    if not path.is_dir():
        raise EdgeError(f"bundle folder {path} not found; pass --bundle with the folder written by biomoe export")
    if not manifest_path.is_file():
        raise EdgeError(
            f"{path} is not a model bundle: {MANIFEST_NAME} is missing; pass the folder written by biomoe export"
        )
    _require_inside(path, MANIFEST_NAME)
    with open(manifest_path, "rb") as handle:
        raw = handle.read(MAX_MANIFEST_BYTES + 1)
    if len(raw) > MAX_MANIFEST_BYTES:
        raise EdgeError(f"bundle {path}: {MANIFEST_NAME} is larger than {MAX_MANIFEST_BYTES} bytes, far more than "
                        "a manifest needs; re-export the bundle")
    try:
        manifest = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EdgeError(f"bundle {path}: {MANIFEST_NAME} is not valid JSON ({exc}); re-export the bundle") from None
    except RecursionError:
        raise EdgeError(f"bundle {path}: {MANIFEST_NAME} is nested too deeply to be a manifest; "
                        "re-export the bundle") from None
    bundle = _parse_manifest(manifest, path, bundle_id=hashlib.sha256(raw).hexdigest()[:12])
    for name, expected in bundle.files.items():
        file_path = path / name
        if not file_path.is_file():
            raise EdgeError(f"bundle {path}: file {name} listed in the manifest is missing; re-export the bundle")
        _require_inside(path, name)
        actual = file_sha256(file_path)
        if actual != expected:
            raise EdgeError(
                f"bundle {path}: checksum mismatch for {name} (manifest {expected[:12]}..., file {actual[:12]}...): "
                "the file is corrupt or was modified; re-export the bundle or copy it again"
            )
    return bundle


def save_bundle(directory, manifest: Mapping, files: Mapping[str, bytes | str | os.PathLike]) -> Bundle:
    """Write a bundle atomically and return it loaded.

    The files are copied into a temporary sibling folder, ``files`` checksums
    are filled in, the manifest is written last and validated by
    :func:`load_bundle`, then the folder is renamed to ``directory``. An
    existing bundle at ``directory`` is replaced; any other existing non-empty
    folder is refused.

    Parameters
    ----------
    directory : str or Path
        Destination folder.
    manifest : mapping
        The manifest without ``files`` (a ``files`` key is overwritten) and
        without ``format``/``format_version`` (filled in when absent).
    files : mapping of str to (bytes or path)
        Bundle file name -> content, or the path of a file to copy.

    Returns
    -------
    Bundle
    """
    directory = Path(directory)
    if directory.exists() and not _is_replaceable(directory):
        raise EdgeError(
            f"cannot write bundle to {directory}: it exists and is not a bundle; choose an empty or new folder"
        )
    for name in files:
        _check_file_name(name, directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; the monitor's service user must read it
        checksums = {}
        for name, source in files.items():
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(source, (bytes, bytearray)):
                target.write_bytes(source)
            else:
                shutil.copyfile(source, target)
            _fsync(target)
            checksums[name] = file_sha256(target)
        full = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **manifest, "files": checksums}
        manifest_path = staging / MANIFEST_NAME
        manifest_path.write_text(json.dumps(full, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        _fsync(manifest_path)
        try:
            load_bundle(staging)  # never publish a bundle the runtime would refuse
        except EdgeError as exc:
            raise EdgeError(str(exc).replace(str(staging), str(directory))) from None
        _publish(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return load_bundle(directory)


def _is_replaceable(directory: Path) -> bool:
    """An empty folder, or one holding a bundle manifest."""
    if not directory.is_dir():
        return False
    manifest_path = directory / MANIFEST_NAME
    if manifest_path.is_file():
        try:
            return json.loads(manifest_path.read_bytes()).get("format") == FORMAT_NAME
        except (ValueError, AttributeError):
            return False
    return not any(directory.iterdir())


def _publish(staging: Path, directory: Path) -> None:
    """Rename ``staging`` to ``directory``, moving an old bundle aside first."""
    if directory.exists() and any(directory.iterdir()):
        retired = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
        os.replace(directory, retired / "bundle")
        os.replace(staging, directory)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, directory)  # an empty folder is replaced atomically
    _fsync(directory.parent)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _require_inside(bundle_path: Path, name: str) -> None:
    """Refuse a bundle file that is, or lies in a folder that is, a symlink leading outside the bundle."""
    target = (bundle_path / name).resolve()
    if not target.is_relative_to(bundle_path.resolve()):
        raise EdgeError(f"bundle {bundle_path}: {name} leads outside the bundle (to {target}) through a symlink; "
                        "copy the files into the bundle folder or re-export it")


def _check_file_name(name, bundle_path) -> None:
    pure = PurePosixPath(str(name))
    if (
        not isinstance(name, str) or not name or pure.is_absolute() or ".." in pure.parts
        or name == MANIFEST_NAME or "\\" in name
    ):
        raise EdgeError(
            f"bundle {bundle_path}: bad file name {name!r}; files are relative paths inside the bundle "
            f"(no '..', not {MANIFEST_NAME}); re-export the bundle"
        )


class _Manifest:
    """Typed reads of manifest fields with one error style."""

    def __init__(self, data, path: Path):
        self.path = path
        if not isinstance(data, dict):
            self.fail("the manifest must be a JSON object")
        self.data = data

    def fail(self, problem: str):
        raise EdgeError(f"bundle {self.path}: {problem}; re-export the bundle")

    def get(self, key, kinds, what, container=None, where=None):
        container = self.data if container is None else container
        where = where or key
        if key not in container:
            self.fail(f"{MANIFEST_NAME} has no '{where}' field")
        value = container[key]
        if not isinstance(value, kinds) or isinstance(value, bool) and bool not in _as_tuple(kinds):
            self.fail(f"'{where}' must be {what}, got {value!r}")
        return value

    def positive(self, key, most: float) -> float:
        value = self.get(key, (int, float), "a number > 0")
        if not (math.isfinite(value) and 0 < value <= most):
            self.fail(f"'{key}' must be a number > 0 and at most {most:g}, got {value!r}")
        return float(value)

    def names(self, key) -> list[str]:
        values = self.get(key, list, "a list of names")
        if not values or not all(isinstance(v, str) and v for v in values) or len(set(values)) != len(values):
            self.fail(f"'{key}' must be a non-empty list of distinct non-empty strings, got {values!r}")
        return values


def _as_tuple(kinds):
    return kinds if isinstance(kinds, tuple) else (kinds,)


def _parse_manifest(data, path: Path, bundle_id: str) -> Bundle:
    m = _Manifest(data, path)
    if m.get("format", str, "a string") != FORMAT_NAME:
        m.fail(f"'format' is {data['format']!r}, expected {FORMAT_NAME!r}")
    version = m.get("format_version", int, "an integer")
    if version < 1:
        m.fail(f"'format_version' must be >= 1, got {version}")
    if version > FORMAT_VERSION:
        raise EdgeError(
            f"bundle {path}: format_version {version} is newer than this runtime reads ({FORMAT_VERSION}); "
            f"upgrade biomoe, or re-export the bundle with format_version {FORMAT_VERSION}"
        )
    for key in _REQUIRED_KEYS:
        if key not in data:
            m.fail(f"{MANIFEST_NAME} has no '{key}' field")
    placeholder = m.get("placeholder", bool, "true or false")
    backend = m.get("backend", str, "a string")
    if backend not in BACKENDS:
        m.fail(f"'backend' must be one of {list(BACKENDS)}, got {backend!r}")
    pipeline = m.get("pipeline", str, "a string")
    if pipeline not in PIPELINES:
        m.fail(f"'pipeline' must be one of {list(PIPELINES)}, got {pipeline!r}")

    files = m.get("files", dict, "an object {file name: sha256}")
    for name, digest in files.items():
        _check_file_name(name, path)
        if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
            m.fail(f"'files' entry {name!r} must be a lowercase hex SHA-256 (64 digits), got {digest!r}")

    fusion_raw = m.get("fusion", list, "a list of {modality, representation}")
    if not fusion_raw:
        m.fail("'fusion' must list at least one image")
    fusion = []
    for i, entry in enumerate(fusion_raw):
        if not isinstance(entry, dict):
            m.fail(f"'fusion[{i}]' must be an object {{modality, representation}}, got {entry!r}")
        modality = m.get("modality", str, "a channel name", entry, f"fusion[{i}].modality")
        representation = m.get("representation", str, "a representation name", entry, f"fusion[{i}].representation")
        fusion.append(FusionEntry(modality, representation))

    channels = tuple(_parse_channel(m, i, entry) for i, entry in enumerate(m.get("channels", list, "a list")))
    channel_names = [spec.name for spec in channels]
    if not channels or len(set(channel_names)) != len(channel_names):
        m.fail(f"'channels' must list distinct channels, got {channel_names}")
    stray = sorted({e.modality for e in fusion} - set(channel_names))
    if stray:
        m.fail(f"'fusion' uses modality {', '.join(stray)} which 'channels' does not list")

    labels = m.names("labels")
    if len(labels) < 2:
        m.fail(f"'labels' must name at least 2 classes, got {labels}")
    sampling_rate = m.positive("sampling_rate", _MAX_SAMPLING_RATE_HZ)
    window_seconds = m.positive("window_seconds", _MAX_WINDOW_SECONDS)
    samples = sampling_rate * window_seconds
    if abs(samples - round(samples)) > 1e-6 or round(samples) < 1:
        m.fail(f"sampling_rate x window_seconds must be a whole number of samples, at least 1, got {samples}")
    representation_spec = m.get("representation_spec", dict, "an object")
    quantization = m.get("quantization", (dict, type(None)), "an object or null")
    parity = m.get("parity", (dict, type(None)), "an object or null")

    graphs_raw = m.get("graphs", dict, "an object {role: graph}")
    roles = PIPELINE_GRAPHS[pipeline]
    if sorted(graphs_raw) != sorted(roles):
        m.fail(f"pipeline {pipeline!r} needs graphs {list(roles)}, got {sorted(graphs_raw)}")
    graphs = {role: _parse_graph(m, role, graphs_raw[role], files) for role in roles}
    _check_graph_shapes(m, graphs, pipeline, len(fusion), len(labels))
    scalars = tuple(m.names("scalars")) if "scalars" in data else ()
    unknown = [name for name in scalars if name.split(".")[0] not in channel_names]
    if scalars and (pipeline != "backbone_head" or unknown):
        m.fail(f"'scalars' must name scalars of the bundle's channels for a backbone_head pipeline, got {list(scalars)}")
    calibration = m.get("calibration", dict, "an object {method, windows}") if "calibration" in data else {}
    calibration = {"method": calibration.get("method", "none"), "windows": calibration.get("windows", 0),
                   "embeddings": calibration.get("embeddings", False)}
    if calibration["method"] == "baseline" and not scalars:
        m.fail("'calibration' baseline calibrates the head's scalars; the manifest lists no 'scalars'")
    if calibration["method"] not in CALIBRATIONS or not (
        isinstance(calibration["windows"], int) and 0 <= calibration["windows"] <= 360
        and (calibration["windows"] > 0) == (calibration["method"] == "baseline")
        and isinstance(calibration["embeddings"], bool)
    ):
        m.fail(f"'calibration' must be {{method: none}} or {{method: baseline, windows: 1-360, embeddings: "
               f"true|false}}, got {calibration}")

    return Bundle(
        path=path, bundle_id=bundle_id, manifest=data, placeholder=placeholder, backend=backend,
        pipeline=pipeline, graphs=graphs, representation_spec=representation_spec, fusion=tuple(fusion),
        labels=tuple(labels), sampling_rate=sampling_rate, window_seconds=window_seconds, channels=channels,
        quantization=quantization, parity=parity, files=dict(files), scalars=scalars, calibration=calibration,
    )


def _parse_channel(m: _Manifest, i: int, entry) -> ChannelSpec:
    if isinstance(entry, str):
        return channel_spec(entry)
    if not isinstance(entry, dict):
        m.fail(f"'channels[{i}]' must be a channel name or an object {{name, unit, valid_range, adc_range}}")
    name = m.get("name", str, "a channel name", entry, f"channels[{i}].name")
    allowed = {"name", "unit", "valid_range", "adc_range", "flat_std", "max_constant_seconds"}
    unknown = sorted(set(entry) - allowed)
    if unknown:
        m.fail(f"'channels[{i}]' has unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    overrides = {key: value for key, value in entry.items() if key != "name"}
    for key in ("valid_range", "adc_range"):
        bounds = overrides.get(key)
        if bounds is not None and not (
            isinstance(bounds, list) and len(bounds) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bounds)
        ):
            m.fail(f"'channels[{i}].{key}' must be [low, high] or null, got {bounds!r}")
    try:
        return channel_spec(name, **overrides)
    except (TypeError, ValueError) as exc:
        m.fail(f"'channels[{i}]': {exc}")


def _parse_graph(m: _Manifest, role: str, raw, files: dict) -> GraphSpec:
    where = f"graphs.{role}"
    if not isinstance(raw, dict):
        m.fail(f"'{where}' must be an object")
    file_name = m.get("file", str, "a file name", raw, f"{where}.file")
    if file_name not in files:
        m.fail(f"'{where}.file' {file_name!r} is not listed in 'files' (every file needs a checksum)")
    inputs = m.get("inputs", list, "a list with one input", raw, f"{where}.inputs")
    outputs = m.get("outputs", list, "a list with one output", raw, f"{where}.outputs")
    if len(inputs) != 1 or len(outputs) != 1 or not isinstance(inputs[0], dict) or not isinstance(outputs[0], dict):
        m.fail(f"'{where}' must have exactly one input and one output object (format version {FORMAT_VERSION})")
    tensor_in, tensor_out = inputs[0], outputs[0]
    input_name = m.get("name", str, "a tensor name", tensor_in, f"{where}.inputs[0].name")
    input_shape = _parse_shape(m, tensor_in.get("shape"), f"{where}.inputs[0].shape")
    input_dtype = m.get("dtype", str, "a dtype name", tensor_in, f"{where}.inputs[0].dtype")
    if input_dtype not in _DTYPES:
        m.fail(f"'{where}.inputs[0].dtype' must be one of {list(_DTYPES)}, got {input_dtype!r}")
    output_name = m.get("name", str, "a tensor name", tensor_out, f"{where}.outputs[0].name")
    output_shape = tensor_out.get("shape")
    if output_shape is not None:
        output_shape = _parse_shape(m, output_shape, f"{where}.outputs[0].shape")
    produces = m.get("produces", str, "a string", raw, f"{where}.produces")
    if produces not in _GRAPH_PRODUCES[role]:
        m.fail(f"'{where}.produces' must be one of {list(_GRAPH_PRODUCES[role])}, got {produces!r}")
    config = raw.get("onnxruntime_config", {})
    if not isinstance(config, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in config.items()):
        m.fail(f"'{where}.onnxruntime_config' must be an object of string keys and string values, got {config!r}")
    return GraphSpec(role, file_name, input_name, input_shape, input_dtype, output_name, output_shape, produces,
                     dict(config))


def _parse_shape(m: _Manifest, shape, where: str) -> tuple:
    valid = isinstance(shape, list) and shape and all(
        (isinstance(d, int) and not isinstance(d, bool) and d > 0) or (isinstance(d, str) and d) for d in shape
    )
    if not valid:
        m.fail(f"'{where}' must be a list of positive integers or dimension names, got {shape!r}")
    return tuple(shape)


def _check_graph_shapes(m: _Manifest, graphs: dict, pipeline: str, n_images: int, n_classes: int) -> None:
    images = graphs[PIPELINE_GRAPHS[pipeline][0]]
    shape = images.input_shape
    if len(shape) != 4 or shape[1] != 3 or not isinstance(shape[2], int) or shape[2] != shape[3] or (
        shape[2] > _MAX_IMAGE_SIZE
    ):
        m.fail(f"graph {images.role!r} input must have shape [k, 3, S, S] with a fixed S of at most "
               f"{_MAX_IMAGE_SIZE}, got {list(shape)}")
    allowed_batches = (n_images,) if pipeline == "end_to_end" else (1, n_images)
    if isinstance(shape[0], int) and shape[0] not in allowed_batches:
        m.fail(
            f"graph {images.role!r} input batch is {shape[0]} but 'fusion' lists {n_images} images "
            f"(allowed: {' or '.join(map(str, allowed_batches))} or a dimension name)"
        )
    if pipeline == "backbone_head":
        head = graphs["head"].input_shape
        if len(head) == 3:
            valid = head[1] == n_images and isinstance(head[2], int)
        elif len(head) == 2:
            valid = isinstance(head[1], int) and head[1] % n_images == 0
        else:
            valid = False
        if not valid or (isinstance(head[0], int) and head[0] != 1):
            m.fail(
                f"graph 'head' input must have shape [1, k, D] or [1, k*D] with k = {n_images} images, "
                f"got {list(head)}"
            )
    final = graphs[PIPELINE_GRAPHS[pipeline][-1]]
    if final.output_shape is not None and isinstance(final.output_shape[-1], int) and final.output_shape[-1] != n_classes:
        m.fail(f"graph {final.role!r} outputs {final.output_shape[-1]} classes but 'labels' has {n_classes}")
