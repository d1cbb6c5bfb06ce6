"""The package's layers import one way only: each module imports from its own layer's
packages or from lower layers, so nothing low loads what builds on it (torch-free config
checks, a report that does not load a model)."""

import ast
from pathlib import Path

import rlvlm

#: Low to high; a package imports only from rows above its own (and from itself).
LAYERS = (
    ("io", "progress", "seeds"),
    ("games",),
    ("config",),
    ("layout",),
    ("models",),
    ("evaluation",),
    ("rl", "sft", "baselines"),
    ("report", "train"),
    ("experiment", "bench"),
    ("cli",),
    ("__main__",),
)
RANK = {package: rank for rank, row in enumerate(LAYERS) for package in row}
ROOT = Path(rlvlm.__file__).parent


def test_imports_go_down_the_layers():
    upward = []
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts == ("__init__",):
            continue  # the package's front door: rlvlm.make
        own = parts[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rlvlm."):
                target = node.module.split(".")[1]
                if target != own and RANK[target] >= RANK[own]:
                    upward.append(f"{'/'.join(parts)}.py imports {node.module}")
    assert not upward, upward
    assert set(RANK) >= {p.stem if p.is_file() else p.name for p in ROOT.iterdir()} - {
        "__init__",
        "__pycache__",
        "configs",
    }
