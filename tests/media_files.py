"""Small media files of every modality, in real formats, as bytes: for the loaders' and the server's tests."""

import base64
import io
import struct
import zlib

import numpy as np
import torch
import trimesh
from PIL import Image
from scipy.io import wavfile


def data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def png_bytes(colour="red", size: int = 40, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def noise_png_bytes(seed: int = 0, size: int = 32) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def mp4_bytes(frames: int = 6, seed: int = 0, size: int = 32) -> bytes:
    from torchcodec.encoders import VideoEncoder

    pixels = torch.from_numpy(
        np.random.default_rng(seed).integers(0, 256, (frames, 3, size, size), dtype=np.uint8)
    )
    return VideoEncoder(pixels, frame_rate=4).to_tensor(format="mp4").numpy().tobytes()


def tone(seconds: float = 1.0, frequency: float = 440.0, rate: int = 16000, channels: int = 1) -> np.ndarray:
    """(samples,) or (samples, channels) float32."""
    time = np.arange(round(seconds * rate)) / rate
    wave = (0.4 * np.sin(2 * np.pi * frequency * time)).astype(np.float32)
    return wave if channels == 1 else np.stack([wave * (c + 1) / channels for c in range(channels)], axis=1)


def wav_bytes(seconds: float = 1.0, frequency: float = 440.0, rate: int = 16000, channels: int = 1) -> bytes:
    buffer = io.BytesIO()
    wavfile.write(buffer, rate, tone(seconds, frequency, rate, channels))
    return buffer.getvalue()


def flac_bytes(samples: torch.Tensor, rate: int) -> bytes:
    """`samples`: (channels, samples) float in [-1, 1]."""
    from torchcodec.encoders import AudioEncoder

    return AudioEncoder(samples, sample_rate=rate).to_tensor(format="flac").numpy().tobytes()


def silent_hour_flac() -> bytes:
    """An hour of silence at 1 kHz: about 290 KB of FLAC."""
    return flac_bytes(torch.zeros(1, 3600 * 1000), rate=1000)


def huge_one_colour_png(side: int = 20000) -> bytes:
    """A side x side 1-bit PNG of one colour, a few dozen KB, written row by row (never held decoded)."""
    row = b"\x00" + bytes((side + 7) // 8)  # filter byte, then the row's bits
    compressor = zlib.compressobj(9)
    compressed = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", compressed) + chunk(b"IEND", b"")


def cloud(points: int = 300, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((points, 3)).astype(np.float32)


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def mesh_bytes(file_type: str) -> bytes:
    """A box as a `.ply`, `.obj`, `.off` or `.stl` file."""
    exported = trimesh.creation.box(extents=(1.0, 2.0, 0.5)).export(file_type=file_type)
    return exported.encode() if isinstance(exported, str) else exported
