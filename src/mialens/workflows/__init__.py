"""The workflows: audit, analyse, study and defend, each a pipeline over the library
below, and the only code that writes results (metrics, tables, pages) and drives
progress bars."""
