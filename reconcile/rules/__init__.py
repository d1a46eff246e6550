"""The run's decisions as pure functions of plain values, one module per decision."""
