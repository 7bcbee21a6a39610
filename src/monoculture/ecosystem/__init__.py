"""Ecosystem watch: early, measurable signs that an open-weight model family is quietly retreating.

Open-weight families rarely close with an announcement. The first signs are in metadata that
anyone can read: releases slow down, checkpoints stop shipping while the organisation's Hub page
stays busy, licences tighten, new flagships appear gated or API-only, and derivative makers move
to other bases. This package turns Hugging Face Hub metadata and public model databases into
those measurements. It shares only the store (tables prefixed ``eco_``) and the CLI with the rest
of monoculture.
"""
