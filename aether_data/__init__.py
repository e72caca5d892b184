"""aether: synthesis of photo-retouching training pairs and the VeraRetouch trainer."""

__version__ = "0.1.0"
