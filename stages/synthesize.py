"""DVC stage ``synthesize``: write the embedded synthetic corpus in the real datasets' layouts."""

from medran.runner import stage_main

if __name__ == "__main__":
    stage_main("synthesize")
