"""The labeller interface of ``lmlp.label``: one adapter per code, one contract for all of them.

Every labeller runs a *batch process*: given ``structures`` (an ``lmlp.dataset``, molecules or
periodic cells, charge and multiplicity per conformation) and ``parameters`` (an ``orm.Dict``
of the code's settings), it returns

* ``labelled``: an ``lmlp.dataset`` of the converged structures (eV, eV/Å, eV/Å³ for cells),
  recording the :class:`~aiida_lmlp.labelling.protocol.LabelProtocol`, every conformation
  traceable to the calculation that computed it;
* ``failed``: one entry per structure without a label, ``{index, id, status, message}`` with
  status ``not_converged``, ``error`` (the code refused it), ``crashed`` (counts an attempt)
  or ``not_attempted`` (wall time, kill);
* ``output_parameters``; and the exit codes 303 (crashed), 310 (SCF not converged), 311
  (structure failed), 320 (terminated or wall time).

``lmlp.label`` (:class:`~aiida_lmlp.workflows.label.LabelWorkChain`) retries, escalates and
drops on that contract alone, whatever the code. Adding a code is one :class:`Labeller` here:

============ ==================================== ============== ==========================
labeller     batch process                        code           extra
============ ==================================== ============== ==========================
``pyscf``    ``lmlp.pyscf`` (one job)             ``lmlp``       (always installed)
``xtb``      ``lmlp.xtb`` (one job)               ``lmlp``       ``aiida-lmlp[xtb]``
``cp2k``     ``lmlp.cp2k_batch`` (a job per       ``cp2k``       ``aiida-lmlp[cp2k]``
             structure, aiida-cp2k)
============ ==================================== ============== ==========================
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiida_lmlp.labelling.protocol import LabelProtocol, ProtocolError, missing_extra

__all__ = ["LABELLERS", "Labeller", "labeller_parameters"]


def _escalate_pyscf(parameters: Mapping[str, Any], retry: int) -> dict[str, Any]:
    # twice the cycles every time, then damping (PySCF damps only before DIIS starts, hence the
    # later DIIS start), then a level shift as well
    steps = (
        {},
        {"damping": 0.5, "diis_start_cycle": 4},
        {"damping": 0.5, "diis_start_cycle": 4, "level_shift": 0.25},
    )
    data = dict(parameters)
    data["max_cycle"] = 2 * int(data.get("max_cycle", 100))
    for key, value in steps[min(retry, len(steps) - 1)].items():
        data[key] = max(data.get(key, 0), value)
    return data


def _escalate_xtb(parameters: Mapping[str, Any], retry: int) -> dict[str, Any]:
    # twice the iterations every time, from the second retry on a gentler mixer
    data = dict(parameters)
    data["max_iterations"] = 2 * int(data.get("max_iterations", 250))
    if retry >= 1:
        data["mixer_damping"] = min(float(data.get("mixer_damping", 0.4)), 0.4 / 2**retry)
    return data


def _escalate_cp2k(parameters: Mapping[str, Any], retry: int) -> dict[str, Any]:
    from aiida_lmlp.labelling.cp2k_input import escalate

    return escalate(parameters, retry)


@dataclass(frozen=True)
class Labeller:
    """One code behind the labeller interface."""

    name: str
    """The labeller's name in specs and protocols, and the input namespace of ``lmlp.label``."""
    process: str
    """``module:Class`` of the batch process."""
    parameters: str
    """``module:Class`` of the settings (``from_dict``, ``from_protocol``, ``protocol``)."""
    escalate: Callable[[Mapping[str, Any], int], dict[str, Any]]
    """Settings of the n-th retry (0-based) of structures whose SCF did not converge."""
    runs_lmlp: bool
    """True when the batch process runs the ``lmlp`` executable (else the code's own executable)."""

    def _load(self, path: str) -> Any:
        module, name = path.split(":")
        return getattr(importlib.import_module(module), name)

    def process_class(self) -> type:
        """The batch process class (importing it needs no optional extra)."""
        return self._load(self.process)

    def parameters_class(self) -> type:
        """The settings class."""
        return self._load(self.parameters)

    def missing(self) -> str | None:
        """Why this labeller cannot run here, naming the pip extra; None when it can."""
        return missing_extra(self.name)


LABELLERS: dict[str, Labeller] = {
    "pyscf": Labeller(
        "pyscf",
        "aiida_lmlp.calculations.pyscf:PyscfCalculation",
        "aiida_lmlp.labelling.pyscf_single_points:PyscfParameters",
        _escalate_pyscf,
        runs_lmlp=True,
    ),
    "xtb": Labeller(
        "xtb",
        "aiida_lmlp.calculations.xtb:XtbCalculation",
        "aiida_lmlp.labelling.xtb_single_points:XtbParameters",
        _escalate_xtb,
        runs_lmlp=True,
    ),
    "cp2k": Labeller(
        "cp2k",
        "aiida_lmlp.workflows.labellers.cp2k:Cp2kBatchWorkChain",
        "aiida_lmlp.labelling.cp2k_input:Cp2kParameters",
        _escalate_cp2k,
        runs_lmlp=False,
    ),
}
"""Every labeller with an adapter, by name."""


def labeller_parameters(
    labeller: str, protocol: Mapping[str, Any] | None = None, parameters: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The full settings of ``labeller`` for ``protocol`` (generic physics) and ``parameters`` (code settings).

    Without a protocol, ``parameters`` alone (the code's defaults for the rest). Raises
    ``ValueError`` (``ProtocolError`` or the code's ``ParameterError``) naming the key.
    """
    if labeller not in LABELLERS:
        raise ProtocolError(f"labeller {labeller!r} has no adapter (known: {', '.join(LABELLERS)})")
    settings = LABELLERS[labeller].parameters_class()
    if protocol is None:
        return settings.from_dict(dict(parameters or {})).to_dict()
    protocol = dict(protocol)
    if protocol.setdefault("labeller", labeller) != labeller:
        raise ProtocolError(f"protocol 'labeller' is {protocol['labeller']!r}, but the labeller is {labeller!r}")
    if "method" not in protocol:
        protocol["method"] = settings.from_dict({}).protocol().method
    return settings.from_protocol(LabelProtocol.from_dict(protocol), parameters).to_dict()
