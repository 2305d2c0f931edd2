"""The system of record in SQL: every table and its row functions, the production pointer, the schema, migrations."""
