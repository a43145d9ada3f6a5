"""Inner-loop LoRA: a multi-adapter layer (K adapters over one frozen base), its trainers and the
per-device updater that drives them."""
