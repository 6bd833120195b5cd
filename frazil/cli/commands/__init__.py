"""The `frazil` commands, one module per kind of thing they act on."""
