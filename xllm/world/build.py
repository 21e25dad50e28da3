"""Build the synthetic world and write it to disk as `datasets` objects.

`build_world(output_dir)` writes one `DatasetDict` (train / validation / test /
test_in_distribution, see splits.py) per modality, one DisCRn-style cross-modal test set per test
split and `world.json` (seed, sizes, held-out combinations, vocabulary). Media live inside the Arrow files: PNG images, wav audio, mp4 videos, ply meshes. Every item draws from its own
random generator, seeded by (seed, modality, split, index), so the world is the same whatever the
order or parallelism of generation.

Each modality's rows: id, the media column named by the modality (plus `mesh` for point clouds
and `transcript` for speech), attributes (a dict of strings), caption and qa (a list of
{instruction, answer}).
"""

import json
import tempfile
from dataclasses import asdict, dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
from datasets import (
    Array2D,
    Audio,
    Dataset,
    DatasetDict,
    Features,
    Image,
    List,
    Mesh,
    Value,
    Video,
    load_from_disk,
)

from .discrn import build_discrn_test_sets
from .images import render_image
from .point_clouds import make_primitive, sample_point_cloud
from .sounds import synthesise_sound
from .speech import RATES, VOICES, speak_all
from .splits import SPLITS, TEST_SETS, held_out_combinations, split_combinations
from .videos import encode_video, render_video_frames
from .vocabulary import ATTRIBUTES, MODALITIES, caption, instruction_pairs, world_vocabulary

SAMPLING_RATE = 16000
# Speech items speak the captions of these modalities.
SPEECH_TOPICS = ("image", "point_cloud", "video", "audio")
SPEECH_ATTRIBUTES = ("topic", "voice", "rate")
# Test set (splits.TEST_SETS) -> the world's key of its DisCRn pairs ("discrn": held out, as before).
DISCRN_SETS = {"in_distribution": "discrn_in_distribution", "held_out": "discrn"}


@dataclass(frozen=True)
class WorldSizes:
    """Train items per modality, validation / test / test_in_distribution items per modality, DisCRn
    pairs per pair type and test set, and media resolution."""

    image: int = 2000
    point_cloud: int = 2000
    video: int = 800
    audio: int = 800
    speech: int = 600
    validation: int = 100
    test: int = 300
    test_in_distribution: int = 300
    discrn_pairs: int = 1000
    image_side: int = 64
    video_frames: int = 8
    points: int = 512
    sound_seconds: float = 1.5

    def count(self, modality: str, split: str) -> int:
        return getattr(self, modality) if split == "train" else getattr(self, split)


def item_rng(seed: int, modality: str, split: str, index: int) -> np.random.Generator:
    """The random generator of one item, independent of every other item's."""
    return np.random.default_rng([seed, MODALITIES.index(modality), SPLITS.index(split), index])


def modality_features(modality: str, sizes: WorldSizes) -> Features:
    """The `datasets` features of one modality's rows."""
    media = {
        "image": {"image": Image()},
        "video": {"video": Video()},
        "audio": {"audio": Audio(sampling_rate=SAMPLING_RATE)},
        "speech": {"speech": Audio(sampling_rate=SAMPLING_RATE), "transcript": Value("string")},
        "point_cloud": {"point_cloud": Array2D(shape=(sizes.points, 6), dtype="float32"), "mesh": Mesh()},
    }[modality]
    attribute_names = SPEECH_ATTRIBUTES if modality == "speech" else ATTRIBUTES[modality]
    return Features(
        {
            "id": Value("string"),
            **media,
            "attributes": {name: Value("string") for name in attribute_names},
            "caption": Value("string"),
            "qa": List({"instruction": Value("string"), "answer": Value("string")}),
        }
    )


def wav_bytes(waveform: np.ndarray, sampling_rate: int = SAMPLING_RATE) -> bytes:
    """16-bit PCM wav file bytes of a float waveform in [-1, 1].

    Written here rather than handing arrays to `datasets.Audio`, whose encoder costs about 17 ms
    a clip (a third of the whole build for 1400 clips).
    """
    from scipy.io import wavfile

    buffer = BytesIO()
    wavfile.write(buffer, sampling_rate, (np.clip(waveform, -1, 1) * 32767).astype(np.int16))
    return buffer.getvalue()


def _image_media(attributes, rng, stem: Path, sizes: WorldSizes) -> dict:
    return {"image": render_image(attributes, rng, sizes.image_side)}


def _video_media(attributes, rng, stem: Path, sizes: WorldSizes) -> dict:
    path = stem.with_suffix(".mp4")
    encode_video(render_video_frames(attributes, rng, sizes.video_frames, sizes.image_side), path)
    return {"video": str(path)}


def _audio_media(attributes, rng, stem: Path, sizes: WorldSizes) -> dict:
    return {"audio": wav_bytes(synthesise_sound(attributes, rng, sizes.sound_seconds, SAMPLING_RATE))}


def _point_cloud_media(attributes, rng, stem: Path, sizes: WorldSizes) -> dict:
    mesh = make_primitive(attributes, rng)
    path = stem.with_suffix(".ply")
    mesh.export(path)
    return {"point_cloud": sample_point_cloud(mesh, sizes.points, rng), "mesh": str(path)}


MEDIA_MAKERS = {
    "image": _image_media,
    "video": _video_media,
    "audio": _audio_media,
    "point_cloud": _point_cloud_media,
}


def build_split(modality: str, split: str, seed: int, sizes: WorldSizes, media_dir: Path) -> Dataset:
    """One split of one modality (speech included), media files written under `media_dir`."""
    folder = media_dir / modality / split
    folder.mkdir(parents=True, exist_ok=True)
    if modality == "speech":
        rows = _speech_rows(split, seed, sizes)
    else:
        combinations = split_combinations(modality, split, seed)
        rows = []
        for index in range(sizes.count(modality, split)):
            rng = item_rng(seed, modality, split, index)
            item_id = f"{modality}-{split}-{index:05d}"
            attributes = combinations[rng.integers(len(combinations))]
            media = MEDIA_MAKERS[modality](attributes, rng, folder / item_id, sizes)
            text = caption(modality, attributes)
            qa = instruction_pairs(modality, attributes, text, rng)
            rows.append({"id": item_id, **media, "attributes": attributes, "caption": text, "qa": qa})
    return Dataset.from_list(rows, features=modality_features(modality, sizes))


def _speech_requests(split: str, seed: int, sizes: WorldSizes) -> list[tuple[int, str, dict, list]]:
    """(index, sentence, attributes, qa) of each speech item: the caption of a random item of another
    modality (of the split's attribute combinations), in a random voice and rate.

    espeak-ng says a (sentence, voice, rate) the same way every time, so an in-distribution item
    that drew one a train item has would be that train item again: it draws again (its own
    generator, so still independent of the other items), and every test item is a new recording.
    """
    combinations = {topic: split_combinations(topic, split, seed) for topic in SPEECH_TOPICS}
    seen = set()
    if split == "test_in_distribution":
        seen = {
            (sentence, a["voice"], a["rate"]) for _, sentence, a, _ in _speech_requests("train", seed, sizes)
        }
    requests = []
    for index in range(sizes.count("speech", split)):
        rng = item_rng(seed, "speech", split, index)
        for _ in range(100):
            topic = SPEECH_TOPICS[rng.integers(len(SPEECH_TOPICS))]
            sentence = caption(topic, combinations[topic][rng.integers(len(combinations[topic]))])
            attributes = {"topic": topic, "voice": sorted(VOICES)[rng.integers(len(VOICES))]}
            attributes["rate"] = sorted(RATES)[rng.integers(len(RATES))]
            if (sentence, attributes["voice"], attributes["rate"]) not in seen:
                break
        else:
            raise ValueError(
                f"no speech item of split {split!r} differs from every train item after 100 draws"
            )
        requests.append((index, sentence, attributes, instruction_pairs("speech", attributes, sentence, rng)))
    return requests


def _speech_rows(split: str, seed: int, sizes: WorldSizes) -> list[dict]:
    """Speech items of `split` (see `_speech_requests`); espeak-ng runs once per distinct request."""
    items = _speech_requests(split, seed, sizes)
    waveforms = speak_all(
        [(sentence, attributes["voice"], attributes["rate"]) for _, sentence, attributes, _ in items]
    )
    return [
        {
            "id": f"speech-{split}-{index:05d}",
            "speech": wav_bytes(waveform),
            "transcript": sentence,
            "attributes": attributes,
            "caption": sentence,
            "qa": qa,
        }
        for (index, sentence, attributes, qa), waveform in zip(items, waveforms, strict=True)
    ]


def build_world(
    output_dir: str | Path, seed: int = 0, sizes: WorldSizes | None = None
) -> dict[str, DatasetDict]:
    """Generate the world into `output_dir` and return it, loaded back from disk.

    Returns modality -> DatasetDict(train, validation, test, test_in_distribution) for image, video,
    speech, audio and point_cloud, "discrn" -> DatasetDict(image_point_cloud, audio_video) built from
    test items (held-out combinations) and "discrn_in_distribution" -> the same from
    test_in_distribution items.
    `save_to_disk` copies the mp4 and ply files into the Arrow files (the stored path keeps only
    the file name), so they are written to a scratch folder that is removed afterwards, and the
    world folder is self-contained.
    """
    sizes = sizes or WorldSizes()
    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output_dir) as media_dir:
        test_sets = {name: {} for name in TEST_SETS}
        for modality in MODALITIES:
            splits = {split: build_split(modality, split, seed, sizes, Path(media_dir)) for split in SPLITS}
            DatasetDict(splits).save_to_disk(output_dir / modality)
            # The in-memory copy: selecting rows of the saved one would write cache files beside it.
            for name, split in TEST_SETS.items():
                test_sets[name][modality] = splits[split]
        for name, key in DISCRN_SETS.items():
            # The held-out pairs keep the random stream they had before the in-distribution ones existed.
            stream = () if name == "held_out" else (SPLITS.index(TEST_SETS[name]),)
            pairs = build_discrn_test_sets(test_sets[name], sizes.discrn_pairs, seed, stream=stream)
            pairs.save_to_disk(output_dir / key)
    manifest = {
        "seed": seed,
        "sizes": asdict(sizes),
        "held_out": {m: sorted(held_out_combinations(m, seed)) for m in SPEECH_TOPICS},
        "vocabulary": world_vocabulary(),
    }
    (output_dir / "world.json").write_text(json.dumps(manifest, indent=2))
    return load_world(output_dir)


def load_world(output_dir: str | Path) -> dict[str, DatasetDict]:
    """The world written by `build_world` (memory-mapped, nothing decoded until read)."""
    output_dir = Path(output_dir)
    if not (output_dir / "world.json").is_file():
        raise ValueError(f"output_dir must hold a world built by build_world, got {str(output_dir)!r}")
    return {name: load_from_disk(output_dir / name) for name in (*MODALITIES, *DISCRN_SETS.values())}
