"""A trained model as one deployable file: an AOTInductor package that runs with torch alone.

``python -m physicsml.export models/model.pt model.pt2`` (:mod:`physicsml.export.__main__`)
writes a ``.pt2`` that computes the energy, forces, stress and per-atom energies of one
structure, as :class:`~physicsml.potential.Potential` does, from plain tensors (positions,
atomic numbers, a neighbour list, a cell), with any number of atoms and edges. The modules:

* :mod:`~physicsml.export.contract`: the file's inputs, outputs and metadata (one JSON document
  in the package's metadata, readable with torch alone);
* :mod:`~physicsml.export.program`: the network and its derivatives as one exported program
  (``torch.export``, ``make_fx``), and how torch 2.13 is made to give it;
* :mod:`~physicsml.export.package`: refusing models that read more than plain tensors, compiling,
  writing the file atomically (:func:`~physicsml.export.package.export_model`);
* :mod:`~physicsml.export.runtime`: :class:`~physicsml.export.runtime.ExportedPotential`, a ``.pt2`` evaluated on ASE-style
  structures with physicsml's neighbour list (what ``PhysicsMLCalculator("model.pt2")`` uses).
"""
