# Placeholder until the CUDA kernels land: CUDA is reported OFF.
set(REACTOR_CUDA OFF)
set(REACTOR_CUDA_REASON "kernels not wired yet")
