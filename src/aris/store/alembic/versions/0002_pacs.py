"""PACS node: received studies and instances, routed jobs, sends of results.

Revision ID: 0002_pacs
Revises: 0001_initial
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_pacs"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
UID = sa.String(64)


def upgrade() -> None:
    op.create_table(
        "pacs_studies",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("study_uid", UID, nullable=False, unique=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("calling_ae", sa.String(16), nullable=True),
        sa.Column("n_instances", sa.Integer(), nullable=False),
        sa.Column("interrupted", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("first_received", TS, nullable=False),
        sa.Column("last_received", TS, nullable=False),
        sa.Column("completed", TS, nullable=True),
    )
    op.create_index("ix_pacs_studies_state", "pacs_studies", ["state"])
    op.create_table(
        "pacs_instances",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("study_uid", UID, nullable=False),
        sa.Column("series_uid", UID, nullable=False),
        sa.Column("sop_uid", UID, nullable=False),
        sa.Column("sop_class", UID, nullable=False),
        sa.Column("transfer_syntax", UID, nullable=False),
        sa.Column("modality", sa.String(16), nullable=True),
        sa.Column("body_part", sa.String(64), nullable=True),
        sa.Column("series_description", sa.String(64), nullable=True),
        sa.Column("series_number", sa.Integer(), nullable=True),
        sa.Column("instance_number", sa.Integer(), nullable=True),
        sa.Column("pixels", sa.Integer(), nullable=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("received", TS, nullable=False),
        sa.UniqueConstraint("study_uid", "sop_uid", name="uq_pacs_instances_study_sop"),
    )
    op.create_index("ix_pacs_instances_study", "pacs_instances", ["study_uid"])
    op.create_table(
        "pacs_jobs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(64), nullable=False, unique=True),
        sa.Column("study_uid", UID, nullable=False),
        sa.Column("series_uid", UID, nullable=True),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("task", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("question", sa.Text(), nullable=True),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("send_to", sa.JSON(), nullable=False),
        sa.Column("gsps", sa.Boolean(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("store_job_id", sa.String(32), nullable=True),
        sa.Column("item_key", sa.String(64), nullable=True),
        sa.Column("sr_uid", UID, nullable=True),
        sa.Column("created", TS, nullable=False),
        sa.Column("started", TS, nullable=True),
        sa.Column("finished", TS, nullable=True),
    )
    op.create_index("ix_pacs_jobs_status", "pacs_jobs", ["status"])
    op.create_index("ix_pacs_jobs_study", "pacs_jobs", ["study_uid"])
    op.create_table(
        "pacs_sends",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("sop_uid", UID, nullable=False),
        sa.Column("what", sa.String(8), nullable=False),
        sa.Column("study_uid", UID, nullable=False),
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("origin", sa.String(64), nullable=True),
        sa.Column("item_key", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", TS, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created", TS, nullable=False),
        sa.Column("sent", TS, nullable=True),
        sa.UniqueConstraint("sop_uid", "destination", name="uq_pacs_sends_sop_destination"),
    )
    op.create_index("ix_pacs_sends_status", "pacs_sends", ["status", "next_at"])


def downgrade() -> None:
    op.drop_index("ix_pacs_sends_status", "pacs_sends")
    op.drop_table("pacs_sends")
    op.drop_index("ix_pacs_jobs_study", "pacs_jobs")
    op.drop_index("ix_pacs_jobs_status", "pacs_jobs")
    op.drop_table("pacs_jobs")
    op.drop_index("ix_pacs_instances_study", "pacs_instances")
    op.drop_table("pacs_instances")
    op.drop_index("ix_pacs_studies_state", "pacs_studies")
    op.drop_table("pacs_studies")
