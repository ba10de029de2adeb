"""Campaign specifications (YAML) and the embedded quickstart; torch-free."""

from .spec import CampaignSpec, SpecError, load_spec

__all__ = ["CampaignSpec", "SpecError", "load_spec"]
