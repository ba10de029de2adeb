"""Many ASE simulations in lockstep, their force calls batched into one ensemble evaluation.

An exploration runs tens of trajectories of small molecules. Evaluated one at a time, each
step costs a whole :meth:`Ensemble.evaluate` call whose fixed cost (neighbour list, tensor
set-up, ten networks) dwarfs the work for a few atoms; the same call on fifty structures
costs only a few times more (``benchmarks/exploration_lockstep.py``).

ASE's integrators and optimisers ask their calculator for forces in the middle of a step, so
they cannot hand over a batch themselves. Here every simulation runs unchanged, with ASE's own
Langevin, BFGS, FIRE or NEB, in a greenlet (a coroutine on the same thread, `greenlet
<https://greenlet.readthedocs.io>`_). Its :class:`LockstepCalculator` does not evaluate: it
hands the structure to the :class:`Lockstep` hub and waits. Once every simulation waits for
forces or has finished, the hub evaluates all waiting structures in one call and resumes the
simulations in their order. Only one greenlet runs at a time, so what the simulations do
between force calls (recording frames, say) happens in a fixed order: the run is
deterministic and independent of timing.

Other per-structure work can be batched the same way: :meth:`Lockstep.call` gathers what the
simulations hand to one function in a round (exploration: the fingerprints of recorded frames).

A structure the model cannot handle fails only its own simulation: when a batch raises, its
structures are evaluated one by one and the error goes to the simulation that caused it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from greenlet import greenlet

from ...formats.errors import StructureError
from ..model.calculator import LmlpCalculator
from ..model.ensemble import Ensemble

__all__ = ["BATCH_ATOMS", "Lockstep", "LockstepCalculator"]

#: At most this many atoms in one batched evaluation: larger batches gain little per atom and
#: only hold more memory (a few 1000-atom periodic boxes are evaluated one by one).
BATCH_ATOMS = 4096

#: Errors of one structure's evaluation that end only its own simulation.
_STRUCTURE_ERRORS = (StructureError, ValueError, FloatingPointError, RuntimeError)


class LockstepCalculator(LmlpCalculator):
    """An :class:`LmlpCalculator` whose evaluations are batched by a :class:`Lockstep` hub.

    Use it only inside a simulation that :meth:`Lockstep.run` runs; its results are those of
    :class:`LmlpCalculator` for the same structure (up to the rounding of a batched evaluation).
    """

    def __init__(self, hub: Lockstep, **kwargs):
        super().__init__(hub.model, **kwargs)
        self.hub = hub

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        """Hand the structure to the hub, wait for the batch, and fill :attr:`results`."""
        Calculator.calculate(self, atoms, properties, system_changes)
        (reply,) = self.hub.request([self])
        if isinstance(reply, BaseException):
            raise reply
        self.set_results(*reply, properties)


class Lockstep:
    """Runs simulations in lockstep and evaluates their structures together with ``model``.

    ``batch_atoms`` caps the atoms of one evaluation; ``batch_atoms=1`` evaluates every
    structure on its own (the cost of running the simulations one after another).
    """

    def __init__(self, model: Ensemble, *, batch_atoms: int = BATCH_ATOMS):
        if batch_atoms < 1:
            raise ValueError(f"batch_atoms must be at least 1, got {batch_atoms}")
        self.model = model
        self.batch_atoms = batch_atoms
        self.evaluations = 0  # Ensemble.evaluate calls made, for tests and benchmarks
        self.structures_evaluated = 0
        self._hub: greenlet | None = None

    def calculator(self, **kwargs) -> LockstepCalculator:
        """A calculator for one simulation of :meth:`run` (``LmlpCalculator`` options as keywords)."""
        return LockstepCalculator(self, **kwargs)

    def request(self, calculators: list[LockstepCalculator]) -> list[Any]:
        """From a simulation: wait for the batched evaluation of every ``calculator.atoms``.

        Returns ``(prediction, index)`` or the exception for each calculator, in order.
        """
        return self.call(self._evaluate, calculators)

    def call(self, batch: Callable[[list], list], items: Sequence) -> list:
        """From a simulation: ``batch(items)``, in one call with what other simulations give ``batch`` this round.

        ``batch`` maps a list of items to the list of their results, in order (the descriptor
        fingerprints of recorded frames, say). If the call on everyone's items raises, each
        simulation's items go to ``batch`` on their own, and a simulation whose own call raises
        gets that exception here.
        """
        if self._hub is None or greenlet.getcurrent() is self._hub:
            raise RuntimeError("a LockstepCalculator evaluates only inside a simulation of Lockstep.run")
        reply = self._hub.switch((batch, list(items)))
        if isinstance(reply, _Failed):
            raise reply.error
        return reply

    def prefetch(self, images: Sequence[Atoms], properties=("energy", "forces")) -> None:
        """From a simulation: evaluate the structures of ``images`` that need it in one request.

        For a simulation that asks for several structures in turn (the images of a nudged
        elastic band): they join the same batch instead of one round each. Afterwards their
        calculators hold the results, so the simulation's own calls find them. A structure the
        model cannot handle is left unevaluated: the simulation's own call meets the error.
        """
        pending = []
        for atoms in images:
            calculator = atoms.calc
            if not isinstance(calculator, LockstepCalculator) or calculator.hub is not self:
                continue
            changes = calculator.check_state(atoms)
            if changes or any(name not in calculator.results for name in properties):
                calculator.results = {}
                Calculator.calculate(calculator, atoms, list(properties), changes or all_changes)
                pending.append(calculator)
        if not pending:
            return
        for calculator, reply in zip(pending, self.request(pending)):
            if isinstance(reply, BaseException):
                calculator.atoms = None  # evaluated again, alone, by the simulation's own call
                continue
            calculator.set_results(*reply, properties)

    def run(
        self,
        simulations: Sequence[Callable[[], Any]],
        on_finished: Callable[[int, Any], None] | None = None,
    ) -> list[Any]:
        """Run every simulation to its end and return their return values, in order.

        ``on_finished(index, value)`` is called, in the hub, as soon as simulation ``index``
        returns. An exception a simulation does not catch ends the whole run (the other
        simulations are abandoned) and propagates.
        """
        if self._hub is not None:
            raise RuntimeError("Lockstep.run is already running")
        self._hub = greenlet.getcurrent()
        values: list[Any] = [None] * len(simulations)
        waiting: dict[int, tuple[Callable[[list], list], list]] = {}
        runners = [greenlet(simulation) for simulation in simulations]

        def advance(index: int, *reply: Any) -> None:
            message = runners[index].switch(*reply)  # no reply: start the simulation
            if runners[index].dead:
                values[index] = message
                if on_finished is not None:
                    on_finished(index, message)
            else:
                waiting[index] = message

        try:
            for index in range(len(runners)):
                advance(index)
            while waiting:
                requests = {index: waiting.pop(index) for index in sorted(waiting)}
                for index, reply in self._serve(requests).items():
                    advance(index, reply)
        finally:
            self._hub = None
        return values

    def _serve(self, requests: dict[int, tuple[Callable[[list], list], list]]) -> dict[int, Any]:
        """The reply to every waiting simulation: one call per batch function on everyone's items."""
        replies: dict[int, Any] = {}
        groups: dict[Callable[[list], list], list[int]] = {}
        for index, (batch, _) in requests.items():
            groups.setdefault(batch, []).append(index)
        for batch, members in groups.items():
            try:
                results = batch([item for index in members for item in requests[index][1]])
            except _STRUCTURE_ERRORS as error:
                for index in members:  # find whose items failed; the others still get theirs
                    try:
                        replies[index] = batch(requests[index][1]) if len(members) > 1 else _Failed(error)
                    except _STRUCTURE_ERRORS as own:
                        replies[index] = _Failed(own)
                continue
            start = 0
            for index in members:
                count = len(requests[index][1])
                replies[index] = results[start : start + count]
                start += count
        return dict(sorted(replies.items()))

    def _evaluate(self, calculators: list[LockstepCalculator]) -> list[Any]:
        """``(prediction, index)`` or the exception for every calculator's structure, batched."""
        replies: list[Any] = [None] * len(calculators)
        groups: dict[tuple, list[int]] = {}
        for k, calculator in enumerate(calculators):
            key = tuple(sorted(calculator.evaluate_options(calculator.atoms).items()))
            groups.setdefault(key, []).append(k)
        for key, members in groups.items():
            options = dict(key)
            for chunk in self._chunks(members, calculators):
                structures = [calculators[k].atoms for k in chunk]
                try:
                    prediction = self._call(structures, options)
                except _STRUCTURE_ERRORS as error:
                    if len(chunk) == 1:
                        replies[chunk[0]] = error
                        continue
                    for k in chunk:  # find the structure that failed; the others still get theirs
                        try:
                            replies[k] = (self._call([calculators[k].atoms], options), 0)
                        except _STRUCTURE_ERRORS as single:
                            replies[k] = single
                    continue
                for position, k in enumerate(chunk):
                    replies[k] = (prediction, position)
        return replies

    def _call(self, structures: list[Atoms], options: dict):
        self.evaluations += 1
        self.structures_evaluated += len(structures)
        return self.model.evaluate(structures, **options)

    def _chunks(self, members: list[int], calculators: list[LockstepCalculator]) -> list[list[int]]:
        chunks: list[list[int]] = []
        atoms = 0
        for k in members:
            size = len(calculators[k].atoms)
            if chunks and atoms + size <= self.batch_atoms:
                chunks[-1].append(k)
                atoms += size
            else:
                chunks.append([k])
                atoms = size
        return chunks


class _Failed:
    """A batch call's exception, as the reply to the simulation whose items caused it."""

    def __init__(self, error: BaseException):
        self.error = error
