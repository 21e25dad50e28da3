"""Importers of the image benchmarks: captioning (COCO Karpathy test, Flickr30k test, NoCaps val) and VQA
(VQAv2 val, OK-VQA val, VizWiz val, GQA test-dev balanced).

Each reads the annotation file(s) that LAVIS's dataset builder for the benchmark reads in X-InstructBLIP's
eval config (`lavis/projects/xinstruct_blip/eval/vicuna7b/image/*.yaml`, `datasets:` block), or the
dataset's own distributed file where LAVIS scores against that one. Rows follow `benchmark.py`.
"""

from pathlib import Path

from .annotation_files import (
    annotation_file,
    annotation_files,
    grouped_captions,
    json_records,
    media_path,
    read_json,
    require,
)
from .benchmark import Benchmark, ImportOptions


def read_karpathy_captions(file_name: str, annotations: Path, media_dir: Path) -> list[dict]:
    """COCO Karpathy / Flickr30k caption files of BLIP (`coco_karpathy_test.json`, Flickr30k `test.json`):
    a list of `{"image": "val2014/COCO_val2014_000000391895.jpg", "caption": [five captions]}`; LAVIS
    reads `ann["image"]` under its image root (`COCOCapEvalDataset.__getitem__`,
    lavis/datasets/datasets/coco_caption_datasets.py:34) and scores against every caption of the image.
    The id is the image's relative path."""
    path = annotation_file(annotations, file_name)
    captions = grouped_captions(json_records(path), "image", "caption", path)
    return [
        {"id": image, "images": media_path(media_dir, image), "references": references}
        for image, references in captions.items()
    ]


def read_coco_karpathy_test(annotations: Path, media_dir: Path, options: ImportOptions) -> list[dict]:
    return read_karpathy_captions("coco_karpathy_test.json", annotations, media_dir)


def read_flickr30k_test(annotations: Path, media_dir: Path, options: ImportOptions) -> list[dict]:
    return read_karpathy_captions("test.json", annotations, media_dir)


def read_nocaps_val(annotations: Path, media_dir: Path, options: ImportOptions) -> list[dict]:
    """NoCaps's own `nocaps_val_4500_captions.json` (COCO caption format: `images` with `id` and `file_name`,
    `annotations` with `image_id` and `caption`), the file LAVIS scores NoCaps against
    (`run.annotation_file`, eval/vicuna7b/image/nocaps_captioning.yaml); LAVIS's own `nocaps_val.json`
    lists the same images without captions. Media: `{file_name}` under `--media-dir`."""
    path = annotation_file(annotations, "nocaps_val_4500_captions.json")
    images = json_records(path, "images")
    references: dict[str, list[str]] = {}
    for index, caption in enumerate(json_records(path, "annotations")):
        require(caption, ("image_id", "caption"), path, f"annotations[{index}]")
        references.setdefault(str(caption["image_id"]), []).append(caption["caption"])
    rows = []
    for index, image in enumerate(images):
        require(image, ("id", "file_name"), path, f"images[{index}]")
        image_id = str(image["id"])
        if image_id not in references:
            raise ValueError(
                f"{str(path)!r}: image {image_id} ({image['file_name']}) has no caption in `annotations`."
            )
        rows.append(
            {
                "id": image_id,
                "images": media_path(media_dir, image["file_name"]),
                "references": references[image_id],
            }
        )
    return rows


def read_vqa_pair(question_file: str, answer_file: str, annotations: Path, media_dir: Path) -> list[dict]:
    """The official VQA files, questions (`{"questions": [{"question_id", "image_id", "question"}]}`) and
    answers (`{"annotations": [{"question_id", "answers": [{"answer"}, ...]}]}`): LAVIS's VQA eval datasets
    read them as `ann_paths[2]` and `[3]` (`COCOVQAEvalDataset`, lavis/datasets/datasets/coco_vqa_datasets.py:95-97)
    and score against them (the official evaluation, lavis/tasks/vqa.py). Media: the COCO val2014 image
    `val2014/COCO_val2014_{image_id:012d}.jpg`. Every annotator's answer is kept (VQA accuracy counts them)."""
    question_path, answer_path = annotation_files(annotations, (question_file, answer_file))
    answers: dict[str, list[str]] = {}
    for index, record in enumerate(json_records(answer_path, "annotations")):
        require(record, ("question_id", "answers"), answer_path, index)
        answers[str(record["question_id"])] = [answer["answer"] for answer in record["answers"]]
    rows = []
    for index, question in enumerate(json_records(question_path, "questions")):
        require(question, ("question_id", "image_id", "question"), question_path, index)
        question_id = str(question["question_id"])
        if question_id not in answers:
            raise ValueError(
                f"Question {question_id} of {str(question_path)!r} has no answers in {str(answer_path)!r}."
            )
        image = f"val2014/COCO_val2014_{int(question['image_id']):012d}.jpg"
        rows.append(
            {
                "id": question_id,
                "images": media_path(media_dir, image),
                "prompt": question["question"],
                "answers": answers[question_id],
            }
        )
    return rows


def read_vqav2_val(annotations: Path, media_dir: Path, options: ImportOptions) -> list[dict]:
    # lavis/configs/datasets/coco/eval_vqa.yaml: v2_OpenEnded_mscoco_val2014_questions.json, v2_mscoco_val2014_annotations.json
    return read_vqa_pair(
        "v2_OpenEnded_mscoco_val2014_questions.json",
        "v2_mscoco_val2014_annotations.json",
        annotations,
        media_dir,
    )


def read_okvqa_val(annotations: Path, media_dir: Path, options: ImportOptions) -> list[dict]:
    # eval/vicuna7b/image/okvqa_qa.yaml `datasets.ok_vqa.build_info.annotations.test`: OK-VQA's own two files
    return read_vqa_pair(
        "OpenEnded_mscoco_val2014_questions.json", "mscoco_val2014_annotations.json", annotations, media_dir
    )


def read_vizwiz_val(annotations: Path, media_dir: Path, options: ImportOptions) -> list[dict]:
    """VizWiz's own `val.json`: a list of `{"image": "VizWiz_val_00000000.jpg", "question", "answers":
    [{"answer", "answer_confidence"}]}` (eval/vicuna7b/image/vizwiz_qa.yaml, `VizWizEvalDataset`,
    lavis/datasets/datasets/vizwiz_vqa_datasets.py:20-37, which reads the image from the `val` folder).
    Media: `{image}` under `--media-dir` (VizWiz's `val/` folder). One question per image: the id is the image."""
    path = annotation_file(annotations, "val.json")
    rows = []
    for index, record in enumerate(json_records(path)):
        require(record, ("image", "question", "answers"), path, index)
        rows.append(
            {
                "id": Path(record["image"]).stem,
                "images": media_path(media_dir, record["image"]),
                "prompt": record["question"],
                "answers": [answer["answer"] for answer in record["answers"]],
            }
        )
    return rows


def read_gqa_testdev(annotations: Path, media_dir: Path, options: ImportOptions) -> list[dict]:
    """`testdev_balanced_questions.json`, as GQA distributes it (an object `{question_id: {"imageId",
    "question", "answer", ...}}`, media `{imageId}.jpg`) or as LAVIS re-distributes it under the same name
    (a list of `{"question_id", "image": "n161313.jpg", "question", "answer"}`, read by `GQAEvalDataset`,
    lavis/datasets/datasets/gqa_datasets.py:93-114; eval/vicuna7b/image/gqa_qa.yaml `val`). Media under
    `--media-dir` (GQA's `images/`). One reference answer: scored by exact match after VQA normalisation."""
    path = annotation_file(annotations, "testdev_balanced_questions.json")
    content = read_json(path)
    if isinstance(content, dict):
        records = []
        for question_id, record in content.items():
            if not isinstance(record, dict):
                raise ValueError(
                    f"Question {question_id} of {str(path)!r} must be an object, got {record!r}."
                )
            require(record, ("imageId", "question", "answer"), path, question_id)
            records.append({**record, "question_id": question_id, "image": f"{record['imageId']}.jpg"})
    else:
        records = json_records(path)
        for index, record in enumerate(records):
            require(record, ("question_id", "image", "question", "answer"), path, index)
    return [
        {
            "id": str(record["question_id"]),
            "images": media_path(media_dir, record["image"]),
            "prompt": record["question"],
            "answers": [record["answer"]],
        }
        for record in records
    ]


BENCHMARKS = (
    Benchmark(
        name="coco_karpathy_test",
        modality="image",
        task="captioning",
        annotations="coco_karpathy_test.json",
        media="{image} (e.g. val2014/COCO_val2014_000000391895.jpg) under the COCO images folder",
        read=read_coco_karpathy_test,
        decoding="vicuna7b/image/coco_captioning_test",
        source="lavis/configs/datasets/coco/defaults_cap.yaml (test); lavis/datasets/datasets/coco_caption_datasets.py:31",
    ),
    Benchmark(
        name="flickr30k_test",
        modality="image",
        task="captioning",
        annotations="test.json (LAVIS's flickr30k_test.json)",
        media="{image} (e.g. flickr30k-images/1007129816.jpg) under the Flickr30k folder",
        read=read_flickr30k_test,
        decoding="vicuna7b/image/flickr30k_captioning",
        source="lavis/configs/datasets/flickr30k/defaults_cap.yaml (test); eval/vicuna7b/image/flickr30k_captioning.yaml",
    ),
    Benchmark(
        name="nocaps_val",
        modality="image",
        task="captioning",
        annotations="nocaps_val_4500_captions.json",
        media="{file_name} (e.g. 0013ea2087020901.jpg) under the NoCaps val images folder",
        read=read_nocaps_val,
        decoding="vicuna7b/image/nocaps_captioning",
        source="eval/vicuna7b/image/nocaps_captioning.yaml (run.annotation_file); nocaps.org",
    ),
    Benchmark(
        name="vqav2_val",
        modality="image",
        task="vqa",
        annotations="v2_OpenEnded_mscoco_val2014_questions.json + v2_mscoco_val2014_annotations.json (one folder)",
        media="val2014/COCO_val2014_{image_id:012d}.jpg under the COCO images folder",
        read=read_vqav2_val,
        source="lavis/configs/datasets/coco/eval_vqa.yaml; lavis/datasets/datasets/coco_vqa_datasets.py:78-121",
    ),
    Benchmark(
        name="okvqa_val",
        modality="image",
        task="vqa",
        annotations="OpenEnded_mscoco_val2014_questions.json + mscoco_val2014_annotations.json (one folder)",
        media="val2014/COCO_val2014_{image_id:012d}.jpg under the COCO images folder",
        read=read_okvqa_val,
        decoding="vicuna7b/image/okvqa_qa",
        source="eval/vicuna7b/image/okvqa_qa.yaml (datasets.ok_vqa test); lavis/datasets/datasets/coco_vqa_datasets.py:95-97",
    ),
    Benchmark(
        name="vizwiz_val",
        modality="image",
        task="vqa",
        annotations="val.json",
        media="{image} (e.g. VizWiz_val_00000000.jpg) under VizWiz's val/ folder",
        read=read_vizwiz_val,
        decoding="vicuna7b/image/vizwiz_qa",
        source="eval/vicuna7b/image/vizwiz_qa.yaml (val); lavis/datasets/datasets/vizwiz_vqa_datasets.py:20-54",
    ),
    Benchmark(
        name="gqa_testdev",
        modality="image",
        task="vqa",
        annotations="testdev_balanced_questions.json",
        media="{imageId}.jpg (or LAVIS's {image}) under GQA's images/ folder",
        read=read_gqa_testdev,
        decoding="vicuna7b/image/gqa_qa",
        source="lavis/configs/datasets/gqa/balanced_testdev.yaml (val); lavis/datasets/datasets/gqa_datasets.py:70-114",
    ),
)

__all__ = ["BENCHMARKS"]
