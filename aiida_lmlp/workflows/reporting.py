"""``Process.report`` without ``inspect.stack()``, for the plugin's work chains.

aiida-core names the calling step with ``inspect.stack()[1][3]``, which builds the frame record
of every frame of the daemon worker's deep stack and reads their source lines: about 0.1 s at
a worker's first report (the module-file cache is built then), then a millisecond a call. The
caller's name is one frame up; the message is the one aiida-core writes.
"""

from __future__ import annotations

import sys

from aiida.common.log import LOG_LEVEL_REPORT

__all__ = ["CallerNamedReport"]


class CallerNamedReport:
    """Mixin for a :class:`~aiida.engine.Process`: :meth:`report` names the caller from its frame."""

    def report(self, msg: str, *args, **kwargs) -> None:
        """Log ``msg`` at the REPORT level as ``[pk|ClassName|calling function]: msg``, as aiida-core does."""
        message = f"[{self.node.pk}|{self.__class__.__name__}|{sys._getframe(1).f_code.co_name}]: {msg}"
        self.logger.log(LOG_LEVEL_REPORT, message, *args, **kwargs)
