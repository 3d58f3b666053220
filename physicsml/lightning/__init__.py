"""The one training system every model family goes through."""
