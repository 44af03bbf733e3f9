"""DVC stage ``build_noisy@<level>``: mix adversarial pairs into the upstream training set."""

from medran.runner import stage_main

if __name__ == "__main__":
    stage_main("build_noisy")
