"""Write `xllm/evaluation/lavis_decoding.json` from a LAVIS git repository (bare or not).

    python scripts/make_lavis_decoding_table.py /work/.mirror/salesforce+LAVIS/repo

Reads every `lavis/projects/xinstruct_blip/eval/**.yaml` at HEAD (see `xllm.evaluation.decoding`).
"""

import json
import subprocess
import sys

from xllm.evaluation.decoding import TABLE_PATH, decoding_table

EVAL_DIRECTORY = "lavis/projects/xinstruct_blip/eval/"


def lavis_eval_configs(git_dir: str) -> tuple[str, dict[str, str]]:
    """(commit, {path under eval/ without .yaml: text}) at the repository's HEAD."""
    git = ["git", "--git-dir", git_dir]
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout
    paths = subprocess.run(
        [*git, "ls-tree", "-r", "--name-only", "-z", "HEAD", EVAL_DIRECTORY],
        capture_output=True, text=True, check=True,
    ).stdout.split("\0")  # fmt: skip
    configs = {}
    for path in paths:
        if path.endswith(".yaml"):
            text = subprocess.run([*git, "show", f"HEAD:{path}"], capture_output=True, text=True, check=True)
            configs[path.removeprefix(EVAL_DIRECTORY).removesuffix(".yaml")] = text.stdout
    return commit.strip(), configs


def main(git_dir: str) -> None:
    commit, configs = lavis_eval_configs(git_dir)
    table = decoding_table(configs)
    rows = ",\n".join(f"  {json.dumps(name)}: {json.dumps(row)}" for name, row in table.items())
    header = f'{{"lavis_commit": {json.dumps(commit)}, "eval_directory": {json.dumps(EVAL_DIRECTORY)},\n'
    TABLE_PATH.write_text(f'{header} "configs": {{\n{rows}\n}}}}\n')
    print(f"{len(table)} configs written to {TABLE_PATH}")


if __name__ == "__main__":
    main(sys.argv[1])
