"""DVC stage ``finetune@<level>-<task>-<method>``: a downstream method on a pre-trained model."""

from medran.runner import stage_main

if __name__ == "__main__":
    stage_main("finetune")
