"""Converters from other frameworks' checkpoints to tformer models."""
