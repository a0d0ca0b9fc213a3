"""The face-recognition REST service."""
