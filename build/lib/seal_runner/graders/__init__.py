"""Graders turn (question, gold, prediction) triples into verdicts."""
