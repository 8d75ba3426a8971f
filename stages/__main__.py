"""`python -m stages STAGE ARGS` runs one stage (dvc.yaml's commands); `python -m stages STAGE -h` lists
its arguments. stages/plumbing/process.py sets the process up before the stage (and torch) loads."""

import sys

from stages.plumbing.process import run_stage

run_stage(sys.argv[1:])
