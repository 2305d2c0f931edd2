"""The paper trail: who approved which base model and which data, settled label disputes, review
sheets, release notes, forgotten tickets and the audit log of every admin action."""
