"""What the stages stand on, apart from the lesson: reading and checking params.yaml (params), user
tables (tables), tensor files and all-or-nothing writes (files), the one-line errors and the stage's
error boundary (errors), how a stage process ends (process), the device and the settings that repeat
a run bit for bit (device), and training across processes under torchrun (distributed)."""
