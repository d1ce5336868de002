"""Where prompts come from: datasets, files and offline generators as chat prompts (prompts.py), mixtures of
sources (mixture.py), HumanEval's problems (humaneval.py), model ids and the random-weight models built locally
(models.py, tiny_model.py)."""
