"""HiGHS instances for partax: quiet, and agreeing on the process's one thread scheduler.

Every HiGHS instance of a process runs on one global task scheduler, created by the first
run with that instance's ``threads`` option. An instance that later asks for a different
count fails: its ``run()`` returns an error ("Option 'threads' is set to 1 but the scheduler
has already been initialized to use 2 threads") and it solves nothing. So a call that asked
for ``threads=2`` (MILP bounds, say) would make every later LP with ``threads=1`` fail.
This module is the one place that makes HiGHS instances, and it keeps them consistent:

* ``threads=None`` leaves HiGHS's option at 0, which runs on whatever scheduler exists (or
  creates one with HiGHS's default size). The geometry LPs use it: they parallelise over
  LPs in a Python thread pool, and one LP's dual simplex is serial anyway.
* ``threads=t`` rebuilds the scheduler with ``t`` threads when it was made with another
  count (``resetGlobalScheduler``) and then sets the option. Do not run another HiGHS
  instance in a different Python thread while one is made this way.

``highspy.Highs`` (>= 1.7) prints HiGHS's banner from its Python constructor, before any
option can be set; its compiled base class takes the same calls and prints nothing until
``run``, by which time ``output_flag`` is off. Older highspy versions expose the compiled
class directly.

Example:
    >>> from partax.highs import quiet_highs
    >>> h = quiet_highs()
    >>> h.getOptionValue("output_flag")[1]              # (status, value)
    False
"""

from __future__ import annotations

import threading
from typing import Optional

__all__ = ["quiet_highs"]

_LOCK = threading.Lock()
_SCHEDULER = {"threads": None}  # the count partax last built HiGHS's scheduler with


def _compiled_class():
    import highspy

    for cls in highspy.Highs.__mro__:
        if cls.__module__.startswith("highspy") and cls.__name__ == "_Highs":
            return cls
    return highspy.Highs


def quiet_highs(*, verbose: bool = False, threads: Optional[int] = None):
    """A HiGHS instance that logs only if ``verbose`` and runs on a consistent scheduler.

    Args:
      verbose: HiGHS's banner and log to the console.
      threads: ``None``: run on the existing scheduler (HiGHS's ``threads`` option 0); a
        positive int: rebuild the scheduler with that many threads if it has another size.

    Returns:
      A ``highspy`` solver instance with no model.
    """
    h = _compiled_class()()
    h.setOptionValue("output_flag", bool(verbose))
    h.setOptionValue("log_to_console", bool(verbose))
    if threads is not None:
        threads = int(threads)
        with _LOCK:
            if _SCHEDULER["threads"] != threads:
                import highspy

                highspy.Highs.resetGlobalScheduler(True)
                _SCHEDULER["threads"] = threads
        h.setOptionValue("threads", threads)
    return h
