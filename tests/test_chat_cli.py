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
