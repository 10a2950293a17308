"""What a run directory holds and where: its layout, and the result files read back (torch-free)."""
