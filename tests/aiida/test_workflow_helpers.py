"""Helpers of the processes: reports without inspect.stack(), a child's outputs in one query, cheaper checkpoints."""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.engine import WorkChain, calcfunction, run_get_node

from aiida_lmlp.overrides.checkpoints import InputsEncodedOnce
from aiida_lmlp.workflows.links import outputs_of
from aiida_lmlp.workflows.reporting import CallerNamedReport


class _Plain(WorkChain):
    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.outline(cls.first_step)

    def first_step(self):
        self.report("hello %s", "world")


class _Named(CallerNamedReport, _Plain):
    pass


def _message(process) -> str:
    _, node = run_get_node(process)
    (log,) = orm.Log.collection.get_logs_for(node)
    assert log.levelname == "REPORT"
    return log.message.replace(str(node.pk), "PK").replace(process.__name__, "CLASS")


def test_the_report_reads_as_aiida_cores(aiida_profile):
    assert _message(_Named) == _message(_Plain) == "[PK|CLASS|first_step]: hello world"


@calcfunction
def _split(value: orm.Int) -> dict:
    return {"half": orm.Int(value.value // 2), "rest": orm.Int(value.value % 2)}


def test_outputs_of_a_process_are_its_output_links(aiida_profile):
    _, node = _split.run_get_node(orm.Int(7))
    outputs = outputs_of(node)
    assert sorted(outputs) == sorted(node.outputs) == ["half", "rest"]
    assert {label: n.pk for label, n in outputs.items()} == {"half": node.outputs.half.pk, "rest": node.outputs.rest.pk}
    assert outputs["half"].value == 3 and outputs["rest"].value == 1


class _Stepping(WorkChain):
    """Three steps (a checkpoint before each), a namespace of inputs and an output that grows."""

    checkpoints: list[str] = []

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("x", valid_type=orm.Int)
        spec.input_namespace("extra", dynamic=True)
        spec.output_namespace("seen", valid_type=orm.Int, dynamic=True)
        spec.outline(cls.one, cls.two, cls.three)

    def _step(self, name: str) -> None:
        type(self).checkpoints.append(self.node.checkpoint)
        self.out(f"seen.{name}", self.inputs.x)

    def one(self):
        self._step("one")

    def two(self):
        self._step("two")

    def three(self):
        self._step("three")


class _SteppingOnce(InputsEncodedOnce, _Stepping):
    checkpoints: list[str] = []


def test_inputs_are_encoded_once_and_checkpoints_read_as_aiida_cores(aiida_profile, monkeypatch):
    """Every checkpoint of a process with the mixin is the one aiida-core writes (inputs, growing
    outputs, context), while the raw and the parsed inputs are encoded once each instead of at
    every checkpoint."""
    from aiida.engine.processes.process import Process
    from aiida.orm.utils import serialize
    from plumpy.processes import BundleKeys

    encoded = []
    original = Process.encode_input_args

    def counting(self, inputs):
        encoded.append((type(self).__name__, id(inputs) in {id(self.raw_inputs), id(self.inputs)}))
        return original(self, inputs)

    monkeypatch.setattr(Process, "encode_input_args", counting)
    inputs = {"x": orm.Int(3).store(), "extra": {"a": orm.Float(0.5).store(), "b": orm.Str("text").store()}}
    for process in (_Stepping, _SteppingOnce):
        process.checkpoints.clear()
        _, node = run_get_node(process, **inputs)
        assert node.is_finished_ok and sorted(node.outputs.seen) == ["one", "three", "two"]

    def bundles(process):
        return [serialize.deserialize_unsafe(text) for text in process.checkpoints]

    plain, once = bundles(_Stepping), bundles(_SteppingOnce)
    assert len(plain) == len(once) == 3
    for i, (a, b) in enumerate(zip(plain, once)):
        keys = [BundleKeys.INPUTS_RAW, BundleKeys.INPUTS_PARSED] + ([BundleKeys.OUTPUTS] if i else [])
        for key in keys:
            assert a[key] == b[key], key
        assert set(a) == set(b)
    assert "x: !aiida_node" in once[0][BundleKeys.INPUTS_RAW] and "b: !aiida_node" in once[0][BundleKeys.INPUTS_RAW]
    assert len(once[2][BundleKeys.OUTPUTS]) > len(once[1][BundleKeys.OUTPUTS])  # outputs grew between checkpoints
    fixed = {
        name: sum(1 for n, is_input in encoded if n == name and is_input) for name in ("_Stepping", "_SteppingOnce")
    }
    assert fixed["_SteppingOnce"] == 2  # the raw and the parsed inputs, once each
    assert fixed["_Stepping"] >= 2 * 3  # aiida-core: both at every checkpoint


def test_the_overrides_switch_encodes_inputs_at_every_checkpoint_again(aiida_profile, monkeypatch):
    """With ``AIIDA_LMLP_OVERRIDES=off`` the mixin encodes the inputs at every checkpoint, as aiida-core does."""
    from aiida.engine.processes.process import Process

    from aiida_lmlp.overrides import SWITCH

    monkeypatch.setenv(SWITCH, "off")
    encoded = []
    original = Process.encode_input_args
    monkeypatch.setattr(Process, "encode_input_args", lambda self, i: encoded.append(1) or original(self, i))
    _SteppingOnce.checkpoints.clear()
    _, node = run_get_node(_SteppingOnce, x=orm.Int(3).store(), extra={"a": orm.Float(0.5).store()})
    assert node.is_finished_ok and len(_SteppingOnce.checkpoints) == 3
    assert len(encoded) >= 2 * 3  # raw and parsed inputs at every checkpoint, as aiida-core does
    monkeypatch.setenv(SWITCH, "on")


def test_checkpoint_inputs_decode_as_aiida_cores_with_one_query(aiida_profile, monkeypatch):
    """The raw and the parsed inputs of a checkpoint decode to what aiida-core gives (same nodes, same
    values), their nodes loaded in one query and shared, none loaded one by one."""
    from aiida.orm.utils import serialize

    from aiida_lmlp.overrides import checkpoints

    nodes = [orm.Int(1).store(), orm.Dict({"k": [1, 2]}).store(), orm.Str("s").store()]
    raw = {"x": nodes[0], "ns": {"d": nodes[1], "deep": {"s": nodes[2], "plain": [1.5, "text"]}}}
    parsed = {**raw, "default": orm.Bool(True).store(), "metadata": {"label": "a"}}
    encoded = [serialize.serialize(raw), serialize.serialize(parsed)]
    expected = [serialize.deserialize_unsafe(text) for text in encoded]

    queries = []
    original = orm.QueryBuilder.all
    monkeypatch.setattr(orm.QueryBuilder, "all", lambda self, *a, **k: queries.append(1) or original(self, *a, **k))
    monkeypatch.setattr(checkpoints.orm, "load_node", lambda *a, **k: pytest.fail("a node was loaded by itself"))
    cache = {}
    decoded = [checkpoints.decode_with_nodes(text, cache) for text in encoded]
    assert len(queries) == 2  # the raw inputs' three nodes, then the parsed inputs' one new node

    def pks(value):
        if isinstance(value, orm.Node):
            return ("node", type(value).__name__, value.pk)
        if isinstance(value, dict):
            return {k: pks(v) for k, v in value.items()}
        if isinstance(value, list):
            return [pks(v) for v in value]
        return value

    assert [pks(d) for d in decoded] == [pks(e) for e in expected]
    assert decoded[0]["ns"]["deep"]["s"] is decoded[1]["ns"]["deep"]["s"]  # shared, as before a reload
    assert decoded[1]["ns"]["d"].get_dict() == {"k": [1, 2]}
    assert checkpoints.decode_with_nodes(encoded[0], cache)["x"] is decoded[0]["x"] and len(queries) == 2
