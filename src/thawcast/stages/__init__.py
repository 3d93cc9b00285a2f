"""Pipeline stages: each wires library functions to files for one DVC stage.

One module per stage, one output folder under ``data/`` per stage; each validates what
it is about to write and writes it all-or-nothing.
"""
