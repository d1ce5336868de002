"""What an output_dir holds across launches: one launch at a time (lock.py), the previous run moved aside whole
(previous.py), and the model a checkpoint belongs to (model_identity.py). resume.py decides with them."""
