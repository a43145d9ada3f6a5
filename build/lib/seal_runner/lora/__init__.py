"""Inner-loop LoRA: a multi-adapter layer (K adapters over one frozen base) and its trainers."""
