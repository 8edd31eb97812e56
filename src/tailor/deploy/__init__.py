"""Deployment: serving a trained model."""
