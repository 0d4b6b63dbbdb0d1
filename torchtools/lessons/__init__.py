"""The lessons' own code: what fit-linear, fit-logistic, conv-demo, inspect-weights and to-gpu-bench teach,
as plain functions the commands call."""
