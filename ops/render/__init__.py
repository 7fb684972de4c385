"""Tables, progress and JSON: how results reach a person or a pipe."""
