"""Helpers of the work chains: reports without inspect.stack(), a child's outputs in one query."""

from __future__ import annotations

from aiida import orm
from aiida.engine import WorkChain, calcfunction, run_get_node

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
