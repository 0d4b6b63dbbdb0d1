"""torchtools: the classic PyTorch curriculum as fast, scriptable command-line tools."""

__version__ = "0.1.0"
