"""The command line's commands, one module per part of the job; `micronas_jax.cli` gathers them.

Each command parses its options, calls one library function and prints; `common` holds what they
share (one-line errors that name the options, the cell argument, safe output paths).
"""
