"""DVC stage ``calibrate_robust``: the evaluation's preset against the full one, on a sample."""

from medran.runner import stage_main

if __name__ == "__main__":
    stage_main("calibrate_robust")
