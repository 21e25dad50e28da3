"""Encoder features computed once: run each frozen encoder over a manifest's media, train without it.

The encoders are frozen in every stage, so every epoch would compute the same features again. A cache
holds what each interface reads: the selected encoder layer, before the interface's own LayerNorm,
every real frame or window of every item (the frames of an utterance for speech), optionally in
float16 / bfloat16. It is a `datasets` Arrow dataset beside the manifest,
`<manifest stem>.encoder-features/<modality>/`, one row per distinct media file: its path, the
SHA-256 of its bytes, the features' shape and the features (raw bytes, so every dtype round-trips).

A cache is used only for the encoder, layer and preprocessing it was made with. Its key
(`cache_key.json`) records the encoder's type and a fingerprint of its weights (read from its
checkpoint when the model is built without it), the selected layer and
the CLS choice, the preprocessing (the sub-processor's settings: image size and normalisation, frame
sampling, fbank settings, audio windows) and the dtype; opening a cache compares that key with the
model's and hashes every media file again, and any difference (other weights, another image size, an
edited file, another layer) is a ValueError that names the key that changed. A stale cache is never
used; `xllm cache-features` writes it anew.

`build_feature_cache` writes a manifest's caches, `FeatureCache` reads one modality's, and
`FeatureCache.encoder_features` gives what `forward`'s `encoder_features` (and the stage-1 heads) take.
`MemoryFeatureCache` holds the same features for media kept in memory (no files, no key checks).
"""

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

import torch

from xllm.manifests import load_manifest
from xllm.modeling_xllm.model_modalities import model_modality
from xllm.processing.processor_modalities import processor_modality

CACHE_SUFFIX = ".encoder-features"
KEY_FILE = "cache_key.json"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Sub-processor settings that name its class rather than change what it computes.
# Keys of a sub-processor's dict that name its class or where its code is (`auto_map`, set when a processor
# registered for remote code is saved), not how it preprocesses.
NOT_PREPROCESSING = ("processor_class", "_processor_class", "auto_map")


def cache_folder(manifest: str | Path, modality: str) -> Path:
    manifest = Path(manifest)
    return manifest.parent / f"{manifest.stem}{CACHE_SUFFIX}" / modality


def encoder_tensors(model, modality: str):
    """(name, tensor) of every saved parameter and buffer of the modality's encoder: from the module, or
    read from its checkpoint when the model was built without it (`without_encoders`)."""
    base = getattr(model, "model", model)
    name = model_modality(modality).encoder
    if name in base.encoders_left_out:
        return base.left_out_encoder_tensors(name)
    return base.encoders[name].state_dict().items()


def weights_fingerprint(tensors) -> str:
    """SHA-256 of (name, tensor) pairs: each tensor's name, dtype, shape and bytes hashed on its own, then
    the digests in name order, so tensors can be read one at a time in any order."""
    digests = {}
    for name, tensor in tensors:
        tensor = tensor.detach().cpu().contiguous()
        digest = hashlib.sha256(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
        digests[name] = digest.hexdigest()
    return hashlib.sha256(
        "".join(f"{name}={digests[name]};" for name in sorted(digests)).encode()
    ).hexdigest()


def file_hash(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def preprocessing_settings(processor, modality: str) -> dict:
    """Everything of the processor that changes the encoder's input for this modality."""
    row = processor_modality(modality)
    settings = {
        key: value
        for key, value in getattr(processor, row.sub_processor).to_dict().items()
        if key not in NOT_PREPROCESSING
    }
    if row.preparation == "audio_windows":
        settings["audio_window_seconds"] = processor.audio_window_seconds
        settings["audio_max_windows"] = processor.audio_max_windows
    return json.loads(json.dumps(settings, default=str))  # as it reads back from the key file


def cache_key(model, processor, modality: str, dtype: str) -> dict:
    """What a cache of this modality's features depends on (see the module docstring)."""
    if dtype not in DTYPES:
        raise ValueError(f"`dtype` must be one of {sorted(DTYPES)}, got {dtype!r}.")
    base = getattr(model, "model", model)
    interface = base.config.interface_config(modality)
    return {
        "modality": modality,
        "encoder_type": base.config.encoder_config(modality).model_type,
        "encoder_weights": weights_fingerprint(encoder_tensors(model, modality)),
        "encoder_feature_layer": interface.encoder_feature_layer,
        "encoder_keep_cls": interface.encoder_keep_cls,
        "preprocessing": preprocessing_settings(processor, modality),
        "dtype": dtype,
    }


def changed_keys(stored: dict, current: dict, prefix: str = "") -> list[str]:
    """The keys whose values differ, nested ones dotted (`preprocessing.size`)."""
    changed = []
    for key in sorted(set(stored) | set(current)):
        old, new = stored.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            changed += changed_keys(old, new, f"{prefix}{key}.")
        elif old != new:
            changed.append(f"{prefix}{key}")
    return changed


def media_paths(manifest: str | Path, modality: str, allow_outside_root: bool = False) -> list[str]:
    """The distinct media files of one modality in a manifest, in order of first appearance."""
    keyword = processor_modality(modality).keyword
    examples = load_manifest(manifest, decode=False, allow_outside_root=allow_outside_root)
    if keyword not in examples.column_names:
        return []
    paths = []
    for value in examples[keyword]:
        for item in value if isinstance(value, list) else [value]:
            if item is not None:
                paths.append(item["path"])
    return list(dict.fromkeys(paths))


def item_features(model, modality: str, inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """Each item's encoder features: (windows, tokens, width), or (frames, width) for speech."""
    base = getattr(model, "model", model)
    row = model_modality(modality)
    with torch.no_grad():
        encoded = base.encode_media(modality, inputs[row.input_name], inputs.get(row.mask_name))
    if row.layout == "sequence":
        return [frames[mask] for frames, mask in zip(encoded.features, encoded.frame_mask, strict=True)]
    return list(encoded.features.split(encoded.inputs_per_item.tolist()))


def batched_item_features(model, processor, modality: str, media: list, batch_size: int):
    """Each item's encoder features (`item_features`), in order, the media prepared and encoded `batch_size`
    at a time."""
    for start in range(0, len(media), batch_size):
        yield from item_features(
            model, modality, processor.prepare_media(modality, media[start : start + batch_size])
        )


def to_bytes(tensor: torch.Tensor) -> bytes:
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def build_feature_cache(
    manifest: str | Path,
    model,
    processor,
    modalities: Iterable[str] | None = None,
    dtype: str = "float32",
    batch_size: int = 16,
    allow_outside_root: bool = False,
) -> dict[str, Path]:
    """Run the frozen encoders over the manifest's media and write a cache per modality (by default
    every modality with a media column and an interface); returns modality -> cache folder."""
    from datasets import Dataset

    base = getattr(model, "model", model)
    wanted = list(modalities) if modalities is not None else list(base.config.modalities)
    folders = {}
    for modality in wanted:
        paths = media_paths(manifest, modality, allow_outside_root)
        if not paths:
            continue
        key = cache_key(model, processor, modality, dtype)
        rows = {"path": [], "content_hash": [], "shape": [], "features": []}
        features = batched_item_features(model, processor, modality, paths, batch_size)
        for path, item in zip(paths, features, strict=True):
            rows["path"].append(path)
            rows["content_hash"].append(file_hash(path))
            rows["shape"].append(list(item.shape))
            rows["features"].append(to_bytes(item.to(DTYPES[dtype])))
        folder = cache_folder(manifest, modality)
        Dataset.from_dict(rows).save_to_disk(str(folder))
        (folder / KEY_FILE).write_text(json.dumps(key, indent=2) + "\n")
        folders[modality] = folder
    return folders


class FeatureCache:
    """One modality's cache of one manifest, opened only if it fits the model and the media files."""

    def __init__(self, manifest: str | Path, model, processor, modality: str, dtype: str = "float32"):
        from datasets import load_from_disk

        self.modality = modality
        self.folder = cache_folder(manifest, modality)
        if not (self.folder / KEY_FILE).is_file():
            raise ValueError(
                f"No {modality} feature cache for {manifest} (expected {self.folder}); write it with "
                "`xllm cache-features CONFIG.yaml`."
            )
        stored = json.loads((self.folder / KEY_FILE).read_text())
        changed = changed_keys(stored, cache_key(model, processor, modality, dtype))
        if changed:
            raise ValueError(
                f"The {modality} feature cache {self.folder} is stale: {', '.join(changed)} changed since it was "
                "written (other encoder weights, layer, preprocessing or dtype). Write it again with "
                "`xllm cache-features CONFIG.yaml`."
            )
        self.dtype = DTYPES[dtype]
        self.rows = load_from_disk(str(self.folder))
        self.index = {path: row for row, path in enumerate(self.rows["path"])}
        for path, expected in zip(self.rows["path"], self.rows["content_hash"], strict=True):
            if not Path(path).is_file() or file_hash(path) != expected:
                raise ValueError(
                    f"The {modality} feature cache {self.folder} is stale: the media file {path} changed (or is "
                    "gone) since it was written. Write it again with `xllm cache-features CONFIG.yaml`."
                )

    def item(self, path: str) -> torch.Tensor:
        """One item's features: (windows, tokens, width), or (frames, width) for speech."""
        if path not in self.index:
            raise ValueError(f"The {self.modality} feature cache {self.folder} has no features of {path}.")
        row = self.rows[self.index[path]]
        flat = torch.frombuffer(bytearray(row["features"]), dtype=torch.uint8)
        return flat.view(self.dtype).reshape(row["shape"])

    def windows(self, path: str) -> int:
        """Frames or windows of one item (what its placeholders expand to)."""
        return self.rows[self.index[path]]["shape"][0]

    def encoder_features(self, paths: list[str]) -> dict[str, torch.Tensor]:
        """What `forward`'s `encoder_features[modality]` takes for these items, in this order."""
        return stacked_features(self.modality, [self.item(path) for path in paths])


class MemoryFeatureCache:
    """One modality's encoder features computed in memory, from media given directly (PIL images, frame
    arrays, waveform dicts, point arrays) under keys of the caller's choosing.

    For training runs that hold their media in memory rather than in a manifest's files (the demo): stages
    2 and 3 show each item many times, and its features are the same each time because the encoder is
    frozen. It reads as `FeatureCache` does (`index`, `item`, `windows`), so `FeatureCaches` and the
    collators take it; examples then carry an item's key where its media would be. Nothing is checked
    against files: the cache lives as long as the run that made it.
    """

    def __init__(self, model, processor, modality: str, media: dict[str, object], batch_size: int = 32):
        self.modality = modality
        features = batched_item_features(model, processor, modality, list(media.values()), batch_size)
        self.items: dict[str, torch.Tensor] = dict(zip(media, features, strict=True))
        self.index = dict.fromkeys(self.items)  # the keys, as `FeatureCaches` reads them

    def item(self, key: str) -> torch.Tensor:
        """One item's features: (windows, tokens, width), or (frames, width) for speech."""
        if key not in self.items:
            raise ValueError(
                f"The memory feature cache holds no {self.modality} features under {key!r} "
                f"({len(self.items)} items, e.g. {next(iter(self.items), None)!r})."
            )
        return self.items[key]

    def windows(self, key: str) -> int:
        """Frames or windows of one item (what its placeholders expand to)."""
        return len(self.item(key))


class FeatureCaches:
    """The caches a training run reads (several manifests, several modalities), looked up by media path;
    what the collators take in place of media files."""

    def __init__(self, caches: Iterable[FeatureCache]):
        self.by_path: dict[str, dict[str, FeatureCache]] = {}
        for cache in caches:
            paths = self.by_path.setdefault(cache.modality, {})
            paths.update(dict.fromkeys(cache.index, cache))

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.by_path)

    def cache_of(self, modality: str, path: str) -> FeatureCache:
        cache = self.by_path[modality].get(path)
        if cache is None:
            raise ValueError(
                f"No {modality} feature cache holds {path}; write the caches with `xllm cache-features`."
            )
        return cache

    def windows(self, modality: str, path: str) -> int:
        return self.cache_of(modality, path).windows(path)

    def encoder_features(self, modality: str, paths: list[str]) -> dict[str, torch.Tensor]:
        """`encoder_features[modality]` for these items, in this order (see `FeatureCache`)."""
        items = [self.cache_of(modality, path).item(path) for path in paths]
        return stacked_features(modality, items)

    def take_cached_media(self, conversations: list[list[dict]]) -> tuple[list[list[dict]], dict, dict]:
        """The conversations with the media values of cached modalities taken out of their parts (the
        parts stay, so the chat template still writes their placeholders), each such item's frame or
        window count (`precomputed_windows` of the processor) and their `encoder_features`, both in
        placeholder order."""
        paths = {modality: [] for modality in self.modalities}
        stripped = []
        for conversation in conversations:
            messages = []
            for message in conversation:
                content = message["content"]
                if not isinstance(content, str):
                    content = [self._take(part, paths) for part in content]
                messages.append({**message, "content": content})
            stripped.append(messages)
        windows = {m: [self.windows(m, path) for path in found] for m, found in paths.items() if found}
        features = {m: self.encoder_features(m, found) for m, found in paths.items() if found}
        return stripped, windows, features

    @staticmethod
    def _take(part: dict, paths: dict[str, list[str]]) -> dict:
        modality = part.get("type")
        if modality not in paths:
            return part
        value = part.get(modality)
        path = value.get("path") if isinstance(value, dict) else value
        if not isinstance(path, str):
            raise ValueError(
                f"A cached {modality} item must come as its file path (the manifest column left undecoded), got "
                f"{type(value).__name__}."
            )
        paths[modality].append(path)
        return {"type": modality}


def stacked_features(modality: str, items: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Items' features as `forward`'s `encoder_features[modality]`: every window of every item with a
    window mask, or padded frames with a frame mask (speech)."""
    lengths = torch.tensor([len(item) for item in items])
    mask = torch.arange(int(lengths.max())).unsqueeze(0) < lengths.unsqueeze(1)  # (items, windows or frames)
    if model_modality(modality).layout == "sequence":
        return {"features": torch.nn.utils.rnn.pad_sequence(items, batch_first=True), "frame_mask": mask}
    return {"features": torch.cat(items), "window_mask": mask}


__all__ = [
    "CACHE_SUFFIX",
    "FeatureCache",
    "FeatureCaches",
    "MemoryFeatureCache",
    "build_feature_cache",
    "cache_folder",
    "cache_key",
]
