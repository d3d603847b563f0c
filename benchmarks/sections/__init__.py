"""The sections of benchmarks/run.py, one module each, in the order they run. Each has
`run(opts: harness.Options) -> list[harness.Row]` (reference also returns its rates: the others compare with them).

    reference  2048x2048 fp32 matmul GFLOP/s and a 64->64 3x3 conv2d GFLOP/s: the machine's yardsticks
    train      training throughput (forward + backward + Adam step) in fp32 and bf16 autocast, next to cost twins
               of the reference implementations (benchmarks/reference_models.py), FLOPs per step, achieved GFLOP/s
    budget     held-out bits/dim each image model reaches in a fixed training-time budget
    sample     image sampling, naive vs cached, and a float64 check that both draw identical samples
    wavenet    WaveNet generation naive vs cached (float32 and bf16), batch 1 and 16, real-time factor at 16 kHz
"""

SECTIONS = ("reference", "train", "budget", "sample", "wavenet")
