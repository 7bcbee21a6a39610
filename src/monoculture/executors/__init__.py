"""Where the collect phase's missing generations run.

``local`` (the default) is :func:`monoculture.collect.run_study`'s own loop over the backends;
``ray`` (:mod:`monoculture.executors.ray`) hands the same jobs to Ray Data's LLM batch API on a
cluster and brings results back as Parquet shards (:mod:`monoculture.executors.shards`) that
are merged into the store. An executor decides only where the work runs: the plan, the keys and
the store are the same, so a study may move between executors and keep its work.
"""
