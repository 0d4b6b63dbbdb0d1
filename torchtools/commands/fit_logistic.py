def fit_logistic() -> None:
    """placeholder"""
