"""The high-risk triage scenario (EU AI Act Annex III 5(d)): see README.md."""
