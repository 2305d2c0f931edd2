"""The paper trail: base-model licenses, data approval and disputes, review sheets, release notes and forgetting."""
