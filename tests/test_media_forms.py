"""Every modality's loader takes bytes, data URIs and base64 as it takes files; what conversion drops is
said; chat roles are checked; `XLLMProcessor.pad` batches one-sample encodings as one call would."""

import base64
import io
import warnings

import numpy as np
import pytest
import torch
from media_files import cloud, data_uri, mesh_bytes, mp4_bytes, noise_png_bytes, npy_bytes, tone, wav_bytes
from PIL import Image

from xllm.processing.processor_modalities import MODALITIES, placeholder

# modality -> (file name, bytes, MIME type)
FILES = {
    "image": ("picture.png", noise_png_bytes(), "image/png"),
    "video": ("clip.mp4", mp4_bytes(), "video/mp4"),
    "audio": ("sound.wav", wav_bytes(1.5), "audio/wav"),
    "speech": ("words.wav", wav_bytes(0.8, frequency=300.0), "audio/wav"),
    "point_cloud": ("box.ply", mesh_bytes("ply"), "model/ply"),
}


def prepared(processor, modality: str, item) -> dict:
    keyword = MODALITIES[modality].keyword
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return processor(text=f"{placeholder(modality)} what", **{keyword: [item]})


def assert_same_encoding(first: dict, second: dict) -> None:
    assert sorted(first) == sorted(second)
    for name in first:
        assert torch.equal(torch.as_tensor(first[name]), torch.as_tensor(second[name])), name


@pytest.mark.parametrize("modality", list(FILES))
@pytest.mark.parametrize("form", ["bytes", "data URI", "base64"])
def test_every_modality_takes_bytes_data_uris_and_base64_as_it_takes_the_file(
    tiny_processor, tmp_path, modality, form
):
    name, data, mime = FILES[modality]
    path = tmp_path / name
    path.write_bytes(data)
    item = {
        "bytes": data,
        "data URI": data_uri(mime, data),
        "base64": base64.b64encode(data).decode(),
    }[form]
    assert_same_encoding(
        prepared(tiny_processor, modality, str(path)), prepared(tiny_processor, modality, item)
    )


@pytest.mark.parametrize("file_type", ["ply", "obj", "off", "stl"])
def test_mesh_files_of_every_format_load_from_paths_and_from_bytes_without_a_type(
    tiny_processor, tmp_path, file_type
):
    data = mesh_bytes(file_type)
    path = tmp_path / f"box.{file_type}"
    path.write_bytes(data)
    from_path = prepared(tiny_processor, "point_cloud", str(path))
    from_bytes = prepared(
        tiny_processor, "point_cloud", data if file_type != "stl" else {"bytes": data, "format": "stl"}
    )
    assert_same_encoding(from_path, from_bytes)


def test_npy_point_clouds_load_from_paths_bytes_and_data_uris_as_the_array(tiny_processor, tmp_path):
    points = cloud()
    path = tmp_path / "cloud.npy"
    np.save(path, points)
    from_array = prepared(tiny_processor, "point_cloud", points)
    for item in (str(path), npy_bytes(points), data_uri("application/x-npy", npy_bytes(points))):
        assert_same_encoding(from_array, prepared(tiny_processor, "point_cloud", item))


def test_npy_holding_pickled_objects_is_refused(tiny_processor):
    stream = io.BytesIO()
    np.save(stream, np.array([{"run": "code"}], dtype=object), allow_pickle=True)
    with pytest.raises(
        ValueError, match=r"`point_clouds\[0\]` must be a .npy array of numbers without pickled"
    ):
        prepared(tiny_processor, "point_cloud", stream.getvalue())


def test_point_cloud_bytes_of_no_known_format_are_refused_naming_the_formats(tiny_processor):
    with pytest.raises(
        ValueError, match=r"`point_clouds\[0\]` is a point-cloud file of unknown type.*'npy', 'ply'"
    ):
        prepared(tiny_processor, "point_cloud", b"\x01\x02 not a mesh at all " * 4)


@pytest.mark.parametrize("modality", list(FILES))
def test_a_data_uri_whose_base64_does_not_decode_is_refused_naming_the_argument(tiny_processor, modality):
    keyword = MODALITIES[modality].keyword
    with pytest.raises(ValueError, match=rf"`{keyword}\[0\]` .*not valid base64"):
        prepared(tiny_processor, modality, "data:application/octet-stream;base64,@@@not*base64@@@")


@pytest.mark.parametrize("modality", ["audio", "speech", "video", "point_cloud"])
def test_a_string_that_is_neither_a_file_nor_encoded_media_is_reported_as_a_missing_file(
    tiny_processor, modality
):
    keyword = MODALITIES[modality].keyword
    with pytest.raises(
        FileNotFoundError, match=rf"`{keyword}\[0\]` names no file and is neither a data URI nor base64"
    ):
        prepared(tiny_processor, modality, "/no/such/folder/clip.file")


def test_an_alpha_channel_is_reported_when_the_image_processor_drops_it(tiny_processor):
    transparent = Image.new("RGBA", (32, 32), (255, 0, 0, 128))
    with pytest.warns(UserWarning, match=r"`images\[0\]` has an alpha channel \(mode RGBA\); it is dropped"):
        tiny_processor(text="<image> what", images=[transparent])
    array = np.zeros((32, 32, 4), dtype=np.uint8)
    with pytest.warns(UserWarning, match=r"`images\[0\]` has 4 channels .*alpha\) is dropped"):
        rgba = tiny_processor(text="<image> what", images=[array])
    assert torch.equal(
        rgba["pixel_values"], tiny_processor(text="<image> what", images=[array[..., :3]])["pixel_values"]
    )


def test_a_second_audio_channel_is_reported_when_the_channels_are_averaged(tiny_processor):
    stereo = wav_bytes(1.0, channels=2)
    with pytest.warns(UserWarning, match=r"`audio\[0\]` has 2 channels; they are averaged into one"):
        averaged = tiny_processor(text="<audio> what", audio=[stereo])
    mono = tone(1.0, channels=2).mean(axis=1)
    assert torch.allclose(
        averaged["audio_features"], tiny_processor(text="<audio> what", audio=[mono])["audio_features"]
    )


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"content": "hello"}, r"`conversation\[0\]` must be a message dict with a `role`"),
        (
            {"role": "tool", "content": "42"},
            r"`conversation\[0\]` has role 'tool'; the chat template renders only",
        ),
        ({"role": "User", "content": "hi"}, r"has role 'User'"),
    ],
)
def test_chat_messages_without_a_role_or_with_one_the_template_drops_are_refused(
    tiny_processor, message, expected
):
    with pytest.raises(ValueError, match=expected):
        tiny_processor.apply_chat_template([message], tokenize=True, return_dict=True)


def conversations() -> list[list[dict]]:
    """Three requests of different modalities and lengths."""
    image = Image.open(io.BytesIO(noise_png_bytes(1)))
    return [
        [
            {
                "role": "user",
                "content": [
                    {"type": "image", "image": image},
                    {"type": "audio", "audio": tone(7.0)},
                    {"type": "text", "text": " which is red ?"},
                ],
            }
        ],
        [
            {"role": "system", "content": "answer in one word"},
            {
                "role": "user",
                "content": [
                    {"type": "speech", "speech": tone(0.6, 300.0)},
                    {"type": "point_cloud", "point_cloud": cloud(200)},
                    {"type": "video", "video": mp4_bytes(3, seed=2)},
                    {"type": "audio", "audio": tone(2.0, 220.0)},
                    {"type": "text", "text": " what is it ?"},
                ],
            },
        ],
        [{"role": "user", "content": "describe the image of a large blue square on the left"}],
    ]


def test_pad_of_one_sample_encodings_equals_one_call_over_the_batch(tiny_processor):
    options = dict(tokenize=True, return_dict=True, add_generation_prompt=True, return_tensors="pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batched = tiny_processor.apply_chat_template(conversations(), **options)
        singles = [tiny_processor.apply_chat_template([c], **options) for c in conversations()]
    assert_same_encoding(batched, tiny_processor.pad(singles, padding_side="left"))
    windows = batched["audio_window_mask"].sum(1).tolist()
    assert windows[0] > windows[1]  # the clips were padded to the longer one's windows


def test_pad_refuses_videos_of_different_frame_counts(tiny_processor):
    encodings = [
        tiny_processor(
            text="<video> what", videos=[np.zeros((frames, 32, 32, 3), np.uint8)], num_frames=frames
        )
        for frames in (2, 3)
    ]
    with pytest.raises(ValueError, match=r"`pixel_values_videos` of the encodings differ in shape"):
        tiny_processor.pad(encodings)
