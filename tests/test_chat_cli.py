"""`xllm chat` answers from the command line with a saved model."""

import trimesh
from PIL import Image

from xllm.cli import main


def test_chat_answers_about_an_image_and_a_point_cloud(saved_tiny_dir, tmp_path, capsys):
    image = tmp_path / "shape.png"
    Image.new("RGB", (40, 40), "red").save(image)
    cloud = tmp_path / "box.ply"
    trimesh.creation.box(extents=(1.0, 2.0, 0.5)).export(cloud)
    arguments = [
        "chat",
        str(saved_tiny_dir),
        "which is red ?",
        "--image",
        str(image),
        "--point-cloud",
        str(cloud),
    ]
    assert main([*arguments, "--max-new-tokens", "3"]) == 0
    assert capsys.readouterr().out.strip()  # an answer was printed


def test_chat_web_launches_the_page_on_the_given_address(saved_tiny_dir, monkeypatch):
    from xllm.chat import web_page

    launched = {}

    class Page:
        def launch(self, **options):
            launched.update(options)

    def build(model, processor, **options):
        launched["modalities"], launched["page_options"] = tuple(model.config.modalities), options
        return Page()

    monkeypatch.setattr(web_page, "build_chat_page", build)
    assert main(["chat", str(saved_tiny_dir), "--web", "--port", "7999", "--max-new-tokens", "12"]) == 0
    assert launched == {
        "modalities": ("image", "video", "speech", "audio", "point_cloud"),
        "page_options": {"max_new_tokens": 12},
        "server_name": "127.0.0.1",
        "server_port": 7999,
    }


def test_chat_without_media_or_a_mode_says_what_to_give(saved_tiny_dir):
    import pytest

    with pytest.raises(ValueError, match=r"Give at least one media file .*or chat with -i or --web"):
        main(["chat", str(saved_tiny_dir), "what is it ?"])
