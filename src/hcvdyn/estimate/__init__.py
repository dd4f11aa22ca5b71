"""Estimation layer: viral-load data, the censored (M3) likelihood, fit designs and problems, lmfit fits of
patients and trials, profile and Wald intervals, prediction bands, synthetic data and recovery studies."""
