"""The system of record in SQL: every table and its row-level functions, the production pointer, the importer, the schema and its migrations."""
