"""Results layer, at the edge: results folders and CSV tables, figures (matplotlib only here), the report and
the generated model documentation."""
