"""What the stages stand on, apart from the lesson: reading and checking params.yaml (params), user
tables (tables), a stage's inputs, outputs and tensor files (files), one-line errors (errors), the stage
process and its error boundary (process), the device and the settings that repeat a run bit for bit
(device), and training across processes under torchrun (distributed)."""
