"""`tailor refine`: from a run that misses its targets to a spec that meets them, with the evidence for each step.

diagnose: rules over a run's files (curves, error analysis, data report, plan), each a finding or nothing.
levers: the catalogue of changes, each tied to the findings that suggest it and the spec keys it sets.
loop: trials as ordinary cached runs judged on validation with paired bootstrap intervals; one final test run.
report: refine/report.html, refined.yaml and its diff against the original.
"""
