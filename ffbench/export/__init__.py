"""Exports to where users already are: a Hugging Face dataset folder (:mod:`.dataset`) and a run's
results as model-card metadata, the Hub's eval-results file and an Every Eval Ever record
(:mod:`.results`). Each writes files only; publishing (``hf upload``) is the user's step."""
