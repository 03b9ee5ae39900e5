"""Ultralytics trainer callbacks, one integration per file."""
