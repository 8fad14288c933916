"""The contracts every component kind implements. One module per kind."""
