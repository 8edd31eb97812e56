"""Studies over many runs of one spec: hyperparameter search, ablations, launching on several ranks.

Each study drives the runner (`tailor.run.Pipeline`); no stage imports this package.
"""
