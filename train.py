"""Post-train a language model with CoRP: `python train.py [overrides]`.

Examples:
    python train.py                                   # embedded SmolLM2-135M-Instruct, arithmetic
    python train.py task=countdown perturbation.population_size=32
    python train.py -m seed=0,1,2 consolidation=corp  # a Hydra multirun sweep
"""

import sys

import hydra
from omegaconf import DictConfig

from corp.config import ConfigError, register_configs

register_configs()  # typed schemas + the `slug` resolver used in hydra's output dirs


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from corp.run import run

    try:
        results = run(cfg)
    except ConfigError as err:  # a clean one-line message, not a traceback
        print(f"config error: {err}", file=sys.stderr)
        sys.exit(2)
    # the value sweepers optimise (hydra/sweeper=corp_optuna); mode=eval without the probe split has none
    return results.get("probe", {}).get("final")


if __name__ == "__main__":
    main()
