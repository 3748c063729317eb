"""Tools to prove a storage backend keeps trioqueue's promises.

- ``check_backend``: the conformance checks of the driver contract.
- ``make_state_machine``: a Hypothesis state machine holding a backend's
  driver against a plain Python model (needs ``hypothesis``).
- ``run_crash_test``: SIGKILLs worker processes at random and checks that no
  task is lost or run twice without cause.

None of them depends on pytest.
"""

from ._check import CHECK_NAMES as CHECK_NAMES
from ._check import check_backend as check_backend
from ._context import BackendFactory as BackendFactory
from ._context import ManualClock as ManualClock
from ._crash import CrashReport as CrashReport
from ._crash import CrashTestFailure as CrashTestFailure
from ._crash import run_crash_test as run_crash_test
from ._model import Model as Model
from ._state_machine import make_state_machine as make_state_machine
