"""Which trainer a command builds: the single-machine Trainer, or the Ray driver for ``--nodes N``.

``asyncrl train`` and :func:`numba_a3c.train` ask here; Ray is imported only for ``--nodes`` ≥ 1,
so the core package works without the ``ray`` extra (docs/distributed.md).
"""

from numba_a3c.trainer import Trainer
from numba_a3c.validation import ConfigError


def require_ray():
    """The ``ray`` module, or ConfigError naming the extra that provides it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--nodes needs Ray, an optional extra: pip install 'numba_a3c[ray]' (or pip install "
                          "'ray>=2.9'), or train on this machine alone without --nodes") from None
    return ray


def trainer_for(nodes, ray_address=None):
    """(the trainer class, its extra keyword arguments) for a run of ``nodes`` nodes: the
    single-machine :class:`~numba_a3c.trainer.Trainer` for 0, else the Ray driver
    (ConfigError with one line when Ray is missing, or for an address without nodes)."""
    if not nodes:
        if ray_address:
            raise ConfigError(f"--ray-address {ray_address}: give --nodes N too (the number of node actors to run "
                              f"there)")
        return Trainer, {}
    require_ray()
    from numba_a3c.ray_nodes import DistributedTrainer, check_address

    if ray_address:
        check_address(ray_address)     # before anything is built: nothing answering there is a typo
    return DistributedTrainer, {"ray_address": ray_address}


def resumed_nodes(ckpt_path, given):
    """The number of nodes a resume of ``ckpt_path`` runs on: ``given["nodes"]`` or the checkpoint's."""
    if given.get("nodes") is not None:
        return given["nodes"]
    from numba_a3c import checkpoint

    return checkpoint.load(ckpt_path, whole_log=False).config.nodes
