"""What the stages stand on, apart from the lesson: files, tables, params.yaml, the process and its errors."""
