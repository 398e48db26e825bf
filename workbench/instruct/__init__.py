"""Instruction data: FLAN-style mixtures (`mix`) and self-instruct generation (`self_instruct`).

Modules: templates (instruction template files), sources (rows per dataset), mix (mixtures), seeds (seed
tasks), rouge (fast exact ROUGE-L novelty filter), filters and si_prompts (Self-Instruct's rules and prompts),
backends (local model, OpenAI-compatible HTTP), server (a small OpenAI-compatible server), self_instruct
(the loop), stats (report, logged to MLflow's `instruct` experiment through workbench.tracking), cli (the
`workbench instruct` command).
"""
