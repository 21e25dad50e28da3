"""Count the assertions of every test, to show that moving tests kept what they check.

    python scripts/count_assertions.py tests > after.json
    python scripts/count_assertions.py --compare before.json after.json [--renamed OLD:NEW ...]

An assertion is an `assert` statement, a `pytest.raises` / `pytest.warns` block, or a call whose name
starts with `assert` (`torch.testing.assert_close`, `np.testing.assert_array_equal`, ...). Tests are
keyed by function name (classes included: `Class.test_name`), so a test moved to another file is
matched with itself; `--compare` lists moved tests with their counts before and after, and every test
whose count fell or that disappeared.
"""

import argparse
import ast
import json
import sys
from pathlib import Path


def assertion_count(function: ast.AST) -> int:
    count = 0
    for node in ast.walk(function):
        if isinstance(node, ast.Assert):
            count += 1
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name.startswith("assert") or name in ("raises", "warns"):
                count += 1
    return count


def tests_of(path: Path) -> dict[str, int]:
    tree = ast.parse(path.read_text())
    found = {}
    for node in tree.body:
        functions = [(node.name, node)] if isinstance(node, ast.FunctionDef) else []
        if isinstance(node, ast.ClassDef):
            functions = [
                (f"{node.name}.{item.name}", item) for item in node.body if isinstance(item, ast.FunctionDef)
            ]
        for name, function in functions:
            if name.split(".")[-1].startswith("test"):
                found[name] = assertion_count(function)
    return found


def count(folder: Path) -> dict[str, dict]:
    counts = {}
    for path in sorted(folder.rglob("test_*.py")):
        for name, assertions in tests_of(path).items():
            counts[name] = {"file": str(path.relative_to(folder)), "assertions": assertions}
    return counts


def compare(before: dict, after: dict, renamed: dict[str, str]) -> int:
    before = {renamed.get(name, name): test for name, test in before.items()}
    moved = [name for name in before if name in after and before[name]["file"] != after[name]["file"]]
    fewer = [
        name for name in before if name in after and after[name]["assertions"] < before[name]["assertions"]
    ]
    gone = [name for name in before if name not in after]
    print(
        f"tests before: {len(before)}, after: {len(after)}; assertions before: "
        f"{sum(t['assertions'] for t in before.values())}, after: {sum(t['assertions'] for t in after.values())}"
    )
    for title, names in (("moved", moved), ("fewer assertions", fewer), ("not found", gone)):
        print(f"\n## {title} ({len(names)})")
        for name in names:
            new = after.get(name)
            where = f"{before[name]['file']} -> {new['file']}" if new else before[name]["file"]
            counts = (
                f"{before[name]['assertions']} -> {new['assertions']}"
                if new
                else f"{before[name]['assertions']}"
            )
            print(f"- {name}: {where}, assertions {counts}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--renamed", nargs="*", default=[], metavar="OLD:NEW", help="tests renamed between the two counts"
    )
    parser.add_argument("paths", nargs="+")
    parser.add_argument(
        "--compare", action="store_true", help="compare two JSON files written by this script"
    )
    args = parser.parse_args()
    if args.compare:
        before, after = (json.loads(Path(p).read_text()) for p in args.paths)
        return compare(before, after, dict(pair.split(":", 1) for pair in args.renamed))
    json.dump(count(Path(args.paths[0])), sys.stdout, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
