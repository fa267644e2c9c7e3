"""Measures of a model's behaviour on labelled data: performance with confidence intervals
(`metrics`) and group fairness per slice (`fairness`). Shared by model cards and monitoring."""
