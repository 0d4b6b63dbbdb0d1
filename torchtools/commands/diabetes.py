def diabetes() -> None:
    """placeholder"""
