"""DVC stage ``attack_captions``: an adversarial caption for every attacked image."""

from medran.runner import stage_main

if __name__ == "__main__":
    stage_main("attack_captions")
