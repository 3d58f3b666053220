"""Models of other packages as physicsml model files: ``python -m physicsml.convert mace IN.model OUT.pt``.

:func:`~physicsml.convert.mace.convert_mace` reads a mace-torch model file without mace-torch
(:mod:`physicsml.convert.unpickle`) and maps it exactly onto a ``mace_model``.
"""
