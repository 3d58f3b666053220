"""A trained model without any training code: reading and writing model files, turning any input into
batches, prediction and embeddings (:class:`~physicsml.inference.trained.TrainedModel`)."""
