"""physicsml: 3D graph neural networks for molecules and materials, trained through cached DVC stages."""

__version__ = "0.1.0"
