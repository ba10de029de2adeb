"""The work chains' reports: aiida-core's message, without inspect.stack()."""

from __future__ import annotations

from aiida import orm
from aiida.engine import WorkChain, run_get_node

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
