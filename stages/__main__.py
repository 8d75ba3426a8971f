"""`python -m stages STAGE ARGS` runs one stage (dvc.yaml's commands); `python -m stages STAGE -h` lists
its arguments. stages/plumbing/process.py sets the process up before the stage (and torch) loads."""

import signal
import sys

# Until run_stage handles it, Ctrl-C ends the process quietly, as it ends any program (Python's own
# handler would print a traceback from inside an import); one a shell set aside (`&`) stays aside.
if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, signal.SIG_DFL)

from stages.plumbing.process import run_stage

run_stage(sys.argv[1:])
