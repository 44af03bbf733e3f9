"""DVC stage ``eval_upstream@<level>``: retrieval and zero-shot metrics of a pre-trained model."""

from medran.runner import stage_main

if __name__ == "__main__":
    stage_main("eval_upstream")
