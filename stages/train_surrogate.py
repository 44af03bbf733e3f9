"""DVC stage ``train_surrogate``: export (or train) the attack and captioner encoders."""

from medran.runner import stage_main

if __name__ == "__main__":
    stage_main("train_surrogate")
