"""``zerocopy tune``: the ``--auto-threshold`` crossover, measured on the host that serves.

* :mod:`~zerocopy.tune.measure`: the measurement (two servers, alternated windows, the
  crossover);
* :mod:`~zerocopy.tune.store`: the tune file, and the threshold's precedence for
  ``zerocopy serve``;
* :mod:`~zerocopy.tune.command`: the sub-command, imported when it runs;
* :mod:`~zerocopy.tune.parser`: its flags, which every ``zerocopy`` start adds;
* :mod:`~zerocopy.tune.client`: the project's keep-alive client, the load when wrk is missing;
* :mod:`~zerocopy.tune.sizes`: sizes as the command line spells them.

Nothing of the server imports this package: ``tune`` starts servers the way users do, as
``zerocopy serve`` processes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zerocopy.tune.parser import add_parser
from zerocopy.tune.store import ThresholdChoice, resolve_auto_threshold, tune_path

if TYPE_CHECKING:
    import argparse

__all__ = ["ThresholdChoice", "add_parser", "main", "resolve_auto_threshold", "tune_path"]


def main(args: argparse.Namespace) -> int:
    """Run ``zerocopy tune`` (see :mod:`zerocopy.tune.command`)."""
    from zerocopy.tune.command import main as run  # loaded only when tune runs

    return run(args)
