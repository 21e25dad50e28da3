"""Speech compression: LLM tokens per second of speech, CIF against a fixed-rate frame adapter.

A few sentences of the world's language, spoken by espeak-ng, go through the tiny model's speech
encoder (conv subsampling 4x, then a conformer: one frame per 40 ms). CIF fires one token per
transcript token: exactly so in training, where it is given the transcript length, and as its
quantity loss teaches it to at inference. A fixed-rate adapter (as in LLaVA-style speech models)
would pool every 4 encoder frames into one token. The LLM's sequence, and with it attention cost
and memory, shrinks by the ratio of the two.

    python -m benchmarks.bench_speech [--tiny]
"""

import argparse

import torch

from benchmarks.timing import format_table
from xllm.modeling_xllm.modeling_media import speech_frame_mask
from xllm.testing import tiny_model_and_processor
from xllm.world.speech import SAMPLING_RATE, speak

SENTENCES = (
    "the red circle is moving up",
    "a small blue square on the left",
    "which shape is in the centre of the image",
    "two yellow stars are at the bottom right",
)
POOLING = 4


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark, print the table and return its rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="two sentences only (smoke test)")
    args = parser.parse_args(argv)
    sentences = SENTENCES[:2] if args.tiny else SENTENCES
    model, processor = tiny_model_and_processor()
    waveforms = [speak(sentence) for sentence in sentences]
    inputs = processor(
        text=["<speech>"] * len(sentences), speech=waveforms, speech_transcripts=list(sentences)
    )
    encoder = model.model.encoder_for("speech")
    model.train()  # CIF is given the transcript lengths, as in training
    with torch.no_grad():
        speech = model.model.get_speech_features(
            inputs["speech_features"], inputs["speech_attention_mask"], inputs["speech_target_lengths"]
        )
        frames = speech_frame_mask(
            encoder, inputs["speech_attention_mask"], speech.alphas.shape[1], len(sentences)
        ).sum(1)
    model.eval()
    rows = []
    for index, sentence in enumerate(sentences):
        seconds = len(waveforms[index]) / SAMPLING_RATE
        cif_tokens = int(speech.token_lengths[index])
        pooled_tokens = -(-int(frames[index]) // POOLING)
        rows.append(
            {
                "sentence": sentence,
                "seconds": seconds,
                "encoder_frames": int(frames[index]),
                "cif_tokens_per_s": cif_tokens / seconds,
                "pooled_tokens_per_s": pooled_tokens / seconds,
                "compression": pooled_tokens / cif_tokens,
            }
        )
    print(
        f"Speech compression: LLM tokens per second of speech (espeak-ng, 16 kHz), CIF vs {POOLING}x-pooled "
        f"encoder frames; compression = pooled tokens / CIF tokens"
    )
    columns = [
        "sentence",
        "seconds",
        "encoder frames",
        "CIF tokens/s",
        f"{POOLING}x pooled tokens/s",
        "compression",
    ]
    print(format_table(columns, [list(row.values()) for row in rows]))
    return rows


if __name__ == "__main__":
    main()
