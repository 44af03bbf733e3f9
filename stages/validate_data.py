"""DVC stage ``validate_data@<suite>``: Great Expectations gate; any failed expectation fails it."""

from medran.runner import stage_main

if __name__ == "__main__":
    stage_main("validate_data")
