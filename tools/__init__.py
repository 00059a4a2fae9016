"""Thin absl programs, `python -m tools.NAME` (README).

Importing the package sets up the console (tools/console.py) before a program
imports TensorFlow, whose C++ log level is read once, when it loads.
"""

from tools import console

console.install()
