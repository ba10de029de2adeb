"""What every layer shares, with neither torch nor aiida: formats, settings and their validation.

- :mod:`.conformation_arrays`: the conformation archive (labelled structures as NumPy arrays);
- :mod:`.model_header`: the header of a model file (read without torch);
- :mod:`.labels`: conformation identities and label names;
- :mod:`.elements`: element tables of the eeACSFs;
- :mod:`.errors`: the errors the engine and the daemon side both raise;
- :mod:`.training_config`, :mod:`.core_hyperparameters`: training settings and their checks;
- :mod:`.exploration`: the exploration protocol, trajectory reports and visited frames.

The AiiDA daemon imports these and never the engine (:mod:`aiida_lmlp.potential`), so it never
imports torch; ``tests/test_layers.py`` holds it to that.
"""
