"""DVC stage ``eval_robust@<level>``: white-box PGD against every fine-tuned model of a level."""

from medran.runner import stage_main

if __name__ == "__main__":
    stage_main("eval_robust")
