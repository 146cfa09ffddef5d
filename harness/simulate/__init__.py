"""The bridge + back-office simulator: fill generator and the `simulate` command."""
