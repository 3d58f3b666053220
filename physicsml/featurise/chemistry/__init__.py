"""Chemistry features of atoms and bonds for graph neural networks, computed with RDKit.

Its pure part goes from atomic numbers and coordinates (or an RDKit molecule that
already has bonds) to numpy arrays:

* :func:`molecule_from_atoms` (:mod:`.perception`) perceives bonds, bond orders and
  formal charges from 3D coordinates and the total charge (``rdDetermineBonds.DetermineBonds``);
* :func:`atom_features` (:mod:`.atoms`) gives one row per atom, to append to the element one-hot;
* :func:`bond_features` (:mod:`.bonds`) gives one row per bond, with the bond's atom indices;
* :func:`physicsml.graphs.edge_features` (the graphs stage) spreads the bond rows
  onto the edges of a neighbour list, as edge attributes with a leading "bonded" flag.

:mod:`.names` holds the feature names and categories (:data:`ATOM_FEATURES`,
:data:`BOND_FEATURES`) and :mod:`.encoding` what atom and bond features share.
:mod:`.columns` makes featurised-table columns of them for a list of structures
(:func:`chemistry_columns`), with the settings checked against the config
(:func:`chemistry_settings`).

Hydrogens are expected as explicit atoms (the structures are 3D with all hydrogens);
nothing here adds or removes atoms, and every row is in the molecule's atom order.

Feature names follow the RDKit backend of the reference library physicsml 0.6.0
(Exscientia): atom features ``atomic_num``, ``formal_charge``, ``degree``, ``stereo``,
``is_in_ring``, ``is_aromatic``, ``is_chiral`` plus ``hybridisation``; bond features
``order``, ``stereo``, ``is_in_ring``, ``is_chiral``, ``is_rotatable`` plus
``is_conjugated``. Where the semantics differ from the reference it is said at
:data:`ATOM_FEATURES` and :data:`BOND_FEATURES`.

Encoding (``one_hot``):

* ``one_hot=True``: a categorical feature gives one column per category, in the
  order of its tuple in :data:`ATOM_FEATURES` / :data:`BOND_FEATURES`, named
  ``"<name>=<category>"`` (``"formal_charge=-1"``, ``"order=AROMATIC"``), plus a last
  column ``"<name>=other"`` that is 1 for a value outside the list, so that no atom
  or bond is ever silently encoded as all zeros;
* ``one_hot=False``: one column per feature, named ``"<name>"``: ``atomic_num`` is Z,
  ``formal_charge`` the signed integer charge, ``degree`` the number of bonded atoms;
  the other categorical features are the index of the value in their category tuple
  (``len(categories)`` for a value outside it);
* boolean features (``is_*``) are a single 0/1 column named ``"<name>"`` in both modes.

Columns come in the order of ``names`` given by the caller (the reference sorts the
names alphabetically; here the returned column names make the layout explicit).
"""

from __future__ import annotations

from physicsml.featurise.chemistry.atoms import atom_features
from physicsml.featurise.chemistry.bonds import bond_features
from physicsml.featurise.chemistry.columns import Chemistry, chemistry_columns, chemistry_settings, molecule_of
from physicsml.featurise.chemistry.names import (
    ATOM_FEATURES,
    BOND_FEATURES,
    BONDS_NOT_PERCEIVED,
    BOOLEAN_FEATURES,
    ROTATABLE_BOND_SMARTS,
    unknown_feature,
)
from physicsml.featurise.chemistry.perception import molecule_from_atoms

__all__ = [
    "ATOM_FEATURES",
    "BOND_FEATURES",
    "BONDS_NOT_PERCEIVED",
    "BOOLEAN_FEATURES",
    "ROTATABLE_BOND_SMARTS",
    "Chemistry",
    "atom_features",
    "bond_features",
    "chemistry_columns",
    "chemistry_settings",
    "molecule_from_atoms",
    "molecule_of",
    "unknown_feature",
]
