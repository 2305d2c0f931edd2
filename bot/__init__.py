"""The system of record and the conversation: packages by role, imports flowing down (README "How it works")."""
