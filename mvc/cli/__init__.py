"""The command line: a thin Typer layer that parses, calls one op, and renders."""
