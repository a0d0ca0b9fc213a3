"""Training, evaluation and reporting for the face-recognition models the service loads."""
