"""The equal-budget study: Serpent against BasicSR's own networks at equal CPU training time.

An experiment about the product, not part of it: this folder is not installed (setup.py packages
``serpent_arch`` only) and runs from the repository root, ``python -m study COMMAND``. Its lab notebook
is ``study/README.md``; its run records, tables and plots are in ``study/records/``.
"""
