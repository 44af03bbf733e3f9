"""One module per DVC stage: run(...) -> metrics dict."""
