// Filled in by the alerts work.
