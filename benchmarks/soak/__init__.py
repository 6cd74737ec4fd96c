"""The soak's parts (``benchmarks/soak.py`` is the command): its report and its WebRTC client."""
