"""Fused kernels for the sampling loops that eager PyTorch runs op by op (~3 us per small op on a CPU).

wavenet_step: the whole WaveNet generation step in C++ (built at first use, see _build.py, or ahead of it by
`python -m pixelwave.fast`, as `make` does), with the PyTorch path as the fallback. Set PIXELWAVE_NO_FAST=1 to
always take the PyTorch path.
"""
