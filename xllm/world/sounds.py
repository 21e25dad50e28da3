"""Sounds of the world: short melodies with an instrument-like timbre, a register and a tempo.

Each instrument is additive synthesis (a few sine partials) with its own envelope: a struck
piano decays fast, a bell rings with inharmonic partials, a drum is a short noisy thump, a flute
and a violin swell in and sustain with vibrato. The register (low / high) picks the notes' pitch
range, the speed (slowly / quickly) the number of notes per second. No library synthesises
instrument timbres, so this is written by hand with numpy.
"""

from dataclasses import dataclass

import numpy as np

SAMPLING_RATE = 16000


@dataclass(frozen=True)
class Timbre:
    partial_ratios: tuple[float, ...]  # frequency of each partial / fundamental
    partial_amplitudes: tuple[float, ...]
    attack_seconds: float
    decay_per_second: float  # exponential decay rate after the attack
    vibrato_depth: float = 0.0  # relative frequency deviation
    noise: float = 0.0  # share of envelope-shaped white noise


TIMBRES = {
    "piano": Timbre((1, 2, 3, 4, 5, 6), (1.0, 0.5, 0.3, 0.2, 0.1, 0.05), 0.005, 6.0),
    "flute": Timbre((1, 2, 3), (1.0, 0.2, 0.05), 0.06, 0.5, vibrato_depth=0.01, noise=0.03),
    "drum": Timbre((1, 1.6, 2.3), (1.0, 0.5, 0.3), 0.001, 25.0, noise=0.5),
    "bell": Timbre((1, 2.76, 5.40, 8.93), (1.0, 0.6, 0.4, 0.25), 0.001, 2.5),
    "violin": Timbre(tuple(range(1, 9)), tuple(1 / n for n in range(1, 9)), 0.08, 0.3, vibrato_depth=0.006),
}
# MIDI note of the bottom of each register; notes are drawn from a pentatonic scale above it.
REGISTER_BOTTOMS = {"low": 45, "high": 69}
PENTATONIC_STEPS = np.array([0, 2, 4, 7, 9, 12])
NOTES_PER_SECOND = {"slowly": 2, "quickly": 6}
VIBRATO_HZ = 5.5
RELEASE_SECONDS = 0.005


def midi_to_hz(note: np.ndarray) -> np.ndarray:
    return 440.0 * 2.0 ** ((note - 69) / 12)


def synthesise_note(
    timbre: Timbre, frequency: float, seconds: float, rng: np.random.Generator, sampling_rate: int
) -> np.ndarray:
    """One note of `timbre`: float waveform of round(seconds * sampling_rate) samples."""
    time = np.arange(round(seconds * sampling_rate)) / sampling_rate
    # Vibrato bends the phase: integral of frequency * (1 + depth * sin(2 pi v t)).
    phase = time - timbre.vibrato_depth * np.cos(2 * np.pi * VIBRATO_HZ * time) / (2 * np.pi * VIBRATO_HZ)
    tone = sum(
        amplitude * np.sin(2 * np.pi * frequency * ratio * phase)
        for ratio, amplitude in zip(timbre.partial_ratios, timbre.partial_amplitudes, strict=True)
    )
    tone = tone + timbre.noise * rng.standard_normal(time.size)
    attack = np.clip(time / timbre.attack_seconds, 0, 1)
    release = np.clip((seconds - time) / RELEASE_SECONDS, 0, 1)
    return tone * attack * release * np.exp(-timbre.decay_per_second * time)


def synthesise_sound(
    attributes: dict[str, str],
    rng: np.random.Generator,
    seconds: float = 1.5,
    sampling_rate: int = SAMPLING_RATE,
) -> np.ndarray:
    """A float32 waveform (samples,) in [-0.8, 0.8] for attributes instrument, pitch and speed."""
    timbre = TIMBRES[attributes["instrument"]]
    note_seconds = 1 / NOTES_PER_SECOND[attributes["speed"]]
    note_count = int(np.ceil(seconds / note_seconds))
    notes = REGISTER_BOTTOMS[attributes["pitch"]] + rng.choice(PENTATONIC_STEPS, size=note_count)
    melody = np.concatenate(
        [synthesise_note(timbre, f, note_seconds, rng, sampling_rate) for f in midi_to_hz(notes)]
    )
    waveform = melody[: round(seconds * sampling_rate)]
    return (0.8 * waveform / np.abs(waveform).max()).astype(np.float32)
