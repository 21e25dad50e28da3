"""What a published benchmark is to `xllm evaluate --benchmark`: one `Benchmark` per benchmark.

An importer reads a benchmark's own distributed annotation files (nothing is downloaded) and returns
its items as rows of the training-manifest format (`xllm.manifests`), so that every evaluation task
(`xllm.evaluation.tasks`, `discrn.py`) reads them unchanged:

* `id`: a string, unique and stable across runs (finished items are cached under it, so that an
  interrupted run resumes);
* one media column per processor keyword (`images`, `videos`, `speech`, `audio`, `point_clouds`):
  the absolute path of the file the item reads (a list of paths for DisCRn's two inputs, in question
  order). Paths are built from `--media-dir` and the dataset's naming convention; an importer does
  not check that the files exist: a missing or undecodable file is that item's failure, counted and
  listed in the report by the runner;
* `prompt` (the question, for VQA; absent where the task's default instruction or the preset's
  per-task prompt applies) or `messages` (DisCRn: a user turn with the two media parts in question
  order and the question as its text);
* the references the task scores against: `references` (captioning: every reference caption),
  `answers` (VQA: every annotator's answer, repeats kept), `label` (classification, DisCRn),
  `transcript` (ASR);
* `classes` (classification): every class name of the benchmark, so that a `--limit` run still
  ranks and lists all of them.

A wrong root or a missing or malformed annotation file is a `ValueError` naming the file and what
was expected.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ImportOptions:
    """Choices of the user that change how annotations or media are read."""

    allow_pickle: bool = False  # read LAVIS's pickled `.dat` point clouds (unsafe: warns)
    # Score against the references LAVIS's builder keeps where it drops some (AudioCaps: each clip's first
    # caption only) rather than every reference the dataset distributes.
    lavis_references: bool = False


Importer = Callable[[Path, Path, ImportOptions], list[dict]]  # (annotations, media_dir, options) -> rows


@dataclass(frozen=True)
class Benchmark:
    """One published benchmark: where its files are, how it is asked and scored.

    The README's benchmark table is written from these fields."""

    name: str  # `--benchmark` value, e.g. "coco_karpathy_test"
    modality: str  # a modality of the processor table, or "discrn"
    task: str  # `xllm evaluate --task` name: captioning, vqa, classification, asr, discrn
    annotations: str  # the file(s) `--annotations` names, as distributed (and LAVIS's builder reads)
    media: str  # how items' files are found under `--media-dir`, e.g. "{video_id}.mp4"
    read: Importer
    decoding: str | None = None  # LAVIS eval config of the decoding table (`decoding.py`), if any
    classify_by: str = "generation"  # classification: "generation" or "likelihood", as published
    # Media whose `datasets` feature cannot decode the format (e.g. `.txt` point files): (path, options) -> item.
    decode: Callable[[str, ImportOptions], object] | None = None
    # The file a media path reads, where that is not the path itself (an item of a pickled split is
    # `{file}::{index}`): the file whose existence decides whether the item's media is missing.
    media_file: Callable[[str], str] | None = None
    source: str = ""  # where the annotation format is defined (LAVIS builder file and line, dataset page)


__all__ = ["Benchmark", "ImportOptions", "Importer"]
