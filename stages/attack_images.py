"""DVC stage ``attack_images``: MF-ii adversarial images for the upstream training pairs."""

from medran.runner import stage_main

if __name__ == "__main__":
    stage_main("attack_images")
