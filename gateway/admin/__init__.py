"""The admin API under /admin/v1: memories, export/import, queue and hygiene operations."""
