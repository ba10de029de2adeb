"""Let ``torch.optim.Optimizer`` set up and checkpoint without importing ``torch._dynamo`` (2 s).

PyTorch wraps the optimiser's bookkeeping methods (``add_param_group``, ``state_dict``,
``load_state_dict``, ``zero_grad``) in ``torch._disable_dynamo``, which imports
``torch._dynamo`` at the first call, only to build a wrapper that keeps ``torch.compile`` from
tracing the method. That import takes 2 s here (as long as ``import torch`` itself) and
``lmlp train`` never compiles anything: without this, every training job of a campaign paid it
when its optimiser was built.

:func:`optimizers_without_dynamo` hands each of those methods itself as its cached "disabled"
version, which is what the wrapper looks up before importing. Under ``torch.compile`` the
methods would then be traced instead of skipped; so, like the allocator setting, only the
``lmlp`` compute commands call it, never the library. Where a later PyTorch names its cache
differently, this does nothing and the import happens as before.
"""

from __future__ import annotations

import torch

from aiida_lmlp.overrides import enabled

__all__ = ["optimizers_without_dynamo"]

_BOOKKEEPING = ("add_param_group", "state_dict", "load_state_dict", "zero_grad")


def optimizers_without_dynamo() -> list[str]:
    """Seed the ``torch._disable_dynamo`` cache of the optimiser's bookkeeping methods; returns their names.

    Does nothing (and returns ``[]``) when the overrides are switched off (:func:`aiida_lmlp.overrides.enabled`)."""
    if not enabled():
        return []
    disabled_code = torch._disable_dynamo(lambda: None).__code__  # the code of every such wrapper
    seeded = []
    for name in _BOOKKEEPING:
        wrapper = getattr(torch.optim.Optimizer, name, None)
        method = getattr(wrapper, "__wrapped__", None)
        if method is None or getattr(wrapper, "__code__", None) is not disabled_code:
            continue
        if getattr(method, "__dynamo_disable", None) is None:
            method.__dynamo_disable = method
        seeded.append(name)
    return seeded
