"""Trainers: er (encoder/renderer), align, rsft, dapo."""
