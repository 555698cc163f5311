"""Data-parallel training across processes (``torchrun --nproc_per_node=N -m emsiam train ...``).

Everything here is a no-op when ``WORLD_SIZE`` is unset or 1, so single-process runs are
unchanged bit for bit. How batches, BatchNorm, gradients, data and banks are shared over
ranks: docs/distributed.md.
"""

from .batchnorm import AllReduceBatchNorm, sync_batchnorm
from .collectives import all_gather_rows, all_reduce_mean, average_gradients, broadcast_parameters
from .forward import training_forward
from .group import (active, barrier, cleanup, env_rank, env_world_size, init, is_main, main_first, rank, rank_slice,
                    split_evenly, split_sizes, world)

__all__ = ["active", "barrier", "cleanup", "env_rank", "env_world_size", "init", "is_main", "main_first", "rank",
           "rank_slice", "split_evenly", "split_sizes", "world", "all_gather_rows", "all_reduce_mean",
           "average_gradients", "broadcast_parameters", "training_forward", "AllReduceBatchNorm", "sync_batchnorm"]
