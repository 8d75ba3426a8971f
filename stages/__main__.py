"""python -m stages <prepare|train|evaluate> ARGS: run stages/<stage>.py as `python -m stages.<stage>
ARGS` would, in a process forked from a server that has imported torch already (stages/forkserver.py)."""

import sys

from stages.forkserver import run

STAGES = ("prepare", "train", "evaluate")

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in STAGES:
        sys.exit(f"usage: python -m stages {{{','.join(STAGES)}}} ARGS...")
    sys.exit(run(f"stages.{sys.argv[1]}", sys.argv[2:]))
