"""The options a ``basicsr train`` / ``basicsr test`` run uses, resolved once from its flags:

1. the option file (``-opt``); for ``test -e experiments/NAME``, its test sets with the experiment's
   network, scale and newest weights (``serpent_arch.experiment``), or without ``-opt`` the
   experiment's own validation sets;
2. ``--trial`` (train): the file shrunk to a short run (``serpent_arch.trial``);
3. ``--force_yml KEY=VALUE``, parsed as BasicSR parses them (``KEY=~`` sets None);
4. ``--remove_yml KEY``: keys removed;
5. ``num_gpu`` / ``prefetch_mode: cuda`` lowered to the devices present.

The command checks this dict (``serpent_arch.options.check_options``, reporting problems under the
user's file) and hands BasicSR a copy of it in a temporary file, without the flags that made it, so
BasicSR runs exactly what was checked; ``basicsr train`` also writes it to
``experiments/NAME/options_resolved.yml``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from serpent_arch import trial
from serpent_arch.compat.fixes import fit_to_devices
from serpent_arch.experiment import open_experiment, options_for_test
from serpent_arch.options import apply_force_yml, load_yaml, remove_keys


@dataclass
class ResolvedOptions:
    opt: dict
    option_file: str  # the user's file the options come from (BasicSR's copy in experiments/ is made of it)
    source: str  # how problem reports name it: the user's files, never a temporary copy
    notes: list[str] = field(default_factory=list)  # lines to print before the run (--trial's changes)
    warnings: list[str] = field(default_factory=list)


def resolve(command: str, args) -> ResolvedOptions:
    """The options of ``basicsr COMMAND`` with parsed flags ``args`` (``opt``, ``force_yml``,
    ``remove_yml``, and ``trial`` for train, ``experiment`` for test); OptionError when they cannot be made."""
    experiment = open_experiment(args.experiment) if getattr(args, "experiment", None) else None
    raw = load_yaml(args.opt) if args.opt else None
    if experiment is not None:
        opt = options_for_test(experiment, raw, args.opt)
        option_file = args.opt or experiment.options_path
        source = (
            f"option file {args.opt!r} (network and weights of {experiment.folder})"
            if args.opt
            else f"options of {experiment.folder} ({experiment.options_path}, validation sets as test sets)"
        )
    else:
        opt, option_file, source = copy.deepcopy(raw), args.opt, f"option file {args.opt!r}"
    resolved = ResolvedOptions(opt, option_file, source)
    if getattr(args, "trial", False):
        changes = trial.shrink(opt)
        resolved.notes.append(f"--trial: a short run of {option_file} (--force_yml overrides any of these):")
        resolved.notes += [f"  {change}" for change in changes]
    apply_force_yml(opt, args.force_yml)
    remove_keys(opt, args.remove_yml)
    resolved.warnings += fit_to_devices(opt, option_file)
    return resolved
