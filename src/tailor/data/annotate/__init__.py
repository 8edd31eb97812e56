"""Annotation: labels joined from files, rule-based labeling functions, Label Studio import/export."""
