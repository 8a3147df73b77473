"""Questions larger than one boot: memory layouts and their clashes, sweeps
over load addresses, the corpus of defective boots, and plots."""
