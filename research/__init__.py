"""Research on PromptLoop: experiments, their data and reports (not installed; see README.md)."""
