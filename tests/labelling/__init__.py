"""Tests of aiida_lmlp.labelling (DFT single points for reference labels)."""
