"""Few-shot ARC domain (paper §3): grids, tasks, augmentation, leave-n TTT data, self-edits and voting.

Everything here is model-free (NumPy + stdlib), so the data side of the ARC pipeline can be tested
without a tokenizer, a model or a GPU.
"""
