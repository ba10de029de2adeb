"""aiida-lmlp: lifelong machine-learning potentials with AiiDA provenance."""

__version__ = "0.1.0"
