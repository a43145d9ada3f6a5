"""seal-runner: run SEAL (Self-Adapting Language Models)."""
