"""`python -m stages STAGE ARGS` runs one stage of the pipeline (dvc.yaml's commands): STAGE is prepare,
train or evaluate, and `python -m stages STAGE -h` lists its arguments. stages/plumbing/process.py
sets the process up before the stage (and torch) loads."""

import sys

from stages.plumbing.process import run_stage

run_stage(sys.argv[1:])
