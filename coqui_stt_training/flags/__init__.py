"""The command line's flags and Coqui's Python API, turned into what the library below takes."""
