"""The parts of `benchmarks/gpu.py`: kernel, decoding, streaming, and what they share."""
