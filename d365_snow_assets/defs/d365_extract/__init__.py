"""F&O → DuckDB: one extract asset per F&O entity the connector reads."""
