"""The operator's tools: status, findings, balances, notifications and the review page.

They read and write the snapshot through ``db/`` and never import the run or its steps.
"""
