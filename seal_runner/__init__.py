"""seal-runner: run SEAL (Self-Adapting Language Models)."""

from seal_runner.children import die_with_parent

die_with_parent()  # a no-op unless a `seal-run` started this process (seal_runner/children.py)
