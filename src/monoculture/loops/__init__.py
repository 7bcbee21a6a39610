"""Feedback loops: transmission chains (text and image), their attractors, drift and motifs.

A chain feeds a model's output back in as the next input (Perez et al. 2024's telephone game;
Hintze et al. 2025's image -> caption -> image). Chains live in the store's loop tables
(:mod:`monoculture.loops.tables`); every measure reads them from there.
"""
