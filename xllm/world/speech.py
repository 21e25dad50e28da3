"""Speech of the world: sentences of the world's language spoken by espeak-ng, at 16 kHz.

espeak-ng writes 22.05 kHz 16-bit wav; scipy resamples it to 16 kHz (a polyphase filter, the
standard way). Synthesis runs espeak-ng once per distinct (sentence, voice, rate) in a few
threads: each call is a separate process, so threads give real parallelism.
"""

import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np

SAMPLING_RATE = 16000
# Voice name in the world -> espeak-ng voice (American English with a voice variant).
VOICES = {"m1": "en-us+m1", "m3": "en-us+m3", "f2": "en-us+f2", "f4": "en-us+f4"}
# Speaking rate name -> words per minute.
RATES = {"slow": 140, "fast": 180}


def speak(sentence: str, voice: str = "m1", rate: str = "slow") -> np.ndarray:
    """The float32 16 kHz waveform (samples,) of espeak-ng saying `sentence`."""
    from scipy.io import wavfile
    from scipy.signal import resample_poly

    if voice not in VOICES:
        raise ValueError(f"voice must be one of {sorted(VOICES)}, got {voice!r}")
    if rate not in RATES:
        raise ValueError(f"rate must be one of {sorted(RATES)}, got {rate!r}")
    if shutil.which("espeak-ng") is None:
        raise RuntimeError(
            "espeak-ng is not installed; install it (e.g. apt-get install espeak-ng or `make setup`)"
        )
    # A file, not --stdout: the streamed wav header has no length, which wav readers reject.
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "speech.wav")
        command = ["espeak-ng", "-w", path, "-v", VOICES[voice], "-s", str(RATES[rate]), sentence]
        subprocess.run(command, check=True, capture_output=True)
        source_rate, samples = wavfile.read(path)
    waveform = samples.astype(np.float32) / 32768.0
    divisor = np.gcd(SAMPLING_RATE, source_rate)
    return resample_poly(waveform, SAMPLING_RATE // divisor, source_rate // divisor).astype(np.float32)


def speak_all(requests: list[tuple[str, str, str]], workers: int = 2) -> list[np.ndarray]:
    """Waveforms for (sentence, voice, rate) requests, in order; each distinct request is spoken once."""
    distinct = list(dict.fromkeys(requests))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        spoken = dict(zip(distinct, pool.map(lambda request: speak(*request), distinct), strict=True))
    return [spoken[request] for request in requests]
