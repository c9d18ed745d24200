"""Who is calling over HTTP: the scopes a call needs, the team's principals, and the verifiers of their tokens."""
