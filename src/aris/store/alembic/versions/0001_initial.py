"""Initial store: jobs, items, results, audit.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("task", sa.String(64), nullable=False),
        sa.Column("model", sa.String(512), nullable=False),
        sa.Column("engine", sa.String(32), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("created", TS, nullable=False),
        sa.Column("finished", TS, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("runner_id", sa.String(32), nullable=True),
        sa.Column("runner_host", sa.String(255), nullable=True),
        sa.Column("runner_pid", sa.Integer(), nullable=True),
        sa.Column("heartbeat", TS, nullable=True),
    )
    op.create_index("ix_jobs_fingerprint", "jobs", ["fingerprint"])
    op.create_table(
        "items",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("input_ref", sa.Text(), nullable=False),
        sa.Column("input_digest", sa.String(64), nullable=False),
        sa.Column("question", sa.Text(), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("task_options", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("runner_id", sa.String(32), nullable=True),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.Column("prepare_s", sa.Float(), nullable=True),
        sa.Column("generate_s", sa.Float(), nullable=True),
        sa.Column("created", TS, nullable=False),
        sa.Column("started", TS, nullable=True),
        sa.Column("finished", TS, nullable=True),
        sa.UniqueConstraint("job_id", "key", "input_ref", name="uq_items_job_key_input"),
    )
    op.create_index("ix_items_job_status", "items", ["job_id", "status"])
    op.create_index("ix_items_key", "items", ["key"])
    op.create_table(
        "results",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(64), nullable=False, unique=True),
        sa.Column("item_id", sa.Integer(), sa.ForeignKey("items.id", ondelete="SET NULL"), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created", TS, nullable=False),
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("task", sa.String(64), nullable=True),
        sa.Column("model", sa.String(512), nullable=True),
        sa.Column("engine", sa.String(32), nullable=True),
        sa.Column("input_digest", sa.String(64), nullable=True),
        sa.Column("job_id", sa.String(32), nullable=True),
        sa.Column("item_key", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
    )
    op.create_index("ix_audit_at", "audit", ["at"])
    op.create_index("ix_audit_job_id", "audit", ["job_id"])


def downgrade() -> None:
    op.drop_table("audit")
    op.drop_table("results")
    op.drop_index("ix_items_key", "items")
    op.drop_index("ix_items_job_status", "items")
    op.drop_table("items")
    op.drop_index("ix_jobs_fingerprint", "jobs")
    op.drop_table("jobs")
