"""Writers of the image benchmarks' real file layouts: a handful of items, annotation files as distributed
(the formats `xllm/evaluation/benchmarks/images.py` cites) and small PNG / JPEG images named by the dataset's
convention. Each writer: folder -> (--annotations, --media-dir)."""

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

CAPTIONS = ["a red square on a table", "a small red box", "a dog runs on the grass", "two dogs play outside"]
QUESTIONS = [("what colour is it?", "red"), ("how many dogs are there?", "2"), ("is it raining?", "no")]


def write_image(path: Path, seed: int) -> None:
    """A 24 x 24 noise image, PNG or JPEG by the path's suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def write_json(path: Path, content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return path


def coco_image(image_id: int) -> str:
    return f"val2014/COCO_val2014_{image_id:012d}.jpg"


def coco_karpathy_test(folder: Path) -> tuple[Path, Path]:
    images = [coco_image(391895), coco_image(522418), coco_image(184613)]
    for seed, image in enumerate(images):
        write_image(folder / "coco" / "images" / image, seed)
    records = [{"image": image, "caption": CAPTIONS[seed : seed + 2]} for seed, image in enumerate(images)]
    return write_json(
        folder / "coco" / "annotations" / "coco_karpathy_test.json", records
    ), folder / "coco" / "images"


def flickr30k_test(folder: Path) -> tuple[Path, Path]:
    images = [
        "flickr30k-images/1007129816.jpg",
        "flickr30k-images/1009434119.jpg",
        "flickr30k-images/101362133.jpg",
    ]
    for seed, image in enumerate(images):
        write_image(folder / "flickr30k" / image, seed)
    records = [{"image": image, "caption": CAPTIONS[seed : seed + 3]} for seed, image in enumerate(images)]
    return write_json(
        folder / "flickr30k" / "annotations" / "test.json", records
    ).parent, folder / "flickr30k"


def nocaps_val(folder: Path) -> tuple[Path, Path]:
    names = ["0013ea2087020901.jpg", "00223f2b2ad7b1b1.jpg", "0041d2b4f7a1ac5d.jpg"]
    for seed, name in enumerate(names):
        write_image(folder / "nocaps" / "val" / name, seed)
    content = {
        "licenses": [],
        "info": {"url": "http://nocaps.org"},
        "images": [
            {"id": index, "file_name": name, "domain": "in-domain", "open_images_id": name[:-4]}
            for index, name in enumerate(names)
        ],
        "annotations": [
            {"image_id": index, "id": 10 * index + k, "caption": CAPTIONS[(index + k) % 4]}
            for index in range(len(names))
            for k in range(2)
        ],
    }
    return write_json(folder / "nocaps" / "nocaps_val_4500_captions.json", content), folder / "nocaps" / "val"


def vqa_files(folder: Path, question_file: str, answer_file: str) -> tuple[Path, Path]:
    """VQAv2 / OK-VQA: the official questions and annotations files, COCO val2014 images."""
    image_ids = [262148, 393225, 458752]
    for seed, image_id in enumerate(image_ids):
        write_image(folder / "coco" / "images" / coco_image(image_id), seed)
    questions = [
        {"image_id": image_id, "question": question, "question_id": image_id * 1000 + 1}
        for image_id, (question, _) in zip(image_ids, QUESTIONS, strict=True)
    ]
    annotations = [
        {
            "image_id": image_id,
            "question_id": image_id * 1000 + 1,
            "question_type": "what",
            "answer_type": "other",
            "multiple_choice_answer": answer,
            "answers": [
                {"answer": answer if k < 7 else "blue", "answer_confidence": "yes", "answer_id": k + 1}
                for k in range(10)
            ],
        }
        for image_id, (_, answer) in zip(image_ids, QUESTIONS, strict=True)
    ]
    annotation_dir = folder / "vqa" / "annotations"
    write_json(
        annotation_dir / question_file, {"info": {}, "task_type": "Open-Ended", "questions": questions}
    )
    write_json(annotation_dir / answer_file, {"info": {}, "annotations": annotations})
    return annotation_dir, folder / "coco" / "images"


def vqav2_val(folder: Path) -> tuple[Path, Path]:
    return vqa_files(
        folder, "v2_OpenEnded_mscoco_val2014_questions.json", "v2_mscoco_val2014_annotations.json"
    )


def okvqa_val(folder: Path) -> tuple[Path, Path]:
    return vqa_files(folder, "OpenEnded_mscoco_val2014_questions.json", "mscoco_val2014_annotations.json")


def vizwiz_val(folder: Path) -> tuple[Path, Path]:
    records = []
    for index, (question, answer) in enumerate(QUESTIONS):
        image = f"VizWiz_val_{index:08d}.jpg"
        write_image(folder / "vizwiz" / "val" / image, index)
        answers = [
            {"answer": answer if k < 6 else "unanswerable", "answer_confidence": "yes"} for k in range(10)
        ]
        records.append(
            {
                "image": image,
                "question": question,
                "answers": answers,
                "answer_type": "other",
                "answerable": 1,
            }
        )
    return write_json(folder / "vizwiz" / "annotations" / "val.json", records), folder / "vizwiz" / "val"


def gqa_testdev(folder: Path) -> tuple[Path, Path]:
    """GQA's own layout: an object keyed by question id, images `{imageId}.jpg`."""
    content = {}
    for index, (question, answer) in enumerate(QUESTIONS):
        image_id = f"n{161313 + index}"
        write_image(folder / "gqa" / "images" / f"{image_id}.jpg", index)
        content[f"20{index:06d}"] = {
            "imageId": image_id,
            "question": question,
            "answer": answer,
            "fullAnswer": f"It is {answer}.",
            "isBalanced": True,
        }
    return write_json(folder / "gqa" / "testdev_balanced_questions.json", content), folder / "gqa" / "images"


LAYOUTS: dict[str, Callable[[Path], tuple[Path, Path]]] = {
    "coco_karpathy_test": coco_karpathy_test,
    "flickr30k_test": flickr30k_test,
    "nocaps_val": nocaps_val,
    "vqav2_val": vqav2_val,
    "okvqa_val": okvqa_val,
    "vizwiz_val": vizwiz_val,
    "gqa_testdev": gqa_testdev,
}
