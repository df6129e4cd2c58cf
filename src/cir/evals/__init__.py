"""Evaluation: multiple-choice accuracy, answer probability, general-text loss and KL."""
