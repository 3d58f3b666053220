"""Active learning: rounds of training, exploration by MD, selection by uncertainty and labelling."""
