"""The probes: ways of asking a model about facts, one file each (`cir probes` lists them)."""

from cir.probes import generation, mcq, paraphrase, recall  # noqa: F401  (imported to register)
