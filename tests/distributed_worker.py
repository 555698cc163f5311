"""One rank of tests/test_distributed.py, launched by torchrun: ``distributed_worker.py JSON``.

JSON is a list of [name, overrides] or [name, overrides, crash_after_epoch]; the runs are
trained one after the other in one process group (setup + fit, as ``emsiam train`` does,
without leaving the group between runs). With ``crash_after_epoch`` = E, every rank stops
with :class:`SimulatedCrash` right after epoch E has been logged and checkpointed, as a
killed job would; the worker then exits with status 3 (later runs are not started).
"""

import json
import sys

from emsiam import alternation, distributed
from emsiam.config import load_config
from emsiam.setup import setup


class SimulatedCrash(RuntimeError):
    pass


def crash_after(epoch_limit: int):
    end_of_epoch = alternation._end_of_epoch

    def wrapped(s, epoch, *args, **kwargs):
        end_of_epoch(s, epoch, *args, **kwargs)
        distributed.barrier()  # rank 0 has finished writing the checkpoint
        if epoch + 1 >= epoch_limit:
            raise SimulatedCrash(f"simulated crash after epoch {epoch + 1}")

    return wrapped


if __name__ == "__main__":
    from conftest import render_synthetic_once  # tests/ is this script's sys.path[0]

    render_synthetic_once()  # the runs of a launch share their synthetic sets
    try:
        for name, overrides, *crash in json.loads(sys.argv[1]):
            if crash:
                alternation._end_of_epoch = crash_after(crash[0])
            try:
                alternation.fit(setup(load_config(None, overrides + [f"name={name}"])))
            except SimulatedCrash as e:
                print(e, file=sys.stderr)
                sys.exit(3)
    finally:
        distributed.cleanup()
