"""DVC stage ``validate_noisy@<level>``: the Great Expectations gate of one noise level."""

from medran.runner import stage_main

if __name__ == "__main__":
    stage_main("validate_noisy")
