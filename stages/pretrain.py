"""DVC stage ``pretrain@<level>``: CLIP contrastive pre-training on one noisy corpus."""

from medran.runner import stage_main

if __name__ == "__main__":
    stage_main("pretrain")
