"""The package's version, in a module of its own so that modules inside the package never import ``swt_cli``."""

__version__ = "0.1.0"
