"""Post-train a language model with CoRP: `python train.py [overrides]`.

Examples:
    python train.py                                   # embedded SmolLM2-135M-Instruct, arithmetic
    python train.py task=countdown perturbation.population_size=32
    python train.py -m seed=0,1,2 consolidation=corp  # a Hydra multirun sweep
"""

import shutil
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from corp.config import ConfigError, register_configs

register_configs()  # typed schemas + the resolvers (`slug`, `sweep_name`) used in conf/


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from corp.run import run

    try:
        results = run(cfg)
    except ConfigError as err:  # a clean one-line message, not a traceback
        print(f"config error: {err}", file=sys.stderr)
        _remove_hydra_leftovers()
        sys.exit(2)
    # the value sweepers optimise (hydra/sweeper=corp_optuna); mode=eval without the probe split has none
    return results.get("probe", {}).get("final")


def _remove_hydra_leftovers() -> None:
    """Hydra creates the run folder (config copies, log) before the run starts; a run refused
    for bad input leaves nothing behind. A folder holding anything else is left alone."""
    from hydra.core.hydra_config import HydraConfig

    out = Path(HydraConfig.get().runtime.output_dir)
    if out.is_dir() and {p.name for p in out.iterdir()} <= {".hydra", "train.log"}:
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
