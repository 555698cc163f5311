"""One rank of tests/test_distributed.py, launched by torchrun: ``distributed_worker.py JSON``.

JSON is a list of [name, overrides]; the runs are trained one after the other in one
process group (setup + fit, as ``emsiam train`` does, without leaving the group between runs).
"""

import json
import sys

from emsiam import distributed
from emsiam.alternation import fit
from emsiam.config import load_config
from emsiam.train import setup

if __name__ == "__main__":
    try:
        for name, overrides in json.loads(sys.argv[1]):
            fit(setup(load_config(None, overrides + [f"name={name}"])))
    finally:
        distributed.cleanup()
