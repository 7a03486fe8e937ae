"""The import graph of ``corp/`` follows the layers of docs/architecture.md: a module or package
directly under ``corp/`` (a package counts as one node) imports only from layers below its own, so
there is no cycle and nothing reaches up. Imports inside functions count too."""

import ast
from pathlib import Path

CORP = Path(__file__).resolve().parents[1] / "corp"

# Bottom first; the same list, with what each layer is for, is in docs/architecture.md ("Layers").
LAYERS = [
    {"errors", "files", "scores", "registry", "debugging", "help", "racing"},
    {"perturb", "models", "tasks", "stats"},
    {"scoring", "store", "results", "provenance"},
    {"consolidate"},
    {"observe", "analyze"},
    {"config"},  # above observe: it stores the registered loggers' schemas
    {"report", "model_card"},
    {"evaluate"},
    {"loop"},
    {"startup"},
    {"session"},
    {"outputs"},
    {"run"},
    {"cli", "migrate"},
    {"hydra_errors"},  # reads cli's refusals: Hydra's own errors as one line
]


def _node(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "corp" and len(parts) > 1 else None


def import_edges(root: Path = CORP) -> dict[tuple[str, str], str]:
    """(importer, imported) node pairs, each with one file that makes it."""
    edges: dict[tuple[str, str], str] = {}
    for file in sorted(root.rglob("*.py")):
        parts = file.relative_to(root.parent).with_suffix("").parts
        package = parts[:-1]  # what a relative import starts from
        src = _node(".".join(parts))
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = list(package[: len(package) - node.level + 1]) if node.level else []
                targets = [".".join([*base, *([node.module] if node.module else [])])]
            else:
                continue
            for dst in map(_node, targets):
                if src and dst and dst != src:
                    edges.setdefault((src, dst), str(file.relative_to(root.parent)))
    return edges


def _layer(node: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if node in layer)


def test_every_node_under_corp_has_a_layer():
    nodes = {p.stem if p.is_file() else p.name for p in CORP.iterdir()
             if (p.suffix == ".py" and p.name != "__init__.py") or (p / "__init__.py").exists()}  # fmt: skip
    placed = set().union(*LAYERS)
    assert nodes - placed == set(), "add these to a layer here and in docs/architecture.md"
    assert placed - nodes == set(), "layers name nodes that no longer exist"


def test_imports_only_reach_down():
    upward = [f"{src} -> {dst} ({file})" for (src, dst), file in import_edges().items() if _layer(dst) >= _layer(src)]
    assert upward == []


def test_the_check_sees_a_cycle_and_an_upward_import(tmp_path):
    root = tmp_path / "corp"
    (root / "tasks").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "tasks" / "__init__.py").write_text("")
    (root / "tasks" / "cli.py").write_text("def main():\n    from corp.config import register_configs\n")
    (root / "config.py").write_text("from corp.tasks.base import TaskConfig\n")
    (root / "scores.py").write_text("from .results import Results\n")
    edges = import_edges(root)
    assert {("tasks", "config"), ("config", "tasks"), ("scores", "results")} <= set(edges)
    assert any(_layer(dst) >= _layer(src) for src, dst in edges)
