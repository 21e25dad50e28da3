"""Stand-in for transformers' `utils/fetch_hub_objects_for_ci.py`, which the sdist lacks.

transformers' CI downloads the Hub media its processor tests name by URL; here the tests must run
without the network, so each URL maps to a small local file of the same kind (PNG image, MP4 video,
MP3 or WAV sound), generated once into this folder's `media/` (videos and MP3 with ffmpeg).
"""

import math
import shutil
import struct
import subprocess
import wave
from pathlib import Path
from urllib.parse import urlparse

MEDIA = Path(__file__).resolve().parent / "media"
SAMPLING_RATE = 16000


def write_image(path: Path) -> None:
    from PIL import Image

    Image.radial_gradient("L").convert("RGB").resize((64, 48)).save(path)


def write_wav(path: Path, seconds: float = 1.0) -> None:
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / SAMPLING_RATE)))
        for i in range(int(seconds * SAMPLING_RATE))
    )
    with wave.open(str(path), "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(SAMPLING_RATE)
        file.writeframes(frames)


def ffmpeg(*arguments: str) -> None:
    if shutil.which("ffmpeg") is None:
        raise FileNotFoundError("ffmpeg is needed to write the processor tests' local video and MP3 files.")
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *arguments], check=True)


def write_media(path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix in (".png", ".jpg", ".jpeg"):
        write_image(path)
    elif suffix == ".wav":
        write_wav(path)
    elif suffix == ".mp3":
        ffmpeg("-f", "lavfi", "-i", f"sine=frequency=440:duration=1:sample_rate={SAMPLING_RATE}", str(path))
    elif suffix == ".mp4":
        ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=8:duration=2", "-pix_fmt", "yuv420p", str(path))
    else:
        raise ValueError(f"No local stand-in for media of kind {suffix!r} ({path.name}).")


def url_to_local_path(url: str, return_url_if_not_found: bool = True) -> str:
    """A local file standing in for the media at `url` (same file name and kind)."""
    name = Path(urlparse(url).path).name
    path = MEDIA / name
    if not path.exists():
        MEDIA.mkdir(exist_ok=True)
        write_media(path)
    return str(path)
