"""Speed of SimCLR training: batched on-device augmentation and a wall-clock benchmark (issue "Fast training")."""
