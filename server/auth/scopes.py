"""The four scopes a caller may hold, and what each allows: the one vocabulary of the policy, the 403 and metadata."""

from __future__ import annotations

READ = "flashsnap:read"  # read-only tools, resources, prompts, completions
WRITE = "flashsnap:write"  # tools that create, change or delete data the user keeps
SPEND = "flashsnap:spend"  # tools that spend an allowance: words, crystallize tokens, searches
ADMIN = "flashsnap:admin"  # /metrics

# What a 401 asks for (RFC 6750 `scope=`): every scope a tool call may need; `admin` is for operators alone.
CALLING = (READ, WRITE, SPEND)
ALL = (*CALLING, ADMIN)
