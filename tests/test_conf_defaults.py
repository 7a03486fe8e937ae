"""One source of defaults: the schema dataclasses hold every default, and a YAML file under conf/ states
only what it changes. A value restated in YAML would be a second source that can drift from the first."""

from pathlib import Path

import pytest
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from tests.conftest import ROOT, compose_config

CONF = ROOT / "conf"
# Not ours to check: Hydra's own nodes (help, launchers, sweeper).
UNCHECKED = ("hydra",)
SCHEMA_SUFFIX = "@_here_"


def yaml_files() -> list[Path]:
    return sorted(p for p in CONF.rglob("*.yaml") if p.relative_to(CONF).parts[0] not in UNCHECKED)


def body(path: Path) -> dict:
    """What a file states, without its defaults list."""
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    raw.pop("defaults", None)
    return raw


def is_global(path: Path) -> bool:
    return "# @package _global_" in path.read_text()


def schema(name: str) -> dict:
    return OmegaConf.to_container(ConfigStore.instance().load(f"{name}.yaml").node, resolve=False)


def baseline(path: Path) -> dict:
    """The values a file is merged onto: its schema's defaults (or those of the sibling file it extends);
    for a file of the global package, the config `python train.py` composes."""
    if is_global(path):
        base = OmegaConf.to_container(compose_config([]), resolve=False)
        swept = OmegaConf.select(OmegaConf.load(path), "hydra.sweeper.params") or {}
        for group in swept:  # a swept group's keys merge onto each option it sweeps, not the default's
            base.pop(group, None)
        return base
    rel = path.relative_to(CONF)
    if rel.parts[:2] == ("debug", "consolidation"):  # <debug>_<operator>.yaml, merged onto that operator
        operator = next(op for op in ("corp", "es", "randopt", "soup") if path.stem.endswith(f"_{op}"))
        return schema(f"consolidation_{operator}_schema")
    for entry in OmegaConf.load(path).get("defaults", []):
        if not isinstance(entry, str) or entry == "_self_":
            continue
        if entry.endswith(SCHEMA_SUFFIX):
            return schema(entry.lstrip("/")[: -len(SCHEMA_SUFFIX)])
        if entry.startswith("/") and "_schema@" in entry:  # a logger's: its schema under its name
            name, key = entry.lstrip("/").split("@")
            return {key: schema(name)}
        if entry == "config_schema":
            return schema(entry)
        parent = path.with_name(f"{entry}.yaml")
        if parent.exists():
            return {**baseline(parent), **body(parent)}
    raise AssertionError(f"{rel}: no schema in its defaults list (add - /<group>_<name>_schema@_here_)")


def restated(stated: dict, base: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose stated value equals the baseline's."""
    out = []
    for key, value in stated.items():
        if key not in base:
            continue
        if isinstance(value, dict) and isinstance(base[key], dict):
            out += restated(value, base[key], f"{prefix}{key}.")
        elif value == base[key]:
            out.append(f"{prefix}{key}={value!r}")
    return out


def default_choices() -> dict[str, str]:
    """config.yaml's choice of each group (model: smollm2, ...)."""
    out = {}
    for entry in OmegaConf.to_container(OmegaConf.load(CONF / "config.yaml"), resolve=False)["defaults"]:
        if not isinstance(entry, str) and len(entry) == 1:
            ((group, choice),) = entry.items()
            if isinstance(choice, str) and "/" not in group and (CONF / group / f"{choice}.yaml").exists():
                out[group] = choice
    return out


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(CONF)))
def test_no_yaml_restates_a_schema_default(path):
    stated = body(path)
    stated.pop("hydra", None)
    if not is_global(path):
        stated.pop("name", None)  # the registry key, kept in every group file so it reads as what it is
    found = restated(stated, baseline(path)) if stated else []  # logger/none.yaml states nothing
    assert not found, f"conf/{path.relative_to(CONF)} restates its schema's defaults: {', '.join(found)}; drop them"


def test_the_check_finds_a_restated_default(tmp_path):
    """The check above is not vacuous: a file restating one default is caught, a changed value is not."""
    path = CONF / "consolidation" / "corp.yaml"
    assert restated({"local_members": schema("consolidation_corp_schema")["local_members"]}, baseline(path))
    assert not restated({"local_members": 3 + schema("consolidation_corp_schema")["local_members"]}, baseline(path))


@pytest.mark.parametrize("group", ["model", "task", "perturbation", "consolidation", "trainer"])
def test_default_group_files_add_nothing_to_their_schema(group):
    """A group's default option (config.yaml's choice) and each schema's own file (task/<name>.yaml,
    consolidation/<operator>.yaml) are the schema: a value that differs from it belongs in the schema."""
    names = {p.stem for p in (CONF / group).glob("*.yaml")}
    own = {n for n in names if f"{group}_{n}_schema.yaml" in ConfigStore.instance().repo}
    chosen = {default_choices()[group]} if group in default_choices() else set()
    assert own | chosen, group
    for name in sorted(own | chosen):
        extra = set(body(CONF / group / f"{name}.yaml")) - {"name"}
        assert not extra, f"conf/{group}/{name}.yaml sets {sorted(extra)}: change the schema's default instead"
