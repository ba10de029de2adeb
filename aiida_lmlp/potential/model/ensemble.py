"""HDNNP ensembles with uncertainty: Eckhoff & Reiher (2023) Eqs. 1–2 and 21–23.

An :class:`Ensemble` is a descriptor, one stacked atomic network per element (all members at
once, see :mod:`.networks`) and the free-atom reference energies. Its energy of a structure is

    E_p = Σ_atoms E_atom,p + Σ_atoms E_ref(element)                    (member p, Eq. 1)
    E   = 1/N Σ_p E_p,   F = −1/N Σ_p ∂E_p/∂r                          (Eqs. 21, 22)
    ΔE  = max( RMSE(E), [ c² / (N − 1) Σ_p (E_p − E)² ]^½ )            (Eq. 23)

and analogously ΔF per force component. ``RMSE(E)`` is stored per atom (as the paper reports
it) and multiplied by the number of atoms of the structure; with one member the floor alone
is returned.

**Which RMSE.** The floor (and the campaign's selection thresholds, multiples of it) is the
mean over the members of each member's RMSE on its own test set (:data:`RMSE_MEMBERS_OWN_TEST`),
as the authors' prediction code uses it: data none of that member trained on. The ensemble
mean's RMSE over the union of the members' test sets looks like a test RMSE but is not: every
conformation in that union is training data for about nine of ten members, and on the SN2 data
it is 1.5–2.5× lower than both the members' own test RMSEs and the RMSE on a hold-out no member
trained on. Model files written before the kind was recorded hold that union RMSE; they load
with it unchanged and say so (:attr:`Ensemble.rmse_kind`).

**Reference energies.** ``E_ref(element)`` are free-atom energies given by the user (the paper),
a least-squares fit of the totals, or zero; :attr:`Ensemble.reference_kinds` records which, per
element. Whatever they are, the networks' output biases start at a per-element least-squares
fit of what is left (:meth:`Ensemble.initialize_output_offset`), so a fresh ensemble starts at
the labels instead of several eV/atom away from them (with free-atom references, the
atomisation energy, about −3.4 eV/atom on the SN2 data).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms

from ...formats.elements import validate_elements
from ...formats.errors import ModelFileError
from ..descriptors import descriptor_from_config
from ..descriptors.eeacsf import EeACSF
from ..descriptors.neighbors import DEFAULT_MIN_DISTANCE, graph_tensors
from ..descriptors.symmetry_functions import AtomCenteredDescriptor
from ..model.model_file import read_model_file, write_model_file
from ..model.networks import StackedAtomicNetworks

__all__ = [
    "RMSE_ENSEMBLE_TEST_UNION",
    "RMSE_MEMBERS_OWN_TEST",
    "REFERENCE_KINDS",
    "Ensemble",
    "EnsemblePrediction",
]

#: ``rmse_kind`` of a model whose RMSE floor is the mean of the members' own test RMSEs.
RMSE_MEMBERS_OWN_TEST = "members_own_test_mean"
#: ``rmse_kind`` of model files written before the kind was recorded: the ensemble mean's RMSE over
#: the union of the members' test sets (training data of most members; too low as an error estimate).
RMSE_ENSEMBLE_TEST_UNION = "ensemble_test_union"
#: what a reference energy is: given by the user as a free-atom energy, fitted to the totals, or zero
REFERENCE_KINDS = ("free_atom", "least_squares", "none")

PAPER_HIDDEN = (102, 61, 44)

#: From this many angular triplets in a batch on, per-member forces use the explicit descriptor
#: Jacobian; below it, one vectorised backward pass per member costs less than building the
#: Jacobian. Measured with 10 members (benchmarks/per_member_paths.py, 2026-11-27, two runs):
#: the backward passes win at 1 SN2 conformation (105 triplets, 1.2-1.3x), the Jacobian from
#: 4 (375 triplets, 1.08-1.09x) on; 200 SN2 conformations 1.7-2.0x, fcc Cu at 4.5 Å 3.7-4.1x.
JACOBIAN_MIN_TRIPLETS = 256


@dataclass
class EnsemblePrediction:
    """Predictions for a batch of ``S`` structures with ``A`` atoms in all (eV, Å)."""

    energy: np.ndarray  # (S,) ensemble mean, eV
    energy_members: np.ndarray  # (M, S)
    energy_uncertainty: np.ndarray  # (S,) ΔE of Eq. 23, eV
    atomic_energies: np.ndarray  # (A,) ensemble mean incl. the reference energy, eV
    structure: np.ndarray  # (A,) structure index of every atom
    forces: np.ndarray | None = None  # (A, 3) eV/Å
    forces_members: np.ndarray | None = None  # (M, A, 3)
    forces_uncertainty: np.ndarray | None = None  # (A, 3) ΔF per component, eV/Å
    stress: np.ndarray | None = None  # (S, 3, 3) eV/Å³, (1/V) ∂E/∂ε

    def atoms_of(self, index: int) -> slice:
        """Slice of the per-atom arrays that belongs to structure ``index``."""
        where = np.nonzero(self.structure == index)[0]
        return slice(int(where[0]), int(where[-1]) + 1)


def _optional_float(value) -> float | None:
    return None if value is None else float(value)


def _optional_list(values) -> list[float] | None:
    return None if values is None else [float(v) for v in values]


def _sample_std(values: torch.Tensor) -> torch.Tensor:
    """Sample standard deviation over the member axis 0 (zero for a single member)."""
    if values.shape[0] < 2:
        return torch.zeros_like(values[0])
    return values.std(0, unbiased=True)


class Ensemble(torch.nn.Module):
    """An ensemble of HDNNPs sharing one descriptor, evaluated with stacked weights."""

    def __init__(
        self,
        descriptor: AtomCenteredDescriptor,
        networks: StackedAtomicNetworks,
        reference_energies: Mapping[str, float],
        *,
        uncertainty_scale: float = 2.0,
        rmse_energy_per_atom: float = 0.0,
        rmse_forces: float = 0.0,
        first_test_rmse_energy_per_atom: float | None = None,
        first_test_rmse_forces: float | None = None,
        rmse_kind: str = RMSE_MEMBERS_OWN_TEST,
        member_test_rmse_energy_per_atom: Sequence[float] | None = None,
        member_test_rmse_forces: Sequence[float] | None = None,
        reference_kinds: Mapping[str, str] | None = None,
        standardization: str = "relative",
        output_offsets: Mapping[str, Sequence[float]] | None = None,
    ):
        super().__init__()
        if list(descriptor.elements) != list(networks.elements):
            raise ValueError(
                f"descriptor elements {list(descriptor.elements)} differ from network elements {networks.elements}"
            )
        missing = [e for e in networks.elements if e not in reference_energies]
        if missing:
            raise ValueError(f"reference energies missing for element(s) {', '.join(missing)}")
        if uncertainty_scale <= 0:
            raise ValueError(f"uncertainty_scale c must be positive, got {uncertainty_scale}")
        self.descriptor = descriptor
        self.networks = networks
        self.reference_energies = {e: float(reference_energies[e]) for e in networks.elements}
        self.uncertainty_scale = float(uncertainty_scale)
        self.rmse_energy_per_atom = float(rmse_energy_per_atom)
        self.rmse_forces = float(rmse_forces)
        #: Ensemble RMSEs on the test conformations of the model's first training session, which stay
        #: test data in every later session: unlike the test RMSE above, whose test set grows with
        #: the data, comparable across the versions of a lifelong campaign (None when unknown).
        self.first_test_rmse_energy_per_atom = _optional_float(first_test_rmse_energy_per_atom)
        self.first_test_rmse_forces = _optional_float(first_test_rmse_forces)
        #: what ``rmse_energy_per_atom`` and ``rmse_forces`` are: :data:`RMSE_MEMBERS_OWN_TEST` (the
        #: mean of the members' own test RMSEs below) or, for older files, :data:`RMSE_ENSEMBLE_TEST_UNION`
        self.rmse_kind = str(rmse_kind)
        #: every member's RMSE on its own test set (eV/atom, eV/Å), None when not recorded
        self.member_test_rmse_energy_per_atom = _optional_list(member_test_rmse_energy_per_atom)
        self.member_test_rmse_forces = _optional_list(member_test_rmse_forces)
        #: element -> one of :data:`REFERENCE_KINDS`; empty for model files that predate the record
        self.reference_kinds = {e: str(k) for e, k in (reference_kinds or {}).items()}
        if standardization not in ("relative", "paper"):
            raise ValueError(f"standardization must be relative or paper, got {standardization!r}")
        #: how α and β of the standardisation are parametrised (see :mod:`.networks`)
        self.standardization = standardization
        #: element -> every member's initial output bias (eV/atom) from :meth:`initialize_output_offset`
        self.output_offsets = {e: [float(v) for v in o] for e, o in (output_offsets or {}).items()}
        #: Tensors and settings of a training run stored with the model (see :meth:`save`).
        self.training_state: dict[str, torch.Tensor] = {}
        self.training_config: dict = {}
        self.content_sha256: str | None = None

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def new(
        cls,
        elements: Sequence[str],
        descriptor: AtomCenteredDescriptor | None = None,
        members: int = 10,
        hidden: Sequence[int] = PAPER_HIDDEN,
        reference_energies: Mapping[str, float] | None = None,
        seed: int = 0,
        *,
        uncertainty_scale: float = 2.0,
        dtype: torch.dtype = torch.float64,
        member_offset: int = 0,
        reference_kind: str | None = None,
        standardization: str = "relative",
    ) -> Ensemble:
        """A freshly initialised ensemble.

        ``descriptor`` defaults to :meth:`EeACSF.from_paper`; ``reference_energies`` (eV per
        free atom) default to zero, i.e. the networks learn total energies. ``reference_kind``
        (one of :data:`REFERENCE_KINDS`) says what they are: by default ``free_atom`` when given,
        ``none`` otherwise. Each member gets its own initial weights from ``seed`` and its index;
        ``member_offset`` numbers the members of this ensemble from there (members of one
        ensemble trained in several jobs). ``standardization``: see :mod:`.networks`.
        """
        elements = validate_elements(elements)
        if descriptor is None:
            descriptor = EeACSF.from_paper(elements)
        if list(descriptor.elements) != list(elements):
            descriptor = descriptor.with_elements(elements)
        if reference_kind is None:
            reference_kind = "none" if reference_energies is None else "free_atom"
        if reference_kind not in REFERENCE_KINDS:
            raise ValueError(f"reference_kind must be one of {', '.join(REFERENCE_KINDS)}, got {reference_kind!r}")
        if reference_energies is None:
            reference_energies = {e: 0.0 for e in elements}
        networks = StackedAtomicNetworks(
            elements, len(descriptor), hidden, members, seed=seed, member_offset=member_offset
        )
        model = cls(
            descriptor,
            networks,
            reference_energies,
            uncertainty_scale=uncertainty_scale,
            reference_kinds={e: reference_kind for e in elements},
            standardization=standardization,
        )
        return model.to(dtype)

    @property
    def elements(self) -> list[str]:
        """Elements the model has atomic networks for."""
        return list(self.networks.elements)

    @property
    def members(self) -> int:
        """Number of ensemble members."""
        return self.networks.members

    @property
    def dtype(self) -> torch.dtype:
        """Floating-point type of the weights."""
        return next(self.networks.parameters()).dtype

    @property
    def device(self) -> torch.device:
        """Device of the weights."""
        return next(self.networks.parameters()).device

    def add_element(self, element: str, reference_energy: float, reference_kind: str = "free_atom") -> None:
        """Add an element: a new atomic network per member; existing networks stay unchanged.

        Only possible with a descriptor whose length does not depend on the elements (eeACSF).
        The new network's standardisation and output offset start at α = 1, β = 0 and zero
        until :meth:`initialize_standardization` and :meth:`initialize_output_offset` are called
        for it (as continued training does, see :func:`~aiida_lmlp.potential.training.trainer.add_new_elements`).
        """
        if reference_kind not in REFERENCE_KINDS:
            raise ValueError(f"reference_kind must be one of {', '.join(REFERENCE_KINDS)}, got {reference_kind!r}")
        validate_elements(self.elements + [element])
        new_descriptor = self.descriptor.with_elements(self.elements + [element])
        if len(new_descriptor) != len(self.descriptor):
            raise ValueError(
                f"cannot add {element}: the {self.descriptor.kind} vector would grow from "
                f"{len(self.descriptor)} to {len(new_descriptor)} entries and change every network's input"
            )
        self.descriptor = new_descriptor.to(self.device)
        self.networks.add_element(element)
        self.reference_energies[element] = float(reference_energy)
        if self.reference_kinds:
            self.reference_kinds[element] = reference_kind

    @classmethod
    def gather(cls, models: Sequence[Ensemble]) -> Ensemble:
        """One ensemble from models trained as consecutive member blocks (``member_offset``) in several jobs.

        Weights are stacked along the member axis; descriptor, elements, networks, reference
        energies and offsets must fit together. Training state is merged by
        :func:`aiida_lmlp.potential.training.trainer.gather_trained`.
        """
        models = sorted(models, key=lambda m: m.networks.member_offset)
        first = models[0]
        expected = first.networks.member_offset
        for model in models:
            for what in ("elements", "reference_energies"):
                if getattr(model, what) != getattr(first, what):
                    raise ValueError(f"cannot gather models with different {what}")
            if model.descriptor.to_config() != first.descriptor.to_config():
                raise ValueError("cannot gather models with different descriptors")
            if model.networks.hidden != first.networks.hidden or model.networks.seed != first.networks.seed:
                raise ValueError("cannot gather models with different networks or seeds")
            if model.networks.member_offset != expected:
                raise ValueError(
                    f"member blocks do not follow each other: expected offset {expected}, "
                    f"got {model.networks.member_offset}"
                )
            expected += model.members
        networks = StackedAtomicNetworks(
            first.elements,
            len(first.descriptor),
            first.networks.hidden,
            expected - first.networks.member_offset,
            seed=first.networks.seed,
            member_offset=first.networks.member_offset,
        ).to(first.dtype)
        target = networks.state_dict()
        states = [m.networks.state_dict() for m in models]
        networks.load_state_dict({name: torch.cat([s[name].to(t) for s in states]) for name, t in target.items()})
        energy, forces = _joined(models, "member_test_rmse_energy_per_atom"), _joined(models, "member_test_rmse_forces")
        kind = first.rmse_kind if energy is None or forces is None else RMSE_MEMBERS_OWN_TEST
        offsets = {e: [v for m in models for v in m.output_offsets.get(e, [])] for e in first.output_offsets}
        return cls(
            first.descriptor,
            networks,
            first.reference_energies,
            uncertainty_scale=first.uncertainty_scale,
            # the mean of all members' own test RMSEs; a block's own value when some block lacks them
            rmse_energy_per_atom=first.rmse_energy_per_atom if energy is None else float(np.mean(energy)),
            rmse_forces=first.rmse_forces if forces is None else float(np.mean(forces)),
            first_test_rmse_energy_per_atom=first.first_test_rmse_energy_per_atom,
            first_test_rmse_forces=first.first_test_rmse_forces,
            rmse_kind=kind,
            member_test_rmse_energy_per_atom=energy,
            member_test_rmse_forces=forces,
            reference_kinds=first.reference_kinds,
            standardization=first.standardization,
            output_offsets=offsets,
        )

    def set_test_rmses(self, energy_per_atom: Sequence[float], forces: Sequence[float]) -> None:
        """Record every member's RMSE on its own test set; the floor of Eq. 23 becomes their mean.

        Non-finite values (a member without test data) are left out of the mean; with none
        finite the floor is 0.
        """
        self.member_test_rmse_energy_per_atom = [float(v) for v in energy_per_atom]
        self.member_test_rmse_forces = [float(v) for v in forces]
        finite_e = [v for v in self.member_test_rmse_energy_per_atom if math.isfinite(v)]
        finite_f = [v for v in self.member_test_rmse_forces if math.isfinite(v)]
        self.rmse_energy_per_atom = float(np.mean(finite_e)) if finite_e else 0.0
        self.rmse_forces = float(np.mean(finite_f)) if finite_f else 0.0
        self.rmse_kind = RMSE_MEMBERS_OWN_TEST

    # -- standardisation -------------------------------------------------------------------

    def descriptors_of(self, structures: Sequence[Atoms], **graph_options) -> tuple[torch.Tensor, torch.Tensor]:
        """Descriptor matrix ``(A, G)`` and species ``(A,)`` of a batch, without gradients."""
        t = graph_tensors(structures, self.elements, self.descriptor.cutoff, self.device, self.dtype, **graph_options)
        with torch.no_grad():
            return self.descriptor(t["positions"], t["cells"], t), t["species"]

    def initialize_standardization(self, structures: Sequence[Atoms], elements: Sequence[str] | None = None) -> None:
        """Initialise α, β of every (or the given) element's networks from ``structures`` (Section 2.1)."""
        values, species = self.descriptors_of(structures)
        for k, element in enumerate(self.elements):
            if elements is not None and element not in elements:
                continue
            rows = values[species == k]
            if rows.shape[0] == 0:
                continue
            self.networks.networks[element].set_standardization(rows, self.standardization)

    def initialize_output_offset(
        self, structures: Sequence[Atoms], energies: Sequence[float], elements: Sequence[str] | None = None
    ) -> dict[str, list[float]]:
        """Shift the output bias of every (or the given) element's networks to fit ``energies`` (eV) on average.

        Per member p, the shifts ``b_e`` solve ``min Σ_s (E_s − E_ref,s − E_p,s − Σ_e N_s,e b_e)²``
        in float64 (least squares over the structures that contain one of the elements; the
        minimum-norm solution where the compositions do not determine every element), with
        ``E_p,s`` the member's current prediction without the reference energies. After it
        every member's mean error over ``structures`` is zero for a fixed composition, and the
        least-squares best per-element constant otherwise. Elements not chosen keep their
        networks; call it before training, after :meth:`initialize_standardization`.
        Returns the shifts, element -> per member, which are also recorded in :attr:`output_offsets`.
        """
        chosen = list(self.elements if elements is None else elements)
        columns = [self.elements.index(e) for e in chosen]
        structures = list(structures)
        energies = np.asarray(energies, dtype=np.float64)
        if len(structures) != energies.shape[0]:
            raise ValueError(f"{len(structures)} structures but {energies.shape[0]} energies")
        counts = np.array([[a.get_chemical_symbols().count(e) for e in self.elements] for a in structures], float)
        rows = counts[:, columns].sum(1) > 0
        if not rows.any():
            return {}
        t = graph_tensors(structures, self.elements, self.descriptor.cutoff, self.device, self.dtype)
        with torch.no_grad():
            values = self.descriptor(t["positions"], t["cells"], t)
            atomic = self.networks(values, t["species"])  # (M, A)
            predicted = atomic.new_zeros(self.members, len(structures)).index_add_(1, t["structure"], atomic)
        references = counts @ np.array([self.reference_energies[e] for e in self.elements], dtype=np.float64)
        residual = (energies - references)[None, :] - predicted.double().cpu().numpy()  # (M, S), float64
        solution, *_ = np.linalg.lstsq(counts[rows][:, columns], residual[:, rows].T, rcond=None)  # (E', M)
        shifts = {}
        with torch.no_grad():
            for row, element in zip(solution, chosen):
                bias = self.networks.networks[element].biases[-1]  # (M, 1)
                bias.add_(torch.as_tensor(row, dtype=bias.dtype, device=bias.device)[:, None])
                shifts[element] = [float(v) for v in row]
        self.output_offsets.update(shifts)
        return shifts

    # -- evaluation ------------------------------------------------------------------------

    def evaluate(
        self,
        structures: Atoms | Sequence[Atoms],
        *,
        forces: bool = True,
        member_forces: bool = True,
        stress: bool = False,
        min_distance: float = DEFAULT_MIN_DISTANCE,
        allow_self_images: bool = False,
    ) -> EnsemblePrediction:
        """Energies, forces, uncertainties (and stress) of one or several structures.

        ``member_forces=False`` skips the per-member forces and ΔF (one gradient pass instead
        of one per member); the mean forces are the same.
        """
        if isinstance(structures, Atoms):
            structures = [structures]
        t = graph_tensors(
            structures,
            self.elements,
            self.descriptor.cutoff,
            self.device,
            self.dtype,
            min_distance=min_distance,
            allow_self_images=allow_self_images,
        )
        n_structures, n_atoms = t["n_structures"], t["species"].shape[0]
        structure = t["structure"]
        need_grad = forces or stress
        per_member = need_grad and member_forces and self.members > 1
        reference = torch.as_tensor(
            [self.reference_energies[e] for e in self.elements], dtype=self.dtype, device=self.device
        )[t["species"]]  # (A,)
        if per_member and t["triplets"].shape[0] >= JACOBIAN_MIN_TRIPLETS:
            # M gradients through an explicit Jacobian of the descriptor sums (built once), so
            # each member costs small contractions instead of a backward pass through the descriptor
            jacobian = self.descriptor.sums_and_jacobian(t["positions"], t["cells"], t)
            descriptors = self.descriptor.values_from_sums(jacobian.radial, jacobian.angular, jacobian.slots)  # (A, G)
            atomic, d_energy = self.networks.energies_and_input_gradients(descriptors, t["species"])  # (M, A, G)
            atomic = atomic + reference  # (M, A)
            energy_members = atomic.new_zeros(self.members, n_structures).index_add(1, structure, atomic)
            pair_gradients = self.descriptor.value_pair_gradients(jacobian, t, descriptors, d_energy)  # (M, P, 3)
            vectors = jacobian.vectors
        else:
            # one backward pass through the descriptor, for the mean energy (or, for small
            # batches, one per member, vectorised); the energy depends on positions and cell
            # only through the pair vectors
            vectors = self.descriptor.pair_vectors(t["positions"], t["cells"], t).requires_grad_(need_grad)
            slots = self.descriptor.bucket_slots(t, n_atoms)
            with torch.enable_grad():
                radial, angular = self.descriptor.sums_from_vectors(vectors, t, n_atoms, slots)
                descriptors = self.descriptor.values_from_sums(radial, angular, slots)  # (A, G)
                leaf = descriptors
                if per_member:
                    leaf = descriptors.detach().unsqueeze(0).expand(self.members, -1, -1).clone().requires_grad_()
                atomic = self.networks(leaf, t["species"]) + reference  # (M, A)
                energy_members = atomic.new_zeros(self.members, n_structures).index_add(1, structure, atomic)
                if per_member:
                    (d_energy,) = torch.autograd.grad(energy_members.sum(), leaf)  # (M, A, G)
                    (pair_gradients,) = torch.autograd.grad(
                        descriptors, vectors, grad_outputs=d_energy, is_grads_batched=True
                    )  # (M, P, 3)
                elif need_grad:
                    (pair_gradients,) = torch.autograd.grad(energy_members.mean(0).sum(), vectors)
                    pair_gradients = pair_gradients.unsqueeze(0)  # (1, P, 3)
        energy = energy_members.mean(0).detach()
        counts = torch.bincount(structure, minlength=n_structures).to(self.dtype)
        c = self.uncertainty_scale
        energy_unc = torch.maximum(self.rmse_energy_per_atom * counts, c * _sample_std(energy_members.detach()))
        prediction = EnsemblePrediction(
            energy=energy.cpu().numpy(),
            energy_members=energy_members.detach().cpu().numpy(),
            energy_uncertainty=energy_unc.cpu().numpy(),
            atomic_energies=atomic.mean(0).detach().cpu().numpy(),
            structure=structure.cpu().numpy(),
        )
        if not need_grad:
            return prediction
        if forces:
            force_members = pair_gradients.new_zeros(pair_gradients.shape[0], n_atoms, 3)
            force_members.index_add_(1, t["centers"], pair_gradients)
            force_members.index_add_(1, t["neighbors"], -pair_gradients)  # F = −∂E/∂x, v = x_j − x_i + …
            prediction.forces = force_members.mean(0).cpu().numpy()
            if per_member or self.members == 1:
                prediction.forces_members = force_members.cpu().numpy()
                floor = torch.full_like(force_members[0], self.rmse_forces)
                prediction.forces_uncertainty = torch.maximum(floor, c * _sample_std(force_members)).cpu().numpy()
        if stress:
            # σ = (1/V) ∂E/∂ε = (1/V) Σ_pairs v ⊗ ∂E/∂v (the energy depends on positions only through v)
            virial = torch.einsum("pi,pj->pij", vectors.detach(), pair_gradients.mean(0))
            per_structure = virial.new_zeros(n_structures, 3, 3).index_add_(0, structure[t["centers"]], virial)
            per_structure = 0.5 * (per_structure + per_structure.transpose(1, 2))
            volumes = torch.linalg.det(t["cells"]).abs()
            prediction.stress = (per_structure / volumes[:, None, None]).cpu().numpy()
        return prediction

    # -- persistence ------------------------------------------------------------------------

    def config(self) -> dict:
        """Everything but the tensors, as stored in the model file."""
        return {
            "descriptor": self.descriptor.to_config(),
            "elements": self.elements,
            "members": self.members,
            "hidden": list(self.networks.hidden),
            "seed": self.networks.seed,
            "member_offset": self.networks.member_offset,
            "activation": "1.59223*tanh",
            "reference_energies": self.reference_energies,
            "uncertainty_scale": self.uncertainty_scale,
            "rmse_energy_per_atom": self.rmse_energy_per_atom,
            "rmse_forces": self.rmse_forces,
            "first_test_rmse_energy_per_atom": self.first_test_rmse_energy_per_atom,
            "first_test_rmse_forces": self.first_test_rmse_forces,
            "rmse_kind": self.rmse_kind,
            "member_test_rmse_energy_per_atom": self.member_test_rmse_energy_per_atom,
            "member_test_rmse_forces": self.member_test_rmse_forces,
            "reference_kinds": self.reference_kinds,
            "standardization": self.standardization,
            "output_offsets": self.output_offsets,
            "dtype": str(self.dtype).removeprefix("torch."),
            "units": {"energy": "eV", "length": "Angstrom", "forces": "eV/Angstrom"},
            "training": self.training_config,
        }

    def save(self, path: str | os.PathLike) -> str:
        """Write the model (and any training state) to ``path`` atomically; returns the content SHA-256."""
        tensors = {f"networks.{name}": p for name, p in self.networks.state_dict().items()}
        tensors.update({f"training.{name}": t for name, t in self.training_state.items()})
        self.content_sha256 = write_model_file(path, self.config(), tensors)
        return self.content_sha256

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str = "cpu") -> Ensemble:
        """Read a model written by :meth:`save`; raises :class:`ModelFileError` if it is damaged."""
        config, tensors, sha = read_model_file(path)
        try:
            descriptor = descriptor_from_config(config["descriptor"])
            networks = StackedAtomicNetworks(
                config["elements"],
                len(descriptor),
                config["hidden"],
                config["members"],
                seed=config["seed"],
                member_offset=config.get("member_offset", 0),
            )
            dtype = getattr(torch, config["dtype"])
            networks.to(dtype)
            state = {name.removeprefix("networks."): t for name, t in tensors.items() if name.startswith("networks.")}
            if "standardization" not in config:
                state = _state_before_relative_standardization(state)
            networks.load_state_dict(state, strict=True)
            model = cls(
                descriptor,
                networks,
                config["reference_energies"],
                uncertainty_scale=config["uncertainty_scale"],
                rmse_energy_per_atom=config["rmse_energy_per_atom"],
                rmse_forces=config["rmse_forces"],
                first_test_rmse_energy_per_atom=config.get("first_test_rmse_energy_per_atom"),
                first_test_rmse_forces=config.get("first_test_rmse_forces"),
                # files without the kind hold the ensemble RMSE over the union of the test sets
                rmse_kind=config.get("rmse_kind", RMSE_ENSEMBLE_TEST_UNION),
                member_test_rmse_energy_per_atom=config.get("member_test_rmse_energy_per_atom"),
                member_test_rmse_forces=config.get("member_test_rmse_forces"),
                reference_kinds=config.get("reference_kinds"),
                standardization=config.get("standardization", "paper"),
                output_offsets=config.get("output_offsets"),
            )
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise ModelFileError(f"model file {path} has an inconsistent content: {error}") from None
        model.training_config = config.get("training", {})
        model.training_state = {
            name.removeprefix("training."): t for name, t in tensors.items() if name.startswith("training.")
        }
        model.content_sha256 = sha
        return model.to(device)


def _state_before_relative_standardization(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Network tensors of a file written before α, β were parametrised relative to their start.

    Such files hold α and β of Eq. 2 as ``alpha``, ``beta``: they become ``scale`` and ``shift``
    with α₀ = 1 and β₀ = 0 (the ``paper`` parametrisation), which computes exactly the same.
    """
    converted = {}
    for name, tensor in state.items():
        stem, _, leaf = name.rpartition(".")
        if leaf == "alpha":
            converted[f"{stem}.scale"] = tensor
            converted[f"{stem}.scale0"] = torch.ones_like(tensor)
        elif leaf == "beta":
            converted[f"{stem}.shift"] = tensor
            converted[f"{stem}.shift0"] = torch.zeros_like(tensor)
        else:
            converted[name] = tensor
    return converted


def _joined(models: Sequence[Ensemble], what: str) -> list[float] | None:
    parts = [getattr(m, what) for m in models]
    if any(p is None or len(p) != m.members for p, m in zip(parts, models)):
        return None
    return [v for p in parts for v in p]
