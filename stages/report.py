"""DVC stage ``report``: summary tables, figures, plot data and an MLflow summary run."""

from medran.runner import stage_main

if __name__ == "__main__":
    stage_main("report")
