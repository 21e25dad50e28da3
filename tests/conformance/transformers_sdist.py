"""transformers' own common tests, taken from the sdist of the installed transformers version.

The sdist (`pip download --no-deps --no-binary :all: transformers==X`, cached under the venv, never
committed) ships `tests/test_modeling_common.py`, `tests/test_configuration_common.py` and
`tests/test_processing_common.py`, but not every module they import. `STAND_INS` names each missing
module and the file of ours (in `stand_ins/`) that takes its place; nothing else is added or changed in
the unpacked tests. The unpacked `tests/` becomes the package `transformers_tests` in a temporary folder,
so that its relative imports work next to our own `tests/`.
"""

import atexit
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import transformers

HERE = Path(__file__).resolve().parent
PACKAGE = "transformers_tests"

# Module of the transformers repository the common tests import -> our stand-in, and what it gives.
STAND_INS = {
    # `GenerationTesterMixin`: an empty mixin; our own generation tests cover what it checks.
    "tests/generation/test_utils.py": "generation_test_utils.py",
    # `ExportTesterMixin`: an empty mixin (`torch.export` of the model is not tested).
    "tests/exporters/test_export.py": "exporters_test_export.py",
    # `config_common_kwargs`: the common config arguments (only used for configs without sub-configs).
    "tests/utils/test_configuration_utils.py": "utils_test_configuration_utils.py",
    # `url_to_local_path`: the Hub media of the chat-template tests, as local files we generate.
    "utils/fetch_hub_objects_for_ci.py": "fetch_hub_objects_for_ci.py",
}


def cache_dir() -> Path:
    """Where the sdist is kept: inside the virtual environment running the tests."""
    return Path(sys.prefix) / "cache" / "transformers-sdist"


def sdist_path(version: str = transformers.__version__) -> Path:
    """The sdist of `version`, downloaded from the package registry on first use."""
    folder = cache_dir()
    found = sorted(folder.glob(f"transformers-{version}.tar.gz"))
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    # Downloaded apart, then moved in at once: test workers starting together never see half a file.
    with tempfile.TemporaryDirectory(dir=folder) as download:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"transformers=={version}",
                "--dest",
                download,
            ],
            check=True,
        )
        name = f"transformers-{version}.tar.gz"
        if not (Path(download) / name).is_file():
            raise FileNotFoundError(f"pip download left no {name} in {download}.")
        os.replace(Path(download) / name, folder / name)
    return folder / name


def unpack_tests(destination: Path, version: str = transformers.__version__) -> Path:
    """Unpack the sdist's top-level `tests/` as `destination/transformers_tests` (with the stand-ins) and
    return `destination`, the folder to put on `sys.path`."""
    with tarfile.open(sdist_path(version)) as archive:
        prefix = f"transformers-{version}/tests/"
        members = [
            member
            for member in archive.getmembers()
            if member.name.startswith(prefix) and member.isfile() and "/" not in member.name[len(prefix) :]
        ]
        for member in members:
            member.name = f"{PACKAGE}/{member.name[len(prefix) :]}"
        archive.extractall(destination, members=members, filter="data")
    package = destination / PACKAGE
    (package / "__init__.py").touch()
    for target, ours in STAND_INS.items():
        path = destination / target.replace("tests/", f"{PACKAGE}/", 1)
        if path.exists():
            raise FileExistsError(f"The sdist now ships {target}; drop its stand-in {ours}.")
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent != destination / "utils":
            for folder in path.relative_to(package).parents:
                (package / folder / "__init__.py").touch()
        shutil.copy(HERE / "stand_ins" / ours, path)
    return destination


def importable_tests() -> Path:
    """Unpack the tests into a fresh temporary folder, put it on `sys.path` and return it."""
    folder = unpack_tests(Path(tempfile.mkdtemp(prefix="transformers-tests-")))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    sys.path.insert(0, str(folder))
    return folder


__all__ = ["STAND_INS", "importable_tests", "sdist_path", "unpack_tests"]
