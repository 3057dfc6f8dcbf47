"""The task and model options every command that loads a task shares, defined once.

Help texts come from :class:`~circuitwise.config.RunConfig`'s fields, so ``run``'s config file and
each command's flags describe an option in the same words. ``None`` means "not given".
"""

from __future__ import annotations

import typer

from circuitwise.config import RunConfig

F = RunConfig.model_fields

DEVICE = typer.Option(None, "--device", help=F["device"].description)
DEVICE_MAP = typer.Option(None, "--device-map", help=F["device_map"].description)
N_DEVICES = typer.Option(None, "--n-devices", help=F["n_devices"].description)
MAX_MEMORY = typer.Option(None, "--max-memory", help=F["max_memory"].description)
DTYPE = typer.Option(None, "--dtype", help=f"{F['dtype'].description} [default: auto]")
N = typer.Option(None, "--n", help=F["n"].description)
SEED = typer.Option(None, "--seed", help=F["seed"].description)
CORRUPTION = typer.Option(None, "--corruption", help=F["corruption"].description)
SPLIT = typer.Option(None, "--split", help=F["split"].description)
DROP_INVALID = typer.Option(None, "--drop-invalid/--strict", help=F["drop_invalid"].description)
PROCESSING = typer.Option(None, "--processing/--no-processing", help=F["processing"].description)
