"""Post-train a language model with CoRP: `python train.py [overrides]`.

Examples:
    python train.py                                   # embedded SmolLM2-135M-Instruct, arithmetic
    python train.py task=countdown perturbation.population_size=32
    python train.py -m seed=0,1,2 consolidation=corp  # a Hydra multirun sweep
    python train.py debug=smoke                       # a complete run in about a minute
"""

import sys

import hydra
from omegaconf import DictConfig

from corp.config import register_configs

register_configs()  # typed schemas + the resolvers used in conf/


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from corp import cli, hydra_errors
    from corp.errors import Interrupted, UserError, disk_full
    from corp.run import run

    hydra_errors.job_started()
    cli.clear_error()
    try:
        results = run(cfg, on_start=lambda out: cli.save_hydra_files(cfg, out))
    except UserError as err:  # a clean one-line message, not a traceback
        return cli.refuse(err)
    except Exception as err:  # a full disk, also wrapped by a library (safetensors); anything else is a bug
        if not disk_full(err):
            raise
        print(
            f"error: no space left on device ({getattr(err, 'filename', None) or cli.job_dir()}): what was scored is saved in "
            f"{cli.job_dir()}; free some space and run the same command again to continue",
            file=sys.stderr,
        )
        sys.exit(cli.REFUSED)
    except Interrupted as sig:
        print(f"interrupted ({sig.signal_name}): what was scored is saved in {cli.job_dir()}; "
              "run the same command again to continue", file=sys.stderr)  # fmt: skip
        sys.exit(sig.exit_code)
    # the value sweepers optimise (hydra/sweeper=corp_optuna); mode=eval without the probe split has none
    probe = results.splits.get("probe")
    return probe.final if probe is not None else None


if __name__ == "__main__":
    import logging

    from corp.hydra_errors import guard

    logging.raiseExceptions = False  # a log line that cannot be written (a full disk) is dropped, not a traceback
    guard(main)  # Hydra's own errors (overrides, options, keys) as one line, exit status 2
    from corp.cli import REFUSED, SweepStatus

    sys.exit(REFUSED if SweepStatus.failed else 0)
