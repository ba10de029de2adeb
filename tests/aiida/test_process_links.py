"""Links of a process's new nodes: aiida-core's checks without the cycle query that cannot find anything."""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.common import exceptions
from aiida.common.links import LinkType
from aiida.engine import WorkChain, calcfunction, run_get_node
from aiida.orm.nodes.links import NodeLinks

from aiida_lmlp.overrides.process_links import LinksWithoutVacuousQueries, skip_vacuous_cycle_query


@pytest.fixture
def statements(aiida_profile):
    """Every SQL statement the profile's engine executes while the test runs."""
    from aiida.manage import get_manager
    from sqlalchemy import event

    engine = get_manager().get_profile_storage().get_session().get_bind()
    seen: list[str] = []

    def record(conn, cursor, statement, *args):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


def _cycle_queries(statements: list[str]) -> int:
    # aiida-core's cycle check is the only link check that walks the graph: a recursive query
    return sum("RECURSIVE" in s.upper() for s in statements)


def _unstored_calculation() -> orm.CalculationNode:
    node = orm.CalcFunctionNode()
    node.set_process_type("aiida.calculations:test")
    return node


def test_an_unstored_process_node_gets_its_inputs_without_a_cycle_query(statements):
    source = orm.Int(1).store()
    plain, skipping = _unstored_calculation(), skip_vacuous_cycle_query(_unstored_calculation())

    statements.clear()
    plain.base.links.add_incoming(source, LinkType.INPUT_CALC, "x")
    assert _cycle_queries(statements) == 1  # aiida-core asks; the answer cannot be yes

    statements.clear()
    skipping.base.links.add_incoming(source, LinkType.INPUT_CALC, "x")
    assert _cycle_queries(statements) == 0
    assert [(t.node.pk, t.link_type, t.link_label) for t in skipping.base.links.incoming_cache] == [
        (source.pk, LinkType.INPUT_CALC, "x")
    ]
    skipping.store_all()
    assert skipping.base.links.get_incoming().one().node.pk == source.pk


def _error(links_of, source, link_type, label, prepare=None):
    target = links_of()
    if prepare:
        prepare(target)
    with pytest.raises(Exception) as caught:
        target.base.links.add_incoming(source, link_type, label)
    return type(caught.value), str(caught.value).replace(str(target.uuid), "TARGET")


@pytest.mark.parametrize(
    "case",
    ["duplicate label", "wrong link type", "sealed node", "invalid label"],
)
def test_every_other_check_stays_as_aiida_cores(aiida_profile, case):
    """The same links are refused, with the same error, with and without the cycle query."""
    first, second = orm.Int(1).store(), orm.Int(2).store()

    def duplicate(node):
        node.base.links.add_incoming(first, LinkType.INPUT_CALC, "x")

    cases = {
        "duplicate label": (second, LinkType.INPUT_CALC, "x", duplicate),
        "wrong link type": (first, LinkType.INPUT_WORK, "x", None),
        "sealed node": (first, LinkType.INPUT_CALC, "x", lambda node: node.seal()),
        "invalid label": (first, LinkType.INPUT_CALC, "not a label", None),
    }
    source, link_type, label, prepare = cases[case]
    plain = _error(_unstored_calculation, source, link_type, label, prepare)
    skipping = _error(lambda: skip_vacuous_cycle_query(_unstored_calculation()), source, link_type, label, prepare)
    assert skipping == plain
    assert plain[0] in (ValueError, exceptions.ModificationNotAllowed)


def test_a_stored_node_keeps_the_cycle_check(statements):
    """Once its node is stored, a link goes through aiida-core's checks, the cycle query included."""
    data = orm.Int(5).store()
    consumer = _unstored_calculation()
    consumer.base.links.add_incoming(data, LinkType.INPUT_CALC, "x")
    consumer.store_all()
    skip_vacuous_cycle_query(data)  # the class swap stays on the node after it is stored
    statements.clear()
    with pytest.raises(ValueError, match="cycle"):
        data.base.links.add_incoming(consumer, LinkType.CREATE, "made")  # data -> consumer -> data
    assert _cycle_queries(statements) == 1


def test_a_link_class_with_other_checks_is_left_alone(aiida_profile):
    class Stricter(NodeLinks):
        def validate_incoming(self, source, link_type, link_label):
            raise ValueError("stricter")

    node = orm.Int(1)
    node.base.links.__class__ = Stricter
    skip_vacuous_cycle_query(node)
    assert type(node.base.links) is Stricter


@calcfunction
def _halves(value: orm.Int) -> dict:
    return {"half": orm.Int(value.value // 2), "rest": orm.Int(value.value % 2)}


class _Calls(WorkChain):
    """Takes inputs, calls a calcfunction, returns its outputs and creates none of its own."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("x", valid_type=orm.Int)
        spec.input_namespace("extra", dynamic=True)
        spec.output("half", valid_type=orm.Int)
        spec.outline(cls.call)

    def call(self):
        self.out("half", _halves(self.inputs.x)["half"])


class _CallsLean(LinksWithoutVacuousQueries, _Calls):
    pass


def _graph(node: orm.ProcessNode) -> list[tuple]:
    links = [(t.link_type.value, t.link_label, type(t.node).__name__) for t in node.base.links.get_incoming().all()]
    links += [(t.link_type.value, t.link_label, type(t.node).__name__) for t in node.base.links.get_outgoing().all()]
    return sorted(links)


def test_a_process_with_the_mixin_links_as_aiida_core_does_without_its_cycle_queries(statements):
    """The mixin's work chain has the links of aiida-core's, and skips the cycle query for its inputs;
    only the calcfunction it calls (not a plugin process) still asks for its input and its outputs."""
    inputs = {"x": orm.Int(7).store(), "extra": {"a": orm.Float(0.5).store(), "b": orm.Str("s").store()}}
    counts, graphs = {}, {}
    for process in (_Calls, _CallsLean):
        statements.clear()
        _, node = run_get_node(process, **inputs)
        assert node.is_finished_ok and node.outputs.half.value == 3
        counts[process.__name__], graphs[process.__name__] = _cycle_queries(statements), _graph(node)
    assert graphs["_CallsLean"] == graphs["_Calls"]
    # the calcfunction: 1 input link and 2 create links; the work chain's 3 input links only in aiida-core's
    assert counts["_CallsLean"] == 3
    assert counts["_Calls"] == 3 + 3


def test_the_overrides_switch_gives_aiida_cores_links_back(statements, monkeypatch):
    """With ``AIIDA_LMLP_OVERRIDES=off`` the mixin's work chain asks every cycle query aiida-core asks."""
    from aiida_lmlp.overrides import SWITCH, enabled

    monkeypatch.setenv(SWITCH, "off")
    assert not enabled()
    inputs = {"x": orm.Int(7).store(), "extra": {"a": orm.Float(0.5).store(), "b": orm.Str("s").store()}}
    counts = {}
    for process in (_Calls, _CallsLean):
        statements.clear()
        _, node = run_get_node(process, **inputs)
        assert node.is_finished_ok
        counts[process.__name__] = _cycle_queries(statements)
    assert counts["_CallsLean"] == counts["_Calls"] == 3 + 3
    monkeypatch.setenv(SWITCH, "on")
    assert enabled()
