"""seal-runner: run SEAL (Self-Adapting Language Models)."""

from seal_runner.children import die_with_parent
from seal_runner.logs import inherit

die_with_parent()  # a no-op unless a `seal-run` started this process (seal_runner/children.py)
inherit()  # likewise: a run's children log the way the run does (seal_runner/logs.py)
