"""Tables, progress and JSON: how results reach a person or a pipe."""

# Here rather than in output.py, so the root group can name them without importing rich.
OUTPUT_FORMATS = ("table", "json")
