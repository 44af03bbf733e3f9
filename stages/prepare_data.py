"""DVC stage ``prepare_data``: read the configured sources, write canonical manifests + images."""

from medran.runner import stage_main

if __name__ == "__main__":
    stage_main("prepare_data")
