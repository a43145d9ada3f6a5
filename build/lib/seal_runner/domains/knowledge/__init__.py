"""Knowledge incorporation: SQuAD-style passages, self-edits as training text, no-context QA."""
