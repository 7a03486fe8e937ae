"""Typed config schemas, registered in Hydra's ConfigStore.

Hydra merges the YAML files under ``conf/`` onto these dataclasses, so an unknown
key fails at composition; ``validate`` then builds the dataclasses, whose
``__post_init__`` checks values and names the offending key.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from corp.consolidate.base import ConsolidationConfig
from corp.errors import UserError
from corp.models.loading import ModelConfig
from corp.perturb.noise import NOISE_MODES
from corp.racing import RacingConfig
from corp.tasks.base import TaskConfig

MODES = ("train", "eval")
RESUME = ("auto", "never")
ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "auto")

# Top-level keys that never change what a run computes: where it writes, how it is watched, how it
# is spread over processes, what it may reuse, how often it saves. The one list read by resume
# (they may change when a run is continued), the sweep report (they never define a group) and
# multirun folder names (left out of them).
RESULT_NEUTRAL = ("resume", "logger", "output_dir", "trainer", "population", "log_samples", "export_model",
                  "push_to_hub", "checkpoint_every_s", "paths", "print_config", "profile")  # fmt: skip


def result_neutral(key: str) -> bool:
    """Whether a dotted config key (``trainer.devices``, ``population.load``) is result-neutral."""
    key = key.lstrip("+~")
    return any(key == k or key.startswith(k + ".") for k in RESULT_NEUTRAL)


@dataclass
class PerturbationConfig:
    """``perturbation.*``: the isotropic population of stage 0."""

    population_size: int = 32  # N members scored on the support split
    # cycled over members; for a 135M model in fp32 (8e-3 already breaks its outputs)
    sigmas: list[float] = field(default_factory=lambda: [2e-3, 4e-3, 6e-3])
    include: list[str] = field(default_factory=lambda: ["*"])  # glob patterns of perturbed parameter names
    exclude: list[str] = field(default_factory=list)
    # table: windows of one shared noise table (a read and an add per member, nothing drawn); chunked:
    # per-tensor streams in 64K-element blocks; independent: one serial stream per tensor; shared: the
    # published code's same seed per tensor. See corp/perturb/noise.py.
    noise_mode: str = "table"
    # Byte budget of dense direction rows (whole-model fp32 each: 7 rows for 135M weights); merged
    # directions, their step-size grids and stage-2 bases are served from them. 0 disables.
    noise_cache_mb: float = 4096.0
    dense_cache: bool = True  # false: regenerate every candidate from its seeds (the reference path)
    # Mirrored sampling: members 2j and 2j + 1 are +-sigma * eps(seed_j), sharing the seed, in every
    # isotropic population (stage 0 of each method, every ES generation; not CoRP's local members).
    antithetic: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.population_size, int) or self.population_size < 2:
            raise ValueError(f"perturbation.population_size={self.population_size!r}: must be an integer >= 2")
        if len(self.sigmas) == 0:
            raise ValueError("perturbation.sigmas=[]: give at least one noise scale > 0")
        bad = [s for s in self.sigmas if not s > 0]
        if bad:
            raise ValueError(f"perturbation.sigmas={list(self.sigmas)}: every sigma must be > 0 (got {bad})")
        if self.noise_cache_mb < 0:
            raise ValueError(f"perturbation.noise_cache_mb={self.noise_cache_mb!r}: must be >= 0 (0 disables)")
        if self.noise_mode not in NOISE_MODES:
            raise ValueError(f"perturbation.noise_mode={self.noise_mode!r}; allowed: {', '.join(NOISE_MODES)}")


@dataclass
class PathsConfig:
    """``paths.*``, as lightning-hydra-template's: where outputs go."""

    log_dir: str = "outputs"  # every run's and sweep's folder goes below it (runs/, multiruns/, smoke/, debug/)
    output_dir: str = "${output_dir}"  # this run's folder, the same as output_dir (set that, or hydra.run.dir)


@dataclass
class PopulationConfig:
    """``population.*``: reuse of saved scores (see corp.store)."""

    # A saved scores file (.npz) or a folder searched recursively (a run, a sweep, outputs/):
    # members and evaluations already scored there on the same model, task and examples are
    # taken from it instead of decoded again. null: score everything.
    load: str | None = None


@dataclass
class EvalConfig:
    """``eval.*``: what ``mode=eval`` scores next to the base model."""

    direction: str | None = None  # a direction.json, or a run folder holding one
    model: str | None = None  # an exported model folder (a run's model/)
    splits: list[str] = field(default_factory=lambda: ["test"])

    def __post_init__(self) -> None:
        from corp.tasks.base import SPLITS

        bad = [s for s in self.splits if s not in SPLITS]
        if bad or not len(self.splits):
            raise ValueError(f"eval.splits={list(self.splits)}; allowed: a non-empty list of {', '.join(SPLITS)}")


@dataclass
class TrainerConfig:
    """``trainer.*``: the Lightning Fabric run (ranks shard the population), built with ``_target_``
    from every key but ``num_threads``. Not a registry like tasks, operators and loggers: the class is
    Lightning's own (or a subclass of it), not one written for corp."""

    _target_: str = "lightning.fabric.Fabric"
    accelerator: str = "cpu"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    num_threads: int | None = None  # torch CPU threads; null leaves torch's default

    def __post_init__(self) -> None:
        if self.accelerator not in ACCELERATORS:
            raise ValueError(f"trainer.accelerator={self.accelerator!r}; allowed: {', '.join(ACCELERATORS)}")
        if self.devices < 1 or self.num_nodes < 1:
            raise ValueError("trainer.devices and trainer.num_nodes must be >= 1")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"trainer.num_threads={self.num_threads}: must be >= 1, or null for torch's default")


@dataclass
class Config:
    """The whole run. Groups: model, task, perturbation, consolidation, racing, logger, trainer."""

    seed: int = 0  # member seeds, splits of support, everything random in the method
    mode: str = "train"  # train | eval (score eval.direction or eval.model, no training)
    resume: str = "auto"  # auto: continue an interrupted run in the same output_dir; never: start over
    checkpoint_every_s: float = 60.0  # save partly scored populations at least this often
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    perturbation: PerturbationConfig = field(default_factory=PerturbationConfig)
    consolidation: ConsolidationConfig = field(default_factory=ConsolidationConfig)
    population: PopulationConfig = field(default_factory=PopulationConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    racing: RacingConfig = field(default_factory=RacingConfig)  # which examples a population is decoded on
    eval: EvalConfig = field(default_factory=EvalConfig)
    # name -> a registered logger's config (conf/logger/); several at once: logger=[wandb,csv]
    logger: dict[str, Any] = field(default_factory=dict)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    output_dir: str = "outputs/runs/default"  # set from hydra's run/sweep dir in conf/config.yaml
    export_model: bool = True  # save_pretrained the consolidated model under <output_dir>/model
    push_to_hub: str | None = None  # a hub repo id (user/name): upload model/ and its card there at the end
    log_samples: int = 8  # completions per split kept for the W&B table / samples file
    print_config: bool = False  # print the composed config as a tree when the run starts
    profile: bool = False  # save a torch.profiler trace of one population member (debug=profiler)

    def __post_init__(self) -> None:
        if self.push_to_hub and not self.export_model:
            raise ValueError(f"push_to_hub={self.push_to_hub!r} uploads model/, which export_model=false does not "
                             "write; set export_model=true or push_to_hub=null")  # fmt: skip


def slug(text: str) -> str:
    """A folder-name-safe version of ``text``."""
    return re.sub(r"[^A-Za-z0-9=,._+-]+", "_", str(text)).strip("_")


JOB_DIRNAME_MAX = 80


def job_dirname(overrides: list[str], exclude: list[str], max_len: int = JOB_DIRNAME_MAX) -> str:
    """A multirun job's folder name from its overrides: ``key=value`` items sorted, each key without its
    group (``consolidation.betas`` -> ``betas``) unless two would then clash. Past ``max_len`` characters
    it keeps the items that fit, whole, and ends with a hash of every override, so a name is never cut
    inside an item and two jobs never share one."""
    items = sorted(o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in exclude)
    if not items:
        return "default"
    keys = [o.split("=", 1)[0].lstrip("+~") for o in items]
    short = [k.rsplit(".", 1)[-1] for k in keys]
    parts = [slug(f"{s if short.count(s) == 1 else k}={o.split('=', 1)[1] if '=' in o else ''}")
             for o, k, s in zip(items, keys, short)]  # fmt: skip
    name = ",".join(parts)
    if len(name) <= max_len:
        return name
    digest = hashlib.sha1(",".join(items).encode()).hexdigest()[:8]
    kept: list[str] = []
    for part in parts:
        if len(",".join([*kept, part])) + 1 + len(digest) <= max_len:
            kept.append(part)
    return ",".join([*kept, digest])


def _job_dirname() -> str:
    """The resolver behind ``hydra.sweep.subdir``: the running job's overrides, less the result-neutral
    keys and those Hydra's ``override_dirname.exclude_keys`` lists (long paths such as the model's)."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    overrides = [o for o in hc.overrides.task if not result_neutral(o.split("=", 1)[0])]
    return job_dirname(overrides, list(hc.job.config.override_dirname.exclude_keys))


def in_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun (``-m``), not a single run."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_dir() -> str:
    """``output_dir``'s default: the folder Hydra made for this run or job. Before there is one (``--cfg job
    --resolve``), the folder a single run would get; outside Hydra, pass ``output_dir=<folder>``."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        raise ValueError("output_dir: not set and not in a Hydra run; pass output_dir=<folder>")
    hc = HydraConfig.get()
    if not OmegaConf.is_missing(hc.runtime, "output_dir") and hc.runtime.output_dir:
        return hc.runtime.output_dir
    return f"{hc.sweep.dir}/<job>" if in_multirun() else hc.run.dir


def sweep_name() -> str | None:
    """In a multirun job, the sweep folder's name (the W&B group of its jobs); None in a single
    run or outside Hydra (e.g. a config composed in a test)."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().sweep.dir).name if in_multirun() else None


def register_configs() -> None:
    """Put every schema in Hydra's ConfigStore and register the resolvers conf/ uses: ``run_dir``,
    ``job_dirname``, ``sweep_name`` and ``config_groups`` (idempotent)."""
    from corp.help import config_groups

    for name, resolver in (("run_dir", run_dir), ("job_dirname", _job_dirname), ("sweep_name", sweep_name),
                           ("config_groups", config_groups)):  # fmt: skip
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)
    from corp.consolidate.base import OPERATORS
    from corp.observe.callbacks import LOGGERS
    from corp.tasks.base import TASKS

    # Outside every group, so that `--help` and tab completion offer only real options; a group's YAML
    # takes its schema with `- /<schema name>@_here_` (a logger's: `@<name>`) in its defaults list.
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    cs.store(name="model_schema", node=ModelConfig)
    cs.store(name="perturbation_schema", node=PerturbationConfig)
    cs.store(name="trainer_schema", node=TrainerConfig)
    cs.store(name="paths_schema", node=PathsConfig)
    cs.store(name="racing_schema", node=RacingConfig)
    for registry in (TASKS, OPERATORS, LOGGERS):
        for name, schema in registry.schemas().items():
            cs.store(name=name, node=schema)


class ConfigError(UserError):
    """A bad config value, with a message naming the key and what is allowed."""


def validate(cfg: DictConfig | Config) -> Config:
    """Build the typed config, running every value check; raises ConfigError naming the key."""
    try:
        if isinstance(cfg, DictConfig):
            _refuse_unknown_keys(cfg)
        typed: Config = cfg if isinstance(cfg, Config) else OmegaConf.to_object(cfg)  # type: ignore[assignment]
        _check_cross_group(typed)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return typed


def _refuse_unknown_keys(node: DictConfig, prefix: str = "") -> None:
    """A key added with ``+key=value`` that no schema has: nothing would read it, so the run would
    silently ignore what the user asked for."""
    import dataclasses

    schema = OmegaConf.get_type(node)
    if not (isinstance(schema, type) and dataclasses.is_dataclass(schema)):
        return  # a free-form dict (logger.*): each entry is checked when it is built
    fields = {f.name for f in dataclasses.fields(schema)}
    for key in node.keys():
        if key not in fields:
            allowed = ", ".join(sorted(f for f in fields if not f.startswith("_")))
            raise ValueError(f"+{prefix}{key}: no such key, nothing would read it; allowed: {allowed}")
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            _refuse_unknown_keys(child, f"{prefix}{key}.")


def _check_cross_group(cfg: Config) -> None:
    """Checks of top-level keys and those that need two groups at once (population vs quantile)."""
    from corp.consolidate import build_operator
    from corp.observe.callbacks import LOGGERS

    if cfg.mode not in MODES:
        raise ValueError(f"mode={cfg.mode!r}; allowed: {', '.join(MODES)}")
    if cfg.resume not in RESUME:
        raise ValueError(f"resume={cfg.resume!r}; allowed: {', '.join(RESUME)}")
    for name, entry in cfg.logger.items():
        schema = LOGGERS[name].config_class  # an unknown name is refused naming the registered loggers
        if isinstance(entry, dict):  # keys added with +logger.<name>.<key>=... to a logger not chosen
            try:
                cfg.logger[name] = schema(**entry)
            except TypeError as err:
                raise ValueError(f"logger.{name}: {err}") from None
    if cfg.log_samples < 0:
        raise ValueError(f"log_samples={cfg.log_samples}: must be >= 0 (the number of test completions logged)")
    if not cfg.checkpoint_every_s > 0:
        raise ValueError(f"checkpoint_every_s={cfg.checkpoint_every_s!r}: must be > 0 (seconds)")

    operator = build_operator(cfg)  # pure logic: raises ValueError naming the keys, costs nothing
    first = operator.propose(0) if cfg.racing.on and cfg.mode == "train" else None
    if first is not None and first.keep is None:
        raise ValueError(f"racing={cfg.racing.rule}: consolidation={cfg.consolidation.name} reads every member's "
                         "full score; use racing=none")  # fmt: skip


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted keys: ``{"model": {"dtype": x}}`` -> ``{"model.dtype": x}``."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def to_plain(cfg: Any) -> dict:
    """A JSON-friendly dict of a (typed or DictConfig) config."""
    return OmegaConf.to_container(OmegaConf.structured(cfg) if not isinstance(cfg, DictConfig) else cfg, resolve=True)
