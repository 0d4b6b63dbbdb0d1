"""The shared core every command stands on: the run, the engine, devices, checkpoints, output.

Nothing here is imported by `torchtools --help` except options and errors, which import no torch.
"""
